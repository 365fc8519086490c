/**
 * uapi of the test devices (the iommufd-selftest-style controls): create a buffer from the
 * movable mock exporter, move or revoke it, and drive test importers (a device that attaches to
 * a dma-buf fd, maps it and does DMA). Used by scenarios and the demo until real GPU/NIC drivers
 * exist; everything goes through the same kernel paths real drivers use.
 */
import { err } from '../../common/errno.ts';
import { dmaBufFd, dmaBufFromFd, DmaBufFile } from '../kernel/dma-buf/dma-buf-file.ts';
import { MockExporter, type Placement } from '../kernel/dma-buf/mock-exporter.ts';
import { syncFileInstall } from '../kernel/dma-buf/sync-file.ts';
import { TestImporter, type TestImporterEvent } from '../kernel/dma-buf/test-importer.ts';
import type { Device } from '../kernel/device.ts';
import { iommuIovaToPhys } from '../kernel/iommu/iommu.ts';
import { type Process, syscall } from './process.ts';

export type { Placement, TestImporterEvent };

let nextImporterId = 1;

function mockExporterOf(proc: Process, fd: number, who: string): MockExporter {
  const buf = dmaBufFromFd(proc.fdt, fd, who);
  if (!(buf.priv instanceof MockExporter))
    throw err('EINVAL', `${who}: fd ${fd} is not a mock-exporter buffer`);
  return buf.priv;
}

/** Export `size` bytes from a mock device's VRAM (or system RAM); returns the dma-buf fd. */
export function mockExporterCreate(
  proc: Process,
  size: number,
  opts: { placement?: Placement; vramBytes?: number } = {},
): number {
  return syscall(proc, 'MOCK_EXPORTER_CREATE', () => {
    const env = proc.kernel.mockExporterEnv(opts.vramBytes ?? Math.max(size * 2, 1 << 20));
    return dmaBufFd(proc.fdt, MockExporter.create(env, size, opts.placement).dmabuf);
  });
}

/** Where the buffer lives now and how often it moved. */
export function mockExporterInfo(
  proc: Process,
  fd: number,
): { placement: Placement; moves: number; revoked: boolean; mappings: number } {
  return syscall(proc, 'MOCK_EXPORTER_INFO', () => {
    const e = mockExporterOf(proc, fd, 'MOCK_EXPORTER_INFO');
    return { placement: e.placement, moves: e.moves, revoked: e.revoked, mappings: e.mappedCount };
  });
}

/** Move the buffer (evict/migrate); returns a sync_file fd for the move's KERNEL fence. EBUSY if pinned. */
export function mockExporterMove(proc: Process, fd: number, target?: Placement): Promise<number> {
  return syscall(proc, 'MOCK_EXPORTER_MOVE', async () => {
    const fence = await mockExporterOf(proc, fd, 'MOCK_EXPORTER_MOVE').move(target);
    return syncFileInstall(proc.fdt, fence);
  });
}

/** Revoke (true) or restore (false) access to the buffer; revoke waits for fences and unmaps. */
export function mockExporterRevoke(
  proc: Process,
  fd: number,
  revoked: boolean,
  timeoutMs = 10_000,
): Promise<void> {
  return syscall(proc, 'MOCK_EXPORTER_REVOKE', () => {
    const e = mockExporterOf(proc, fd, 'MOCK_EXPORTER_REVOKE');
    return revoked ? e.revoke({ waitUnmap: true, timeoutMs }) : e.unrevoke();
  });
}

export interface ImporterOpenOptions {
  /** Device name on the host (created if it does not exist). */
  device: string;
  dynamic: boolean;
  p2p?: boolean;
  onEvent?: (e: TestImporterEvent) => void;
}

/** Open a test importer on `device` and attach it to dma-buf `fd`; returns the importer id. */
export function importerAttach(proc: Process, fd: number, opts: ImporterOpenOptions): Promise<number> {
  return syscall(proc, 'IMPORTER_ATTACH', async () => {
    if (!opts || typeof opts !== 'object') throw err('EINVAL', 'IMPORTER_ATTACH: opts missing');
    const file = proc.fdt.getAs(fd, DmaBufFile, 'IMPORTER_ATTACH');
    let dev: Device;
    try {
      dev = proc.kernel.device(opts.device);
    } catch {
      dev = proc.kernel.addDevice(opts.device);
    }
    const imp = new TestImporter(proc.kernel, dev, {
      dynamic: opts.dynamic,
      p2p: opts.p2p,
      onEvent: opts.onEvent,
    });
    try {
      await imp.attachTo(file.dmabuf);
    } catch (e) {
      await imp.close();
      throw e;
    }
    const id = nextImporterId++;
    proc.importers.set(id, imp);
    return id;
  });
}

