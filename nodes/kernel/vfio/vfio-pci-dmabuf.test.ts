// VFIO_DEVICE_FEATURE_DMA_BUF and the exporter ops (kernel-semantics §6.2 rules 1-6, §3.2 rule
// 8-9, §4.4): the uAPI validation table, who may attach, what map returns per P2PDMA map type,
// and the TPH feature. Revoke: vfio-pci-revoke.test.ts. The device worker: vfio-dev.test.ts.
import { afterEach, describe, expect, it } from 'vitest';
import { expectCode } from '../../../test/support/expect-errno.ts';
import { close as dmaBufClose, dmaBufSeek, dmaHeapAlloc, SEEK_END } from '../../uapi/dma-buf.ts';
import {
  O_CLOEXEC,
  O_RDWR,
  VFIO_DEVICE_FEATURE_DMA_BUF,
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
  type VfioDeviceFeatureDmaBuf,
  vfioDeviceFeature,
  vfioDeviceFeatureDmaBuf,
  vfioDeviceFeatureDmaBufTph,
} from '../../uapi/vfio.ts';
import {
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufMapAttachment,
  dmaBufMapAttachmentUnlocked,
  dmaBufPin,
  dmaBufUnmapAttachment,
  dmaBufUnmapAttachmentUnlocked,
  dmaBufUnpin,
} from '../dma-buf/dma-buf.ts';
import { dmaBufUnsupportedInvalidateMappings } from '../dma-buf/dma-buf-ops.ts';
import { dmaResvLock, dmaResvUnlock } from '../dma-buf/dma-resv.ts';
import { DmaDataDirection, PAGE_SIZE } from '../dma-buf/scatterlist.ts';
import { iommuIovaToPhys } from '../iommu/iommu.ts';
import { BAR0, pattern, sgtRead, sgtWrite, vfioHost, vfioHostsTeardown } from './fixtures/vfio-host.ts';
import { PciTphCompleter } from './vfio-pci-core.ts';
import { vfioPciDmaBufGetTph } from './vfio-pci-tph.ts';

afterEach(vfioHostsTeardown);

const BIDI = DmaDataDirection.BIDIRECTIONAL;
const range = (offset: number | bigint, length: number | bigint) => ({ offset, length });
const valid = (): VfioDeviceFeatureDmaBuf => ({
  region_index: 0,
  open_flags: O_RDWR | O_CLOEXEC,
  flags: 0,
  nr_ranges: 2,
  dma_ranges: [range(0, 2 * PAGE_SIZE), range(8 * PAGE_SIZE, PAGE_SIZE)],
});
const revocable = { allowPeer2peer: true, invalidateMappings: () => {} };

