// PRIME export of GPU buffer objects: the dynamic exporter's placement decisions for P2P and
// non-P2P importers, static importers (pin on map), pins (rule 12) and P2PDMA addressing from a
// topology (BUS_ADDR: a peer GPU copies by bus address). Rules: kernel-semantics §1.3, §1.4, §3.2.
import { crc32 } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { withDeadline } from '../../../common/deadline.ts';
import { loadTopologyFile } from '../../../topology/load.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import {
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufMapAttachment,
  dmaBufPin,
  dmaBufUnmapAttachment,
  dmaBufUnpin,
} from '../dma-buf/dma-buf.ts';
import { dmaResvLock, dmaResvUnlock } from '../dma-buf/dma-resv.ts';
import { DmaDataDirection } from '../dma-buf/scatterlist.ts';
import { iommuIovaToPhys } from '../iommu/iommu.ts';
import { expectCode } from '../../../test/support/expect-errno.ts';
import { GpuCmdFlag, GpuOp } from './gpu.ts';
import { GpuPlacement, gpuBoCpuRead, gpuBoCpuWrite } from './gpu-bo.ts';
import { gpuBoChecksum, gpuSubmitRaw } from './gpu-jobs.ts';
import { gpuBoCreate, gpuBoMove } from './gpu-placement.ts';
import { gpuBoExport } from './gpu-prime.ts';
import { gpuHost, gpuHostsTeardown, importer, MS, pattern, START_MS } from './fixtures/gpu-host.ts';

afterEach(gpuHostsTeardown);

const BIDI = DmaDataDirection.BIDIRECTIONAL;
const tree = (name: string) =>
  loadTopologyFile(new URL(`../../../topology/testdata/trees/${name}.yaml`, import.meta.url).pathname);