function importer(proc: Process, id: number, who: string): TestImporter {
  const imp = proc.importers.get(id);
  if (!imp) throw err('ENOENT', `${who}: importer ${id} is not open in ${proc}`);
  return imp;
}

/** The importer's device writes `data` at `offset` of the buffer (maps first if needed). Returns the DMA status. */
export function importerWrite(proc: Process, id: number, offset: number, data: Uint8Array): Promise<number> {
  return syscall(proc, 'IMPORTER_WRITE', () => importer(proc, id, 'IMPORTER_WRITE').write(offset, data));
}

/** The importer's device reads `length` bytes at `offset`. */
export function importerRead(
  proc: Process,
  id: number,
  offset: number,
  length: number,
): Promise<{ status: number; data: Uint8Array }> {
  return syscall(proc, 'IMPORTER_READ', () => importer(proc, id, 'IMPORTER_READ').read(offset, length));
}

/** Current mapping of the importer (DMA side), or null. */
export function importerMapping(
  proc: Process,
  id: number,
): { entries: { dmaAddress: number; dmaLength: number }[] } | null {
  return syscall(proc, 'IMPORTER_MAPPING', () => {
    const t = importer(proc, id, 'IMPORTER_MAPPING').current;
    return t ? { entries: t.entries.map((e) => ({ ...e })) } : null;
  });
}

/** Unmap (static importers also unpin). */
export function importerUnmap(proc: Process, id: number): Promise<void> {
  return syscall(proc, 'IMPORTER_UNMAP', () => importer(proc, id, 'IMPORTER_UNMAP').unmap());
}

/**
 * A buggy device: DMA through the importer's previous mapping after it was unmapped. The IOMMU
 * must refuse it (a fault record, status EFAULT).
 */
export function importerStaleWrite(
  proc: Process,
  id: number,
  mapping: { entries: { dmaAddress: number; dmaLength: number }[] },
  data: Uint8Array,
): number {
  return syscall(proc, 'IMPORTER_STALE_WRITE', () => {
    const imp = importer(proc, id, 'IMPORTER_STALE_WRITE');
    if (!mapping || !Array.isArray(mapping.entries))
      throw err('EINVAL', 'IMPORTER_STALE_WRITE: mapping has no entries');
    return imp.writeThrough(
      {
        entries: mapping.entries,
        cpu: [],
        origNents: 0,
        length: mapping.entries.reduce((n, e) => n + e.dmaLength, 0),
      },
      0,
      data,
    );
  });
}

/** Detach and close the importer. */
export function importerClose(proc: Process, id: number): Promise<void> {
  return syscall(proc, 'IMPORTER_CLOSE', async () => {
    await importer(proc, id, 'IMPORTER_CLOSE').close();
    proc.importers.delete(id);
  });
}

/**
 * debugfs-style translation: what `iova` of `device` resolves to (the region behind it), or null
 * if unmapped. Lets scenarios show where a mapping points without handing out physical pages.
 */
export function iommuTranslate(
  proc: Process,
  device: string,
  iova: number,
): { phys: number; region: string; kind: string } | null {
  return syscall(proc, 'IOMMU_TRANSLATE', () => {
    const phys = iommuIovaToPhys(proc.kernel.domainOf(device), iova);
    if (phys === null) return null;
    const r = proc.kernel.physMap.resolve(phys);
    return r ? { phys, region: r.region.name, kind: r.window.kind === 0 ? 'RAM' : 'BAR' } : null;
  });
}

/** Drain the IOMMU fault log (what dmesg would show as DMAR faults). */
export function iommuFaults(
  proc: Process,
): { device: number; address: number; access: string; reason: number }[] {
  return syscall(proc, 'IOMMU_FAULTS', () =>
    proc.kernel.iommu.faultLog.drain().map((r) => ({
      device: r.deviceId,
      address: r.address,
      access: r.access === 1 ? 'WRITE' : 'READ',
      reason: r.reason,
    })),
  );
}
