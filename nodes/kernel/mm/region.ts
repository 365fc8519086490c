/**
 * Memory regions: SharedArrayBuffer-backed memory a DMA can reach (host RAM, GPU VRAM, device
 * BARs). A region is backing store only; PhysMap places it (or part of it) at physical and bus
 * addresses, and a PageAllocator hands out its pages.
 *
 * Thread: regions are created by the kernel (main thread). Their SABs are shared with device
 * workers through the phys map descriptor; the MemRegion object itself stays in the kernel.
 */
import { err } from '../../../common/errno.ts';
import { hex, PAGE_SIZE } from '../../fabric/page.ts';
import { MemRegionKind, type MemRegionDescriptor } from '../../fabric/phys-map-layout.ts';

export { MemRegionKind } from '../../fabric/phys-map-layout.ts';

/** Largest region: 2^32 bytes (SharedArrayBuffer limits and test machines, not Linux). */
export const MAX_REGION_BYTES = 2 ** 32;

let nextRegionId = 1;

export class MemRegion {
  /** Unique in this process (one host per process), >= 1. */
  readonly id: number;
  readonly name: string;
  readonly kind: MemRegionKind;
  /** Bytes, a multiple of PAGE_SIZE. */
  readonly size: number;
  readonly sab: SharedArrayBuffer;
  /** Kernel (CPU) view of the whole region. */
  readonly bytes: Uint8Array;

  constructor(id: number, name: string, kind: MemRegionKind, size: number) {
    this.id = id;
    this.name = name;
    this.kind = kind;
    this.size = size;
    this.sab = new SharedArrayBuffer(size);
    this.bytes = new Uint8Array(this.sab);
  }

  /** Number of pages in the region. */
  get pages(): number {
    return this.size / PAGE_SIZE;
  }

  /** Structured-cloneable form for workers (the SAB is shared, not copied). */
  descriptor(): MemRegionDescriptor {
    return { id: this.id, name: this.name, kind: this.kind, size: this.size, sab: this.sab };
  }

  /** Kernel view of [offset, offset + length). Throws: EINVAL if outside the region. */
  view(offset: number, length: number): Uint8Array {
    if (!Number.isInteger(offset) || offset < 0 || !Number.isInteger(length) || length < 0) {
      throw err('EINVAL', `MemRegion.view(${this.name}): offset and length must be non-negative integers`);
    }
    if (offset + length > this.size) {
      throw err(
        'EINVAL',
        `MemRegion.view(${this.name}): [${hex(offset)}, +${hex(length)}) exceeds ${hex(this.size)}`,
      );
    }
    return this.bytes.subarray(offset, offset + length);
  }
}

/**
 * Create a zero-filled region of `size` bytes.
 * Called by: host boot (RAM), GPU and vfio drivers (VRAM, BARs). Thread: kernel.
 * Throws: EINVAL naming `name`, `kind` or `size` (positive multiple of PAGE_SIZE, <= 4 GiB).
 */
export function memRegionCreate(name: string, kind: MemRegionKind, size: number): MemRegion {
  if (typeof name !== 'string' || name.length === 0)
    throw err('EINVAL', 'memRegionCreate: name must be a non-empty string');
  if (!Object.values(MemRegionKind).includes(kind)) {
    throw err('EINVAL', `memRegionCreate(${name}): kind must be a MemRegionKind, got ${String(kind)}`);
  }
  if (!Number.isInteger(size) || size <= 0 || size % PAGE_SIZE !== 0 || size > MAX_REGION_BYTES) {
    throw err(
      'EINVAL',
      `memRegionCreate(${name}): size must be a positive multiple of ${PAGE_SIZE} up to 2^32, got ${size}`,
    );
  }
  return new MemRegion(nextRegionId++, name, kind, size);
}
