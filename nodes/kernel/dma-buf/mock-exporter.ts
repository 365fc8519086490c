/**
 * A movable, revocable dynamic exporter for tests and demos, in the spirit of the iommufd
 * selftest exporter: memory in a mock device's VRAM (a BAR window, peer-to-peer importers only)
 * or in host RAM, moved on request, and revoked/restored on request.
 *
 * DOC: move (the exporter side of invalidate_mappings, rules 11, 22-25)
 *  1. take the resv lock; refuse with EBUSY if anything is pinned (rule 11) or ENODEV if revoked;
 *  2. allocate the new placement and switch the buffer to it: maps from now on point there;
 *  3. dmaBufInvalidateMappings(): every dynamic importer is told, with the lock held;
 *  4. publish the copy job as a KERNEL fence; unlock;
 *  5. the copy job waits for every fence that was on the buffer (BOOKKEEP included), copies, and
 *     only then frees the old pages (rule 25) and signals the KERNEL fence.
 * Steps 2-5 are the shared protocol of dma-buf-move.ts (the GPU driver uses it too); the copy
 * here is a CPU copy.
 * A fence that never signals leaves the old pages allocated (counted in `leakedMoves`): the
 * emulator never reuses memory a device may still touch.
 *
 * DOC: revoke (rules 27-28): lock, mark revoked, invalidate, unlock; then wait for the fences
 * and, when asked, for every mapping to be unmapped. attach/pin/map fail ENODEV while revoked.
 */
import { err } from '../../../common/errno.ts';
import { trace } from '../../../common/trace.ts';
import type { Device } from '../device.ts';
import type { PageAllocator } from '../mm/page-alloc.ts';
import { PageList } from '../mm/page-list.ts';
import type { PhysMap } from '../mm/phys-map.ts';
import {
  type DmaBuf,
  type DmaBufAttachment,
  dmaBufExport,
  dmaBufInvalidateMappings,
  dmaBufIsPinned,
} from './dma-buf.ts';
import type { DmaBufOps } from './dma-buf-ops.ts';
import { dmaBufMoveBeginLocked, dmaBufMoveRun } from './dma-buf-move.ts';
import { type DmaFence, DmaFenceTimeline, dmaFenceWaitTimeout } from './dma-fence.ts';
import {
  DmaResvUsage,
  dmaResvAssertHeld,
  dmaResvLock,
  dmaResvUnlock,
  dmaResvWaitTimeout,
} from './dma-resv.ts';
import { mapPageList, pageListView, unmapPageList } from './heaps/system-heap.ts';
import { PAGE_SIZE, type SgTable } from './scatterlist.ts';

export const Placement = { VRAM: 'vram', SYSTEM: 'system' } as const;
export type Placement = (typeof Placement)[keyof typeof Placement];

function checkPlacement(what: string, p: Placement): void {
  if (p !== Placement.VRAM && p !== Placement.SYSTEM)
    throw err('EINVAL', `${what} ${JSON.stringify(p)} is not a Placement`);
}

export interface MockExporterEnv {
  physMap: PhysMap;
  /** Host RAM. */
  ram: PageAllocator;
  /** The mock device's VRAM (its region must be a BAR window in physMap). */
  vram: PageAllocator;
  /** Topology check for peer2peer (rule 7): may `dev` reach VRAM directly? Default: yes. */
  p2pReachable?: (dev: Device) => boolean;
  /** How long a move's copy job waits for old fences before giving up (ms). */
  fenceTimeoutMs?: number;
}

export class MockExporter {
  readonly dmabuf: DmaBuf;
  readonly env: MockExporterEnv;
  placement: Placement;
  pages: PageList;
  revoked = false;
  moves = 0;
  /** Moves whose old pages could not be freed because a fence never signalled. */
  leakedMoves = 0;
  private readonly timeline = new DmaFenceTimeline('mock-exporter', 'move');
  /** Woken by unmapDmaBuf: revoke waits for the last mapping to go. */
  unmapWaiters: Array<() => void> = [];

  private constructor(env: MockExporterEnv, size: number, placement: Placement) {
    this.env = env;
    this.placement = placement;
    this.pages = PageList.allocate(this.allocator(placement), size, { maxRun: 8 });
    this.dmabuf = dmaBufExport({ expName: 'mock-exporter', ops: mockOps, size: this.pages.size, priv: this });
  }