describe('vfio dma-buf export', () => {
  it('vfio - export of valid ranges gives a dma-buf fd of their total size holding a device registration', async () => {
    const h = vfioHost();
    const fd = await vfioDeviceFeatureDmaBuf(h.proc, h.devFd, valid());
    expect(dmaBufSeek(h.proc, fd, 0, SEEK_END)).toBe(3 * PAGE_SIZE);
    expect(h.buf(fd).expName).toBe('vfio_pci_core');
    expect(h.vdev.registrations).toBe(1);
    expect(h.vdev.dmabufs.size).toBe(1);
    dmaBufClose(h.proc, fd); // the last fd: release takes it off the device
    expect([h.vdev.registrations, h.vdev.dmabufs.size]).toEqual([0, 0]);
  });

  // [what, change to a valid request, errno, the field the message must name]
  const U64 = 1n << 64n;
  const bad: [string, (a: VfioDeviceFeatureDmaBuf) => unknown, string, RegExp][] = [
    ['nr_ranges 0', (a) => ({ ...a, nr_ranges: 0, dma_ranges: [] }), 'EINVAL', /nr_ranges is 0/],
    ['nr_ranges not a u32', (a) => ({ ...a, nr_ranges: -1 }), 'EINVAL', /nr_ranges -1/],
    ['flags set', (a) => ({ ...a, flags: 1 }), 'EINVAL', /flags 1 must be 0/],
    ['region_index of the ROM', (a) => ({ ...a, region_index: 6 }), 'ENODEV', /region_index 6 is not a BAR/],
    ['region_index of config space', (a) => ({ ...a, region_index: 7 }), 'ENODEV', /region_index 7/],
    ['an unimplemented BAR', (a) => ({ ...a, region_index: 3 }), 'EINVAL', /region_index 3: .* has no BAR3/],
    [
      'a BAR that cannot be mmapped',
      (a) => ({ ...a, region_index: 2 }),
      'EOPNOTSUPP',
      /BAR2 .* not mmap-able/,
    ],
    [
      'open_flags beyond O_ACCMODE|O_CLOEXEC',
      (a) => ({ ...a, open_flags: 0o100 }),
      'EINVAL',
      /open_flags 0x40/,
    ],
    [
      'fewer dma_ranges than nr_ranges',
      (a) => ({ ...a, nr_ranges: 3 }),
      'EFAULT',
      /dma_ranges holds 2 entries/,
    ],
    [
      'a zero length',
      (a) => ({ ...a, dma_ranges: [range(0, 0), range(0, PAGE_SIZE)] }),
      'EINVAL',
      /dma_ranges\[0\]\.length is 0/,
    ],
    [
      'an unaligned offset',
      (a) => ({ ...a, dma_ranges: [range(0, PAGE_SIZE), range(100, PAGE_SIZE)] }),
      'EINVAL',
      /dma_ranges\[1\]\.offset 0x64 is not page aligned/,
    ],
    [
      'an unaligned length',
      (a) => ({ ...a, dma_ranges: [range(0, 100), range(0, PAGE_SIZE)] }),
      'EINVAL',
      /dma_ranges\[0\]\.length 0x64 is not page aligned/,
    ],
    [
      'a negative offset',
      (a) => ({ ...a, dma_ranges: [range(-PAGE_SIZE, PAGE_SIZE), range(0, PAGE_SIZE)] }),
      'EINVAL',
      /dma_ranges\[0\]\.offset .* __u64/,
    ],
    [
      'a range past the BAR',
      (a) => ({ ...a, dma_ranges: [range(0, PAGE_SIZE), range(BAR0 - PAGE_SIZE, 2 * PAGE_SIZE)] }),
      'EINVAL',
      /dma_ranges\[1\] .* exceeds BAR0/,
    ],
    [
      'a total length overflowing 64 bits',
      (a) => ({ ...a, dma_ranges: [range(0, 1n << 63n), range(0, 1n << 63n)] }),
      'EINVAL',
      /dma_ranges\[1\]\.length: the total length overflows/,
    ],
    [
      'offset + length overflowing 64 bits',
      (a) => ({ ...a, nr_ranges: 1, dma_ranges: [range(U64 - BigInt(PAGE_SIZE), 2 * PAGE_SIZE)] }),
      'EOVERFLOW',
      /dma_ranges\[0\]: offset \+ length overflows/,
    ],
    [
      'BAR address + offset overflowing 64 bits',
      (a) => ({ ...a, nr_ranges: 1, dma_ranges: [range(U64 - (1n << 40n), PAGE_SIZE)] }),
      'EOVERFLOW',
      /dma_ranges\[0\]\.offset: BAR0 address \+ offset overflows/,
    ],
    ['no data', () => undefined, 'EINVAL', /data missing/],
  ];
  it('vfio - export refuses every invalid range and flag with its errno, naming the field, and leaves nothing behind', async () => {
    const h = vfioHost();
    const fds = h.proc.fdt.size;
    for (const [what, change, code, msg] of bad) {
      const e = await expectCode(
        vfioDeviceFeatureDmaBuf(h.proc, h.devFd, change(valid()) as VfioDeviceFeatureDmaBuf),
        code,
      );
      expect(e.message, what).toMatch(msg);
    }
    expect([h.proc.fdt.size, h.vdev.registrations, h.vdev.dmabufs.size]).toEqual([fds, 0, 0]);
  });

  it('vfio - feature flags: DMA_BUF is GET only, PROBE answers 0, unknown bits and features are refused', async () => {
    const h = vfioHost();
    const f = (flags: number) => vfioDeviceFeature(h.proc, h.devFd, flags, valid());
    expect(await f(VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF)).toBe(
      0,
    );
    expect(
      (await expectCode(f(VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF), 'EINVAL')).message,
    ).toMatch(/supports only GET/);
    await expectCode(
      f(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF),
      'EINVAL',
    );
    await expectCode(f(VFIO_DEVICE_FEATURE_DMA_BUF), 'EINVAL'); // neither GET, SET nor PROBE
    await expectCode(f((1 << 20) | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF), 'EINVAL');
    await expectCode(f(VFIO_DEVICE_FEATURE_GET | 12), 'EOPNOTSUPP');
    expect(h.vdev.registrations).toBe(0);
  });
});

