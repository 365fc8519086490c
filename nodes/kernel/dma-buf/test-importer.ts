/**
 * dmabuf-test-importer: a small importer driver for tests and the demo, following the importer
 * rules of kernel-semantics §1 for both kinds until real device drivers (GPU, mlx5) take over.
 *
 *  - dynamic (dma_buf_dynamic_attach): invalidateMappings marks the mapping stale with the lock
 *    held and stops using it; the next access unmaps it, re-maps under the lock and waits for the
 *    KERNEL fences (the exporter's move/clear) before its device touches memory (rule 21).
 *  - static (dma_buf_attach): map/unmap through the _unlocked wrappers; the core pins and waits.
 *
 * DMA is done as the device does it: through its IOMMU translation at the routing point
 * (fabric/dma.ts), here from the kernel thread on the device's behalf.
 */
import { err } from '../../../common/errno.ts';
import { DmaCtx, dmaRead, dmaReadBus, dmaWrite, dmaWriteBus } from '../../fabric/dma.ts';
import type { Device } from '../device.ts';
import { type DmaCtxHandoff, iommuDeviceDmaCtx } from '../iommu/iommu.ts';
import type { HostKernel } from '../kernel.ts';
import {
  type DmaBuf,
  type DmaBufAttachment,
  dmaBufAttach,
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufMapAttachment,
  dmaBufMapAttachmentUnlocked,
  dmaBufUnmapAttachment,
  dmaBufUnmapAttachmentUnlocked,
  getDmaBuf,
  dmaBufPut,
} from './dma-buf.ts';
import { DmaResvUsage, dmaResvGetFences, dmaResvLock, dmaResvUnlock } from './dma-resv.ts';
import { type DmaFence, dmaFenceWaitTimeout } from './dma-fence.ts';
import { DmaDataDirection, type SgTable, sgTableWalk } from './scatterlist.ts';

export interface TestImporterEvent {
  importer: string;
  what: 'attach' | 'map' | 'invalidate' | 'unmap' | 'wait-kernel-fence' | 'dma' | 'fault' | 'detach';
  detail: string;
}

export interface TestImporterOptions {
  dynamic: boolean;
  /** allow_peer2peer (dynamic importers only; static importers are never peer2peer). */
  p2p?: boolean;
  /** Deadline for waiting on KERNEL fences before a DMA (ms). */
  fenceTimeoutMs?: number;
  onEvent?: (e: TestImporterEvent) => void;
}

const BIDI = DmaDataDirection.BIDIRECTIONAL;

export class TestImporter {
  readonly dev: Device;
  readonly opts: TestImporterOptions;
  attach: DmaBufAttachment | null = null;
  private dmabuf: DmaBuf | null = null;
  private sgt: SgTable | null = null;
  private stale: SgTable[] = [];
  private readonly handoff: DmaCtxHandoff;
  private readonly ctx: DmaCtx;
  invalidations = 0;

  constructor(kernel: HostKernel, dev: Device, opts: TestImporterOptions) {
    if (dev.iommuId === undefined)
      throw err('EINVAL', `TestImporter: device ${dev.name} is not behind the IOMMU`);
    this.dev = dev;
    this.opts = opts;
    this.handoff = iommuDeviceDmaCtx(kernel.iommu, dev.iommuId);
    this.ctx = new DmaCtx(this.handoff.desc);
  }

  private event(what: TestImporterEvent['what'], detail: string): void {
    this.opts.onEvent?.({ importer: this.dev.name, what, detail });
  }

  /** Attach to `dmabuf` (takes a reference). EBUSY if already attached; exporter errors pass through. */
  async attachTo(dmabuf: DmaBuf): Promise<void> {
    if (this.attach) throw err('EBUSY', `TestImporter(${this.dev.name}): already attached`);
    this.attach = this.opts.dynamic
      ? await dmaBufDynamicAttach(dmabuf, this.dev, {
          allowPeer2peer: this.opts.p2p ?? false,
          invalidateMappings: () => this.invalidate(),
        })
      : await dmaBufAttach(dmabuf, this.dev);
    this.dmabuf = getDmaBuf(dmabuf);
    this.event(
      'attach',
      `${this.opts.dynamic ? 'dynamic' : 'static'} attach, peer2peer=${this.attach.peer2peer}`,
    );
  }

  // importer invalidate_mappings: called with the resv lock held; stop using the mapping now.
  private invalidate(): void {
    this.invalidations++;
    if (this.sgt) this.stale.push(this.sgt);
    this.sgt = null;
    this.event(
      'invalidate',
      this.stale.length ? 'mapping stale; unmap at next access' : 'nothing mapped (no-op)',
    );
  }

