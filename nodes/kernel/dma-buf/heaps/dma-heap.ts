/**
 * dma-heap framework (drivers/dma-buf/dma-heap.c): named allocators userspace asks for dma-bufs
 * (/dev/dma_heap/<name>, DMA_HEAP_IOCTL_ALLOC). One registry per host kernel.
 */
import { err } from '../../../../common/errno.ts';
import type { DmaBuf } from '../dma-buf.ts';
import { PAGE_SIZE } from '../scatterlist.ts';

import { O_CLOEXEC, O_RDWR } from '../../fs/file.ts';

export { O_CLOEXEC, O_RDWR };
/** O_RDWR | O_CLOEXEC: the only fd flags DMA_HEAP_IOCTL_ALLOC accepts (DMA_HEAP_VALID_FD_FLAGS). */
export const DMA_HEAP_VALID_FD_FLAGS = O_RDWR | O_CLOEXEC;
/** No heap flags are defined (DMA_HEAP_VALID_HEAP_FLAGS). */
export const DMA_HEAP_VALID_HEAP_FLAGS = 0;

/** A heap's allocate op (struct dma_heap_ops). Called by dmaHeapBufferAlloc with a page-aligned len. */
export interface DmaHeapOps {
  allocate(heap: DmaHeap, len: number, fdFlags: number, heapFlags: number): DmaBuf;
}

export class DmaHeap {
  readonly name: string;
  readonly ops: DmaHeapOps;
  readonly priv: unknown;

  constructor(name: string, ops: DmaHeapOps, priv: unknown) {
    this.name = name;
    this.ops = ops;
    this.priv = priv;
  }
}

export class DmaHeapRegistry {
  private readonly heaps = new Map<string, DmaHeap>();

  /** dma_heap_add: EEXIST if the name is taken, EINVAL without a name or allocate op. */
  add(name: string, ops: DmaHeapOps, priv: unknown): DmaHeap {
    if (typeof name !== 'string' || name === '') throw err('EINVAL', 'dmaHeapAdd: exp_info.name missing');
    if (!ops || typeof ops.allocate !== 'function')
      throw err('EINVAL', `dmaHeapAdd(${name}): ops.allocate missing`);
    if (this.heaps.has(name)) throw err('EEXIST', `dmaHeapAdd: heap ${name} already exists`);
    const heap = new DmaHeap(name, ops, priv);
    this.heaps.set(name, heap);
    return heap;
  }

  /** Look up /dev/dma_heap/<name>: ENOENT naming it. */
  find(name: string): DmaHeap {
    const heap = this.heaps.get(name);
    if (!heap)
      throw err(
        'ENOENT',
        `dma_heap: no heap named ${JSON.stringify(name)} (have ${[...this.heaps.keys()].join(', ')})`,
      );
    return heap;
  }

  names(): string[] {
    return [...this.heaps.keys()];
  }
}

/**
 * dma_heap_buffer_alloc: validate the DMA_HEAP_IOCTL_ALLOC arguments and allocate.
 * Throws: EINVAL naming len (0 after page alignment), fd_flags or heap_flags; heap errors (ENOMEM).
 */
export function dmaHeapBufferAlloc(heap: DmaHeap, len: number, fdFlags: number, heapFlags: number): DmaBuf {
  if (!(heap instanceof DmaHeap)) throw err('EINVAL', 'DMA_HEAP_IOCTL_ALLOC: heap is not a dma-heap');
  if (!Number.isSafeInteger(len) || len < 0)
    throw err('EINVAL', `DMA_HEAP_IOCTL_ALLOC(${heap.name}): len ${len}`);
  const aligned = Math.ceil(len / PAGE_SIZE) * PAGE_SIZE;
  if (aligned === 0) throw err('EINVAL', `DMA_HEAP_IOCTL_ALLOC(${heap.name}): len 0`);
  if (!Number.isInteger(fdFlags) || fdFlags & ~DMA_HEAP_VALID_FD_FLAGS) {
    throw err(
      'EINVAL',
      `DMA_HEAP_IOCTL_ALLOC(${heap.name}): fd_flags 0x${Number(fdFlags).toString(16)} has invalid bits`,
    );
  }
  if (!Number.isInteger(heapFlags) || heapFlags & ~DMA_HEAP_VALID_HEAP_FLAGS) {
    throw err(
      'EINVAL',
      `DMA_HEAP_IOCTL_ALLOC(${heap.name}): heap_flags 0x${Number(heapFlags).toString(16)} has invalid bits`,
    );
  }
  return heap.ops.allocate(heap, aligned, fdFlags, heapFlags);
}