describe('vfio dma-buf attach and map', () => {
  it('vfio - attach refuses importers without peer2peer (static and dynamic) with EOPNOTSUPP', async () => {
    const h = vfioHost();
    const buf = h.buf(await vfioDeviceFeatureDmaBuf(h.proc, h.devFd, valid()));
    for (const imp of [h.importer(h.nic, { dynamic: false }), h.importer(h.nic, { p2p: false })]) {
      expect((await expectCode(imp.attachTo(buf), 'EOPNOTSUPP')).message).toMatch(/not peer2peer/);
    }
    expect(buf.attachments).toHaveLength(0);
  });

  it('vfio - attach refuses a pinned importer that is not revocable; a revocable importer may pin', async () => {
    const h = vfioHost();
    const buf = h.buf(await vfioDeviceFeatureDmaBuf(h.proc, h.devFd, valid()));
    const pinned = { allowPeer2peer: true, invalidateMappings: dmaBufUnsupportedInvalidateMappings };
    expect((await expectCode(dmaBufDynamicAttach(buf, h.nic, pinned), 'EOPNOTSUPP')).message).toMatch(
      /not revocable/,
    );
    expect(buf.attachments).toHaveLength(0);
    const a = await dmaBufDynamicAttach(buf, h.nic, revocable);
    await dmaResvLock(buf.resv, null);
    try {
      await dmaBufPin(a);
      const sgt = await dmaBufMapAttachment(a, BIDI);
      expect(sgt.entries[0].bus).toBe(true);
      await dmaBufUnmapAttachment(a, sgt, BIDI);
      await dmaBufUnpin(a);
    } finally {
      dmaResvUnlock(buf.resv);
    }
    await dmaBufDetach(buf, a);
  });

  it('vfio - map gives bus addresses for BUS_ADDR, IOVAs for THRU_HOST_BRIDGE and EINVAL for NOT_SUPPORTED', async () => {
    const h = vfioHost();
    const buf = h.buf(await vfioDeviceFeatureDmaBuf(h.proc, h.devFd, valid()));
    const bar = h.vdev.bars[0]!;
    const nic = await dmaBufDynamicAttach(buf, h.nic, revocable);
    const gpu = await dmaBufDynamicAttach(buf, h.gpu, revocable);
    const plat = await dmaBufDynamicAttach(buf, h.plat, revocable);
    const bus = await dmaBufMapAttachmentUnlocked(nic, BIDI);
    const iova = await dmaBufMapAttachmentUnlocked(gpu, BIDI);
    try {
      // BUS_ADDR: the two BAR ranges as bus addresses, no translation.
      expect(bus.entries.map((e) => [e.dmaAddress, e.dmaLength, e.bus])).toEqual([
        [bar.phys + bar.busOffset, 2 * PAGE_SIZE, true],
        [bar.phys + bar.busOffset + 8 * PAGE_SIZE, PAGE_SIZE, true],
      ]);
      // THRU_HOST_BRIDGE: one IOVA range in the gpu's domain that translates to the BAR pages.
      expect(iova.entries).toHaveLength(1);
      expect(iova.entries[0].bus).toBeUndefined();
      const dom = h.kernel.domainOf('gpu');
      expect(iommuIovaToPhys(dom, iova.entries[0].dmaAddress)).toBe(bar.phys);
      expect(iommuIovaToPhys(dom, iova.entries[0].dmaAddress + 2 * PAGE_SIZE)).toBe(bar.phys + 8 * PAGE_SIZE);
      expect((await expectCode(dmaBufMapAttachmentUnlocked(plat, BIDI), 'EINVAL')).message).toMatch(
        /NOT_SUPPORTED/,
      );
      // Both peers reach the same bytes: the nic writes by bus address, the gpu reads through its IOMMU.
      const data = pattern(3 * PAGE_SIZE, 1);
      expect(sgtWrite(h.peer(h.nic), bus, 0, data)).toBe(0);
      expect(bar.region.bytes.subarray(8 * PAGE_SIZE, 9 * PAGE_SIZE)).toEqual(data.subarray(2 * PAGE_SIZE));
      const back = new Uint8Array(data.length);
      expect(sgtRead(h.peer(h.gpu), iova, 0, back)).toBe(0);
      expect(back).toEqual(data);
      // Never a cached table: a second map is a new table with its own IOVA.
      const again = await dmaBufMapAttachmentUnlocked(gpu, BIDI);
      expect(again).not.toBe(iova);
      expect(again.entries[0].dmaAddress).not.toBe(iova.entries[0].dmaAddress);
      await dmaBufUnmapAttachmentUnlocked(gpu, again, BIDI);
    } finally {
      await dmaBufUnmapAttachmentUnlocked(nic, bus, BIDI);
      await dmaBufUnmapAttachmentUnlocked(gpu, iova, BIDI);
      for (const a of [nic, gpu, plat]) await dmaBufDetach(buf, a);
    }
    expect(h.vdev.dmabufs.values().next().value!.mappings.count).toBe(0);
    expect(iommuIovaToPhys(h.kernel.domainOf('gpu'), iova.entries[0].dmaAddress)).toBeNull();
  });
});