describe('gpu prime', () => {
  it('gpu - PRIME export to a P2P importer keeps VRAM; without topology ids the BAR is mapped through its IOMMU (THRU_HOST_BRIDGE)', async () => {
    const { host, gpu, kernel } = gpuHost();
    const bo = await gpuBoCreate(gpu, 4 * PAGE_SIZE);
    const imp = importer(host, 'nic0', { dynamic: true, p2p: true });
    await imp.attachTo(gpuBoExport(bo));
    expect(imp.attach!.peer2peer).toBe(true);
    const data = pattern(bo.size, 5);
    expect(await imp.write(0, data)).toBe(0);
    expect(bo.placement).toBe(GpuPlacement.VRAM);
    const e = imp.current!.entries[0];
    expect(e.bus).toBeUndefined();
    const phys = iommuIovaToPhys(kernel.domainOf('nic0'), e.dmaAddress)!;
    expect(phys >= gpu.vramPhys && phys < gpu.vramPhys + gpu.vram.size).toBe(true);
    // The GPU sees what the importer wrote into its VRAM.
    await gpu.host.ready(START_MS);
    const sum = await gpuBoChecksum(bo, 0, bo.size);
    expect((await withDeadline(sum.done, MS, 'checksum')).result).toBe(crc32(data));
    expect(imp.invalidations).toBe(0);
  });

  it('gpu - PRIME export to a non-P2P importer migrates to system memory at map; a static importer pins it there', async () => {
    const { host, gpu } = gpuHost();
    const bo = await gpuBoCreate(gpu, 4 * PAGE_SIZE);
    const data = pattern(bo.size, 6);
    await gpuBoCpuWrite(bo, 0, data);
    const dmabuf = gpuBoExport(bo);
    const p2p = importer(host, 'nic0', { dynamic: true, p2p: true });
    await p2p.attachTo(dmabuf);
    await p2p.read(0, 16);
    const plain = importer(host, 'nic1', { dynamic: true, p2p: false });
    await plain.attachTo(dmabuf);
    const r = await plain.read(0, bo.size);
    expect(r).toEqual({ status: 0, data });
    expect(bo.placement).toBe(GpuPlacement.SYSTEM);
    expect(p2p.invalidations).toBe(1); // moved under it; it remaps on its next access
    expect((await p2p.read(0, bo.size)).data).toEqual(data);
    // Static importer: pin on map (system memory), so the object may not go back to VRAM.
    const stat = importer(host, 'nic2', { dynamic: false });
    await stat.attachTo(dmabuf);
    expect((await stat.read(0, bo.size)).data).toEqual(data);
    await expectCode(gpuBoMove(bo, GpuPlacement.VRAM), 'EBUSY');
    await stat.unmap();
    await gpuBoMove(bo, GpuPlacement.VRAM);
    expect(bo.placement).toBe(GpuPlacement.VRAM);
    expect(await gpuBoCpuRead(bo, 0, bo.size)).toEqual(data);
  });

  it('gpu - rule 12: pin stays in VRAM when every attachment is P2P, else pins in system memory; pinned in VRAM, a non-P2P map is EBUSY', async () => {
    const { host, gpu } = gpuHost();
    const a = await gpuBoCreate(gpu, 2 * PAGE_SIZE);
    const b = await gpuBoCreate(gpu, 2 * PAGE_SIZE);
    const pin = async (imp: ReturnType<typeof importer>, on: boolean) => {
      await dmaResvLock(imp.attach!.dmabuf.resv, null);
      try {
        await (on ? dmaBufPin(imp.attach!) : dmaBufUnpin(imp.attach!));
      } finally {
        dmaResvUnlock(imp.attach!.dmabuf.resv);
      }
    };
    // a: both importers P2P -> pinned in VRAM.
    const a1 = importer(host, 'nic0', { dynamic: true, p2p: true });
    const a2 = importer(host, 'nic1', { dynamic: true, p2p: true });
    await a1.attachTo(gpuBoExport(a));
    await a2.attachTo(gpuBoExport(a));
    await pin(a1, true);
    expect(a.placement).toBe(GpuPlacement.VRAM);
    const late = importer(host, 'nic2', { dynamic: true, p2p: false });
    await late.attachTo(gpuBoExport(a));
    await expectCode(late.mapping(), 'EBUSY');
    await pin(a1, false);
    // b: one non-P2P attachment (not even mapped) -> the pin migrates to system memory first.
    const b1 = importer(host, 'nic3', { dynamic: true, p2p: true });
    const b2 = importer(host, 'nic4', { dynamic: true, p2p: false });
    await b1.attachTo(gpuBoExport(b));
    await b2.attachTo(gpuBoExport(b));
    await pin(b1, true);
    expect(b.placement).toBe(GpuPlacement.SYSTEM);
    expect(b.resv.lock.isLocked).toBe(false);
    await pin(b1, false);
  });

  it('gpu - P2PDMA from the topology: BUS_ADDR maps bus addresses a peer GPU copies from; NOT_SUPPORTED clears peer2peer', async () => {
    const topology = tree('switch-no-acs');
    const { host, gpu: g0 } = gpuHost({ pciId: 'a', topology });
    const { gpu: g1 } = gpuHost({ on: host, pciId: 'b', topology });
    await Promise.all([g0.host.ready(START_MS), g1.host.ready(START_MS)]);
    const src = await gpuBoCreate(g0, 3 * PAGE_SIZE);
    const data = pattern(src.size, 8);
    await gpuBoCpuWrite(src, 0, data);
    const dmabuf = gpuBoExport(src);
    // g1 imports (dynamically, P2P-capable) and is under the same switch: bus addresses.
    const att = await dmaBufDynamicAttach(dmabuf, g1.dev, { allowPeer2peer: true, invalidateMappings() {} });
    expect([att.peer2peer, att.priv]).toEqual([true, 'BUS_ADDR']);
    await dmaResvLock(dmabuf.resv, null);
    const sgt = await dmaBufMapAttachment(att, BIDI);
    dmaResvUnlock(dmabuf.resv);
    expect(sgt.entries.every((e) => e.bus === true)).toBe(true);
    expect(sgt.entries[0].dmaAddress).toBe(g0.vramPhys + src.pages.runs[0].pfn * PAGE_SIZE);
    const dst = await gpuBoCreate(g1, src.size);
    let at = 0;
    const copies = sgt.entries.map((e) => {
      const job = gpuSubmitRaw(g1, {
        opcode: GpuOp.COPY,
        flags: GpuCmdFlag.SRC_BUS,
        src: e.dmaAddress,
        dst: dst.gpuVa + at,
        len: e.dmaLength,
      });
      at += e.dmaLength;
      return job.done;
    });
    expect((await withDeadline(Promise.all(copies), MS, 'P2P copies')).map((c) => c.status)).toEqual(
      sgt.entries.map(() => 0),
    );
    expect(await gpuBoCpuRead(dst, 0, dst.size)).toEqual(data);
    await dmaResvLock(dmabuf.resv, null);
    await dmaBufUnmapAttachment(att, sgt, BIDI);
    dmaResvUnlock(dmabuf.resv);
    await dmaBufDetach(dmabuf, att);
    // d hangs off another root port of a host bridge that is not allow-listed.
    const far = importer(host, 'nic0', { dynamic: true, p2p: true }, 'd');
    await far.attachTo(dmabuf);
    expect(far.attach!.peer2peer).toBe(false);
    expect((await far.read(0, src.size)).data).toEqual(data);
    expect(src.placement).toBe(GpuPlacement.SYSTEM);
  });
});