  /** The current mapping, (re)made if needed; for dynamic importers, after the KERNEL fences. */
  async mapping(): Promise<SgTable> {
    const attach = this.requireAttach('mapping');
    if (!this.opts.dynamic) {
      if (!this.sgt) {
        this.sgt = await dmaBufMapAttachmentUnlocked(attach, BIDI);
        this.event('map', describe(this.sgt));
      }
      return this.sgt;
    }
    const resv = attach.dmabuf.resv;
    await dmaResvLock(resv, null);
    let kernelFences: DmaFence[];
    try {
      for (const old of this.stale.splice(0)) {
        await dmaBufUnmapAttachment(attach, old, BIDI);
        this.event('unmap', 'stale mapping unmapped');
      }
      if (!this.sgt) {
        this.sgt = await dmaBufMapAttachment(attach, BIDI);
        this.event('map', describe(this.sgt));
      }
      kernelFences = dmaResvGetFences(resv, DmaResvUsage.KERNEL).filter((f) => !f.signaledFlag);
    } finally {
      dmaResvUnlock(resv);
    }
    // Rule 21(b): the device must not touch memory before the exporter's move/clear is done.
    for (const f of kernelFences) {
      this.event('wait-kernel-fence', `waiting for ${f.driverName}:${f.timelineName} fence ${f.seqno}`);
      if ((await dmaFenceWaitTimeout(f, this.opts.fenceTimeoutMs ?? 10_000)) === 0) {
        throw err('ETIMEDOUT', `TestImporter(${this.dev.name}): KERNEL fence ${f.seqno} did not signal`);
      }
    }
    return this.sgt;
  }

  /** Device write of `data` at buffer `offset`. Returns the DMA status (0 or a negative errno). */
  async write(offset: number, data: Uint8Array): Promise<number> {
    const sgt = await this.mapping();
    return this.dma(
      sgt,
      offset,
      data.length,
      (addr, at, n, bus) =>
        bus ? dmaWriteBus(this.ctx, addr, data, at, n) : dmaWrite(this.ctx, addr, data, at, n),
      'write',
    );
  }

  /** Device read of `length` bytes at `offset`. */
  async read(offset: number, length: number): Promise<{ status: number; data: Uint8Array }> {
    if (!Number.isSafeInteger(length) || length < 0)
      throw err('EINVAL', `TestImporter(${this.dev.name}).read: length ${length}`);
    const sgt = await this.mapping();
    const data = new Uint8Array(length);
    const status = this.dma(
      sgt,
      offset,
      length,
      (addr, at, n, bus) =>
        bus ? dmaReadBus(this.ctx, addr, n, data, at) : dmaRead(this.ctx, addr, n, data, at),
      'read',
    );
    return { status, data };
  }

  /**
   * DMA through a table the importer already gave back (a buggy importer): must fault in the
   * IOMMU, never land. For fault demonstrations and tests.
   */
  writeThrough(sgt: SgTable, offset: number, data: Uint8Array): number {
    return this.dma(
      sgt,
      offset,
      data.length,
      (addr, at, n, bus) =>
        bus ? dmaWriteBus(this.ctx, addr, data, at, n) : dmaWrite(this.ctx, addr, data, at, n),
      'write',
    );
  }

  /** Unmap the current mapping (static: also unpins). */
  async unmap(): Promise<void> {
    const attach = this.requireAttach('unmap');
    if (!this.sgt && this.stale.length === 0) return;
    if (this.opts.dynamic) {
      await dmaResvLock(attach.dmabuf.resv, null);
      try {
        for (const t of [...this.stale.splice(0), ...(this.sgt ? [this.sgt] : [])])
          await dmaBufUnmapAttachment(attach, t, BIDI);
      } finally {
        dmaResvUnlock(attach.dmabuf.resv);
      }
    } else if (this.sgt) {
      await dmaBufUnmapAttachmentUnlocked(attach, this.sgt, BIDI);
    }
    this.sgt = null;
    this.event('unmap', 'unmapped');
  }

  /** The table in use, if mapped (for showing addresses). */
  get current(): SgTable | null {
    return this.sgt;
  }

  /** Unmap, detach, drop the buffer reference and the DMA context. Idempotent. */
  async close(): Promise<void> {
    if (this.attach && this.dmabuf) {
      await this.unmap();
      await dmaBufDetach(this.dmabuf, this.attach);
      this.event('detach', 'detached');
      dmaBufPut(this.dmabuf);
    }
    this.attach = null;
    this.dmabuf = null;
    this.handoff.release();
    this.handoff.desc.port?.close();
  }

  private requireAttach(fn: string): DmaBufAttachment {
    if (!this.attach) throw err('EINVAL', `TestImporter(${this.dev.name}).${fn}: not attached`);
    return this.attach;
  }

  private dma(
    sgt: SgTable,
    offset: number,
    length: number,
    op: (addr: number, at: number, n: number, bus: boolean) => number,
    kind: string,
  ): number {
    let failedAt = -1;
    const status = sgTableWalk(sgt, offset, length, (addr, at, n, bus) => {
      const st = op(addr, at, n, bus);
      if (st !== 0) failedAt = addr;
      return st;
    });
    if (status !== 0) {
      this.event('fault', `${kind} at dma address 0x${failedAt.toString(16)} failed with status ${status}`);
      return status;
    }
    this.event('dma', `${kind} ${length} bytes at offset ${offset}`);
    return 0;
  }
}

function describe(sgt: SgTable): string {
  const first = sgt.entries[0];
  return `${sgt.entries.length} DMA segment(s), ${sgt.length} bytes, first at 0x${first.dmaAddress.toString(16)}`;
}