describe('vfio dma-buf TPH', () => {
  it('vfio - TPH: get_tph returns the tag set through the feature, in its own namespace only', async () => {
    const h = vfioHost({ tphCompleter: PciTphCompleter.TPH_ONLY });
    const fd = await vfioDeviceFeatureDmaBuf(h.proc, h.devFd, valid());
    const set = (d: Partial<Parameters<typeof vfioDeviceFeatureDmaBufTph>[2]>) =>
      vfioDeviceFeatureDmaBufTph(h.proc, h.devFd, { dmabuf_fd: fd, steering_tag: 0x2a, ph: 2, ...d });
    await expectCode(() => vfioPciDmaBufGetTph(h.buf(fd), 8), 'EOPNOTSUPP'); // nothing set yet
    expect((await expectCode(set({ ph: 4 }), 'EINVAL')).message).toMatch(/ph 4/);
    expect((await expectCode(set({ steering_tag: 0x100 }), 'EINVAL')).message).toMatch(
      /steering_tag 256 must be a 8-bit/,
    );
    expect((await expectCode(set({ reserved: 1 }), 'EINVAL')).message).toMatch(/reserved/);
    const heapFd = dmaHeapAlloc(h.proc, 'system', { len: PAGE_SIZE });
    expect((await expectCode(set({ dmabuf_fd: heapFd }), 'ENODEV')).message).toMatch(/not a dma-buf of/);
    await expectCode(set({ dmabuf_fd: 999 }), 'EBADF');
    await set({});
    expect(vfioPciDmaBufGetTph(h.buf(fd), 8)).toEqual({ steeringTag: 0x2a, ph: 2 });
    expect((await expectCode(() => vfioPciDmaBufGetTph(h.buf(fd), 16), 'EOPNOTSUPP')).message).toMatch(
      /8-bit tag/,
    );
    await expectCode(() => vfioPciDmaBufGetTph(h.buf(fd), 12), 'EINVAL');
    await expectCode(() => vfioPciDmaBufGetTph(h.buf(heapFd), 8), 'EOPNOTSUPP');
  });

  it('vfio - TPH: a function without TPH completer support refuses the feature and get_tph with EOPNOTSUPP', async () => {
    const h = vfioHost();
    const fd = await vfioDeviceFeatureDmaBuf(h.proc, h.devFd, valid());
    await expectCode(
      vfioDeviceFeatureDmaBufTph(h.proc, h.devFd, { dmabuf_fd: fd, steering_tag: 1, ph: 0 }),
      'EOPNOTSUPP',
    );
    expect((await expectCode(() => vfioPciDmaBufGetTph(h.buf(fd), 8), 'EOPNOTSUPP')).message).toMatch(
      /no TPH/,
    );
  });
});
