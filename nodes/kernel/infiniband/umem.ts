/**
 * ib_umem for host memory (drivers/infiniband/core/umem.c, reduced): the pinned user pages
 * behind an ibv_reg_mr(), mapped for the HCA through its DMA API (IOMMU domain).
 *
 * The emulator has no process address space yet, so "user memory" is UserPages: anonymous,
 * physically contiguous host RAM with a made-up virtual address, allocated for a process by
 * nodes/uapi/verbs.ts (its mmapAnonymous) and already resident (pinned) for its lifetime, as
 * get_user_pages would leave it for an MR.
 *
 * Thread: kernel.
 */
import { err } from '../../../common/errno.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import type { Device, DmaSegment } from '../device.ts';
import type { HostKernel } from '../kernel.ts';
import type { PageRun } from '../mm/page-alloc.ts';
import type { UmemRun } from './umem-dmabuf.ts';

/** An anonymous user mapping: `length` bytes at virtual address `va`, CPU view `bytes`. */
export interface UserPages {
  readonly va: number;
  readonly length: number;
  readonly bytes: Uint8Array;
  /** CPU-physical address of the first byte. */
  readonly phys: number;
  readonly run: PageRun;
  /** MRs holding these pages (munmap is EBUSY while > 0). */
  pins: number;
  freed: boolean;
}

/** First user virtual address handed out (x86-64 mmap area). */
const VA_BASE = 0x7f00_0000_0000;
let nextVa = VA_BASE;

/**
 * Allocate `length` bytes (rounded up to pages) of zeroed, contiguous host RAM as user pages.
 * Called by: verbs.ts mmapAnonymous. Throws: EINVAL naming length; ENOMEM from the allocator.
 */
export function userPagesAlloc(kernel: HostKernel, length: number): UserPages {
  if (!Number.isSafeInteger(length) || length <= 0)
    throw err('EINVAL', `mmap: length ${length} must be a positive integer`);
  const pages = Math.ceil(length / PAGE_SIZE);
  const run = kernel.ramAlloc.allocContigPages(pages);
  const offset = run.pfn * PAGE_SIZE;
  const phys = kernel.physMap.regionToPhys(kernel.ram, offset);
  if (phys === null) throw err('EFAULT', 'mmap: host RAM is not in the physical map');
  const bytes = kernel.ram.bytes.subarray(offset, offset + pages * PAGE_SIZE);
  bytes.fill(0); // rule 10: nobody sees the previous owner's bytes
  const va = nextVa;
  nextVa += (pages + 16) * PAGE_SIZE; // a guard gap between mappings
  return { va, length: pages * PAGE_SIZE, bytes, phys, run, pins: 0, freed: false };
}

/** munmap. Throws: EBUSY while an MR pins the pages. Idempotent. */
export function userPagesFree(kernel: HostKernel, mem: UserPages): void {
  if (mem.freed) return;
  if (mem.pins > 0) throw err('EBUSY', `munmap: 0x${mem.va.toString(16)} is pinned by ${mem.pins} MR(s)`);
  mem.freed = true;
  kernel.ramAlloc.freeContigRange(mem.run.pfn, mem.run.count);
}

export class IbUmem {
  readonly dev: Device;
  readonly mem: UserPages;
  readonly addr: number;
  readonly length: number;
  readonly runs: UmemRun[];
  private readonly mapped: DmaSegment[];
  released = false;

  constructor(dev: Device, mem: UserPages, addr: number, length: number, mapped: DmaSegment[]) {
    this.dev = dev;
    this.mem = mem;
    this.addr = addr;
    this.length = length;
    this.mapped = mapped;
    this.runs = mapped.map((s) => ({ addr: s.addr, pages: s.length / PAGE_SIZE, bus: false }));
  }

  get pageOffset(): number {
    return this.addr % PAGE_SIZE;
  }

  /** ib_umem_release: unmap for the device, unpin. Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.dev.dma?.unmapSg(this.mapped);
    this.mem.pins--;
  }
}

/**
 * ib_umem_get: pin [addr, addr + length) of `mem` and map its pages for `dev` (read, and write
 * when `writable`). Throws: EFAULT if the range is not inside the mapping; ENODEV if the device
 * cannot DMA; the DMA API's errors (ENOSPC).
 */
export function ibUmemGet(
  dev: Device,
  mem: UserPages,
  addr: number,
  length: number,
  writable: boolean,
): IbUmem {
  if (mem.freed || !(addr >= mem.va && addr + length <= mem.va + mem.length)) {
    throw err('EFAULT', `ibUmemGet: [0x${addr.toString(16)}, +${length}) is not mapped`);
  }
  if (!dev.dma) throw err('ENODEV', `ibUmemGet: ${dev.name} cannot DMA`);
  const first = Math.floor((addr - mem.va) / PAGE_SIZE) * PAGE_SIZE;
  const end = Math.ceil((addr - mem.va + length) / PAGE_SIZE) * PAGE_SIZE;
  const mapped = dev.dma.mapSg([{ addr: mem.phys + first, length: end - first }], {
    read: true,
    write: writable,
  });
  mem.pins++;
  return new IbUmem(dev, mem, addr, length, mapped);
}
