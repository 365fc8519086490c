/**
 * Memory regions: SharedArrayBuffer-backed memory a DMA can reach (host RAM, GPU VRAM, device
 * BARs). A region is backing store only; PhysMap places it (or part of it) at physical and bus
 * addresses, and a PageAllocator hands out its pages.
 *
 * Backing: a slice of the host's physical memory arena (fabric/phys-arena.ts: DMAs between two
 * regions are then one memmove-speed memory.copy), or a SharedArrayBuffer of its own when the
 * region was created without an arena or the arena is full. `sab` is then a buffer that covers
 * the region at `offset`; `bytes` is exactly the region either way.
 *
 * Thread: regions are created by the kernel (main thread). Their SABs are shared with device
 * workers through the phys map descriptor; the MemRegion object itself stays in the kernel.
 */
import { err } from '../../../common/errno.ts';
import { hex, PAGE_SIZE } from '../../fabric/page.ts';
import { type PhysArenaDescriptor, physArenaAlloc } from '../../fabric/phys-arena.ts';
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
  /** Buffer holding the region at `offset` (the arena's, or the region's own). */
  readonly sab: SharedArrayBuffer;
  readonly offset: number;
  /** The arena the region lives in, null for a SharedArrayBuffer of its own. */
  readonly arena: PhysArenaDescriptor | null;
  /** Kernel (CPU) view of the whole region. */
  readonly bytes: Uint8Array;

  constructor(
    id: number,
    name: string,
    kind: MemRegionKind,
    size: number,
    arena: PhysArenaDescriptor | null = null,
  ) {
    this.id = id;
    this.name = name;
    this.kind = kind;
    this.size = size;
    const slice = arena === null ? null : physArenaAlloc(arena, size);
    this.arena = slice === null ? null : arena;
    this.sab = slice?.sab ?? new SharedArrayBuffer(size);
    this.offset = slice?.offset ?? 0;
    this.bytes = new Uint8Array(this.sab, this.offset, size);
  }

  /** Number of pages in the region. */
  get pages(): number {
    return this.size / PAGE_SIZE;
  }

  /** Structured-cloneable form for workers (the SAB is shared, not copied). */
  descriptor(): MemRegionDescriptor {
    return {
      id: this.id,
      name: this.name,
      kind: this.kind,
      size: this.size,
      sab: this.sab,
      offset: this.offset,
      arena: this.arena,
    };
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
 * Create a zero-filled region of `size` bytes, in `arena` when given and it has room.
 * Called by: host boot (RAM), GPU and vfio drivers (VRAM, BARs). Thread: kernel.
 * Throws: EINVAL naming `name`, `kind` or `size` (positive multiple of PAGE_SIZE, <= 4 GiB).
 */
export function memRegionCreate(
  name: string,
  kind: MemRegionKind,
  size: number,
  arena: PhysArenaDescriptor | null = null,
): MemRegion {
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
  return new MemRegion(nextRegionId++, name, kind, size, arena);
}