  /** Export a new buffer of `size` bytes in `placement`. ENOMEM naming the region. */
  static create(env: MockExporterEnv, size: number, placement: Placement = Placement.VRAM): MockExporter {
    if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE_SIZE !== 0) {
      throw err('EINVAL', `MockExporter.create: size ${size} is not a positive multiple of PAGE_SIZE`);
    }
    checkPlacement('MockExporter.create: placement', placement);
    return new MockExporter(env, size, placement);
  }

  allocator(p: Placement): PageAllocator {
    return p === Placement.VRAM ? this.env.vram : this.env.ram;
  }

  /**
   * Move to `target` (default: the other placement) following DOC: move. Resolves with the KERNEL
   * fence of the copy job once it is published (not once the copy is done).
   * Lock: takes the resv lock (EDEADLK if the caller holds it). Throws: EBUSY (pinned), ENODEV (revoked),
   * EINVAL naming an unknown target.
   */
  async move(target?: Placement): Promise<DmaFence> {
    if (target !== undefined) checkPlacement('MockExporter.move: target', target);
    const resv = this.dmabuf.resv;
    await dmaResvLock(resv, null);
    try {
      return this.moveLocked(
        target ?? (this.placement === Placement.VRAM ? Placement.SYSTEM : Placement.VRAM),
      );
    } finally {
      dmaResvUnlock(resv);
    }
  }

  /** Steps 1-4 of DOC: move with the resv lock held (also used by pin/map migration). */
  moveLocked(target: Placement): DmaFence {
    dmaResvAssertHeld(this.dmabuf.resv, 'MockExporter.moveLocked');
    if (this.revoked) throw err('ENODEV', `MockExporter.move: ${this.dmabuf} is revoked`);
    if (dmaBufIsPinned(this.dmabuf))
      throw err('EBUSY', `MockExporter.move: ${this.dmabuf} is pinned (rule 11)`);
    // The copy job overwrites every byte: no zeroing first.
    const next = PageList.allocate(this.allocator(target), this.pages.size, { maxRun: 8, zero: false });
    const old = this.pages;
    const from = this.placement;
    // Steps 2-4 and 5 are the shared protocol (dma-buf-move.ts); only the copy is ours (the CPU).
    const move = dmaBufMoveBeginLocked(this.dmabuf.resv, this.dmabuf, this.timeline, () => {
      this.pages = next;
      this.placement = target;
      this.moves++;
    });
    trace('dmabufMove', () => ({ buf: String(this.dmabuf), from, to: target, deps: move.deps.length }));
    void dmaBufMoveRun(move, this.timeline, {
      timeoutMs: this.env.fenceTimeoutMs ?? 10_000,
      copy: () => {
        old.copyTo(next);
        return 0;
      },
      release: () => old.free(),
      leak: () => {
        this.leakedMoves++;
      },
    });
    return move.fence;
  }

  /**
   * Revoke access (DOC: revoke). Resolves once every fence on the buffer has signalled and, with
   * `waitUnmap`, once importers unmapped everything. ETIMEDOUT naming what did not finish.
   */
  async revoke(opts: { waitUnmap?: boolean; timeoutMs?: number } = {}): Promise<void> {
    const resv = this.dmabuf.resv;
    const timeout = opts.timeoutMs ?? 10_000;
    await dmaResvLock(resv, null);
    try {
      this.revoked = true;
      dmaBufInvalidateMappings(this.dmabuf);
    } finally {
      dmaResvUnlock(resv);
    }
    trace('dmabufRevoke', () => ({ buf: String(this.dmabuf), revoked: true }));
    if ((await dmaResvWaitTimeout(resv, DmaResvUsage.BOOKKEEP, timeout)) === 0) {
      throw err('ETIMEDOUT', `MockExporter.revoke: fences of ${this.dmabuf} did not signal`);
    }
    if (opts.waitUnmap) await this.waitUnmapped(timeout);
  }

  /** Restore access; unpinned importers remap on demand, pinned ones treated the revoke as final. */
  async unrevoke(): Promise<void> {
    await dmaResvLock(this.dmabuf.resv, null);
    this.revoked = false;
    dmaResvUnlock(this.dmabuf.resv);
    trace('dmabufRevoke', () => ({ buf: String(this.dmabuf), revoked: false }));
  }

  /** Live importer mappings. */
  get mappedCount(): number {
    return this.dmabuf.attachments.reduce((n, a) => n + a.mappings.size, 0);
  }

  private waitUnmapped(timeoutMs: number): Promise<void> {
    if (this.mappedCount === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.unmapWaiters = this.unmapWaiters.filter((w) => w !== wake);
        reject(
          err(
            'ETIMEDOUT',
            `MockExporter.revoke: ${this.mappedCount} mapping(s) of ${this.dmabuf} not unmapped`,
          ),
        );
      }, timeoutMs);
      const wake = () => {
        clearTimeout(timer);
        resolve();
      };
      this.unmapWaiters.push(wake);
    });
  }

  // Can every attachment reach VRAM? (rule 12: otherwise pin in system memory)
  allPeer2peer(): boolean {
    return this.dmabuf.attachments.every((a) => a.peer2peer);
  }
}

