// The MMIO table builder dma_buf_phys_vec_to_sgt (kernel-semantics §3.2 rule 8) on ranges that
// are only described, never backed: a BAR range of several GiB costs nothing here, because the
// BUS_ADDR side is arithmetic and the THRU_HOST_BRIDGE side goes through a DMA API that maps
// identity (directDevice) or just records what it was given.
import { describe, expect, it } from 'vitest';
import { P2pdmaMapType } from '../../../topology/p2pdma.ts';
import { dmaBufAttach, dmaBufDetach } from '../dma-buf/dma-buf.ts';
import { probeExport } from '../dma-buf/fixtures/probe-exporter.ts';
import { DmaDataDirection, PAGE_SIZE } from '../dma-buf/scatterlist.ts';
import { type Device, type DmaSegment, directDevice } from '../device.ts';
import { dmaBufFreeSgt, dmaBufPhysVecToSgt, SG_MAX_ENTRY } from './dma-buf-mapping.ts';

const BIDI = DmaDataDirection.BIDIRECTIONAL;
const GiB = 2 ** 30;
const UINT_MAX = 2 ** 32 - 1;
const provider = { name: 'bar-owner', busOffset: 0x1000_0000 };
// A 5 GiB BAR range high in the address space, then a small one: 3 entries after the split.
const BIG = 0x40_0000_0000;
const SMALL = 0x50_0000_0000;
const physVec = [
  { paddr: BIG, len: 5 * GiB },
  { paddr: SMALL, len: 2 * PAGE_SIZE },
];

// A device whose DMA API maps identity and records every mapSg/unmapSg.
function recordingDevice(name: string) {
  const mapped: DmaSegment[][] = [];
  const unmapped: DmaSegment[][] = [];
  const dev: Device = {
    name,
    dma: {
      mapSg: (segs) => {
        const out = segs.map((s) => ({ ...s }));
        mapped.push(out);
        return out;
      },
      unmapSg: (segs) => {
        unmapped.push([...segs]);
      },
    },
  };
  return { dev, mapped, unmapped };
}

async function attachOn(dev: Device) {
  const p = probeExport();
  const attach = await dmaBufAttach(p.dmabuf, dev);
  return { attach, detach: () => dmaBufDetach(p.dmabuf, attach) };
}

describe('p2pdma MMIO tables', () => {
  it('p2pdma - rule 8: a BAR range over 4 GiB is split so no entry exceeds UINT_MAX, for BUS_ADDR and THRU_HOST_BRIDGE; orig_nents is 0 and there is no page side', async () => {
    const rec = recordingDevice('peer');
    const { attach, detach } = await attachOn(rec.dev);
    const bus = dmaBufPhysVecToSgt(attach, provider, physVec, P2pdmaMapType.BUS_ADDR, BIDI);
    // BUS_ADDR: bus address = phys + bus offset, split at the largest page-aligned length that
    // fits sg_dma_len (the kernel splits at UINT_MAX itself; see the DOC of dma-buf-mapping.ts).
    expect(bus.entries.map((e) => [e.dmaAddress, e.dmaLength, e.bus])).toEqual([
      [BIG + provider.busOffset, SG_MAX_ENTRY, true],
      [BIG + provider.busOffset + SG_MAX_ENTRY, 5 * GiB - SG_MAX_ENTRY, true],
      [SMALL + provider.busOffset, 2 * PAGE_SIZE, true],
    ]);
    expect(rec.mapped).toHaveLength(0); // no IOVA for BUS_ADDR
    const iova = dmaBufPhysVecToSgt(attach, provider, physVec, P2pdmaMapType.THRU_HOST_BRIDGE, BIDI);
    // THRU_HOST_BRIDGE: the ranges went through the DMA API once (unsplit); its segments are split.
    expect(rec.mapped).toEqual([
      [
        { addr: BIG, length: 5 * GiB },
        { addr: SMALL, length: 2 * PAGE_SIZE },
      ],
    ]);
    expect(iova.entries.map((e) => [e.dmaAddress, e.dmaLength, e.bus])).toEqual([
      [BIG, SG_MAX_ENTRY, undefined],
      [BIG + SG_MAX_ENTRY, 5 * GiB - SG_MAX_ENTRY, undefined],
      [SMALL, 2 * PAGE_SIZE, undefined],
    ]);
    for (const sgt of [bus, iova]) {
      expect(Math.max(...sgt.entries.map((e) => e.dmaLength))).toBeLessThanOrEqual(UINT_MAX);
      expect(sgt.length).toBe(5 * GiB + 2 * PAGE_SIZE);
      expect(sgt.origNents).toBe(0);
      expect(sgt.cpu).toEqual([]);
    }
    // The IOVA side is undone with exactly what the DMA API returned, not the split entries.
    dmaBufFreeSgt(attach, iova);
    dmaBufFreeSgt(attach, bus);
    expect(rec.unmapped).toEqual(rec.mapped);
    await detach();
  });

  it('p2pdma - rule 8: a range of exactly the largest entry stays one entry, one page more makes two', async () => {
    const { attach, detach } = await attachOn(directDevice('peer'));
    const lens = (len: number, type: P2pdmaMapType) =>
      dmaBufPhysVecToSgt(attach, provider, [{ paddr: BIG, len }], type, BIDI).entries.map((e) => e.dmaLength);
    for (const type of [P2pdmaMapType.BUS_ADDR, P2pdmaMapType.THRU_HOST_BRIDGE]) {
      expect(lens(SG_MAX_ENTRY, type)).toEqual([SG_MAX_ENTRY]);
      expect(lens(SG_MAX_ENTRY + PAGE_SIZE, type)).toEqual([SG_MAX_ENTRY, PAGE_SIZE]);
      expect(lens(2 * SG_MAX_ENTRY + PAGE_SIZE, type)).toEqual([SG_MAX_ENTRY, SG_MAX_ENTRY, PAGE_SIZE]);
    }
    expect(SG_MAX_ENTRY).toBe(UINT_MAX + 1 - PAGE_SIZE);
    await detach();
  });

  it('p2pdma - rule 8: an empty range list is EINVAL for every map type, before anything is mapped', async () => {
    const rec = recordingDevice('peer');
    const { attach, detach } = await attachOn(rec.dev);
    for (const type of [
      P2pdmaMapType.BUS_ADDR,
      P2pdmaMapType.THRU_HOST_BRIDGE,
      P2pdmaMapType.NOT_SUPPORTED,
    ]) {
      expect(() => dmaBufPhysVecToSgt(attach, provider, [], type, BIDI)).toThrow(
        expect.objectContaining({
          code: 'EINVAL',
          message: expect.stringMatching(/empty physical range vector/),
        }),
      );
    }
    expect(rec.mapped).toHaveLength(0);
    await detach();
  });
});