const exporterOf = (a: DmaBufAttachment): MockExporter => a.dmabuf.priv as MockExporter;

const mockOps: DmaBufOps = {
  attach(dmabuf, attach) {
    const exp = dmabuf.priv as MockExporter;
    if (exp.revoked) throw err('ENODEV', `mock_exporter_attach: ${dmabuf} is revoked`);
    if (attach.peer2peer && exp.env.p2pReachable && !exp.env.p2pReachable(attach.dev))
      attach.peer2peer = false;
  },
  async pin(attach) {
    const exp = exporterOf(attach);
    if (exp.revoked) throw err('ENODEV', `mock_exporter_pin: ${attach.dmabuf} is revoked`);
    // Rule 10/12: pin where every attachment can reach, and return only when memory is ready.
    if (exp.placement === Placement.VRAM && !exp.allPeer2peer() && !dmaBufIsPinned(attach.dmabuf)) {
      const f = exp.moveLocked(Placement.SYSTEM);
      if ((await dmaFenceWaitTimeout(f, exp.env.fenceTimeoutMs ?? 10_000)) === 0) {
        throw err('ETIMEDOUT', `mock_exporter_pin: migration of ${attach.dmabuf} did not finish`);
      }
    } else if (exp.placement === Placement.VRAM && !attach.peer2peer) {
      throw err(
        'EBUSY',
        `mock_exporter_pin: ${attach.dmabuf} is pinned in VRAM, unreachable by ${attach.dev.name}`,
      );
    }
  },
  unpin() {},
  mapDmaBuf(attach, dir): SgTable {
    const exp = exporterOf(attach);
    if (exp.revoked) throw err('ENODEV', `mock_exporter_map: ${attach.dmabuf} is revoked`);
    if (exp.placement === Placement.VRAM && !attach.peer2peer) {
      // A non-P2P importer cannot reach VRAM: migrate (invalidating everyone) unless pinned there.
      if (dmaBufIsPinned(attach.dmabuf)) {
        throw err(
          'EBUSY',
          `mock_exporter_map: ${attach.dmabuf} is pinned in VRAM, unreachable by ${attach.dev.name}`,
        );
      }
      exp.moveLocked(Placement.SYSTEM);
    }
    return mapPageList(exp.pages, exp.env.physMap, attach.dev, dir, 'mock_exporter_map');
  },
  unmapDmaBuf(attach, sgt) {
    unmapPageList(attach.dev, sgt);
    const exp = exporterOf(attach);
    // The core dropped the mapping before calling us: wake revoke once none is left.
    if (exp.mappedCount === 0) for (const wake of exp.unmapWaiters.splice(0)) wake();
  },
  release(dmabuf) {
    const exp = dmabuf.priv as MockExporter;
    // Fences may still be pending on the last location: free only after them (rule 25).
    void dmaResvWaitTimeout(dmabuf.resv, DmaResvUsage.BOOKKEEP, exp.env.fenceTimeoutMs ?? 10_000).then(
      (left) => {
        if (left > 0) exp.pages.free();
        else exp.leakedMoves++;
      },
    );
  },
  mmap(dmabuf, pgoff, pages) {
    const exp = dmabuf.priv as MockExporter;
    return pageListView(() => exp.pages, pgoff * PAGE_SIZE, pages * PAGE_SIZE);
  },
  vmap(dmabuf) {
    const exp = dmabuf.priv as MockExporter;
    return pageListView(() => exp.pages, 0, dmabuf.size);
  },
};
