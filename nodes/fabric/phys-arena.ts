/**
 * A host's physical memory arena: one shared WebAssembly.Memory that holds the host's regions (RAM,
 * VRAM, BARs) side by side, so a DMA between two of them is one `memory.copy`.
 *
 * Why: V8 copies between SharedArrayBuffers with relaxed atomic word moves (`TypedArray.set`,
 * `copyWithin`; Node 20 and 24 alike), about half of memmove's speed on Node 20 and a quarter on
 * Node 24, while wasm's `memory.copy` on a shared memory is a plain memmove (measured on this
 * project's machines: 47-56 GB/s against 23-28 GB/s for `set` on Node 20, 10-14 GB/s on Node 24,
 * at 64 KiB-1 MiB). Without multi-memory (Node 20's V8 has none), source and destination must
 * be in one memory, hence one arena per host.
 *
 * Kernel side (main thread): physArenaCreate() once per host, physArenaAlloc() per region; the
 * arena only grows (regions live as long as their host), and a region that does not fit (the
 * 4 GiB wasm32 limit, or no address space for the reservation) falls back to its own
 * SharedArrayBuffer: same bytes and behaviour, `set`-speed copies.
 * Device side (any thread): physArenaCopy(desc) gives the thread's copy function for an arena;
 * copies between windows of one arena call it with absolute arena offsets (view.byteOffset + off).
 *
 * Memory model: memory.copy is not atomic, like a DMA's TLPs; the device publishes completions
 * with Atomics afterwards (a full barrier on x86), as it did after `set`.
 */

import { randomUUID } from 'node:crypto';

// The WebAssembly JS API this file uses (the project's TypeScript lib has no DOM/wasm types).
interface WasmMemory {
  readonly buffer: ArrayBufferLike;
  grow(pages: number): number;
}
interface WasmApi {
  Memory: new (d: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** Structured-cloneable arena handle (the Memory is shared, not copied). */
export interface PhysArenaDescriptor {
  /** Unique (a random UUID: even two loaded copies of this module never share one). */
  id: string;
  /** A shared WebAssembly.Memory. */
  memory: WasmMemory;
}

/** memory.copy(dst, src, n) in the arena: absolute byte offsets; n > 0. Never throws in range. */
export type PhysArenaCopy = (dst: number, src: number, n: number) => void;

/** wasm32's limit (65536 pages of 64 KiB). */
const kMaxPages = 65536;
const kWasmPage = 65536;

/**
 * Create an empty arena of at most `maxBytes` (4 GiB, wasm32's limit; tests pass less), or null
 * when this process cannot reserve one (regions then get SharedArrayBuffers of their own).
 * Called by: host kernel construction.
 */
export function physArenaCreate(maxBytes = kMaxPages * kWasmPage): PhysArenaDescriptor | null {
  const maximum = Math.min(kMaxPages, Math.floor(maxBytes / kWasmPage));
  try {
    return { id: randomUUID(), memory: new Wasm.Memory({ initial: 0, maximum, shared: true }) };
  } catch {
    return null; // RangeError: no address space for the reservation
  }
}

/**
 * Hand out `size` bytes (rounded up to 64 KiB) of zeroed arena memory at its end: the SAB that
 * covers them and their offset. Returns null when the arena cannot grow that far.
 * Called by: memRegionCreate (kernel).
 */
export function physArenaAlloc(
  arena: PhysArenaDescriptor,
  size: number,
): { sab: SharedArrayBuffer; offset: number } | null {
  let before: number;
  try {
    before = arena.memory.grow(Math.ceil(size / kWasmPage));
  } catch {
    return null; // RangeError: past the maximum, or no memory
  }
  // a grown shared memory keeps its old buffers valid; the new one covers the new pages too
  return { sab: arena.memory.buffer as unknown as SharedArrayBuffer, offset: before * kWasmPage };
}

/**
 * Device control memory in the arena: rings, an HCA's context and the like, which a device
 * model written in wasm (mlx5-fast.ts) can only reach inside the one memory it is given. Also
 * aligned: V8 gives a SharedArrayBuffer 16-byte alignment only (measured here: a 4 KiB one starts
 * 32 bytes into a cache line, a 1 MiB one 48), so "one 64-byte line per slot" layouts straddle two
 * lines in their own SAB; arena blocks start on a 64-byte boundary.
 *
 * Blocks are carved from 64 KiB chunks at the arena's end, 64-byte aligned; a freed block goes on
 * a free list of its exact size (rings come in few sizes) and is zeroed when handed out again.
 * Returns an Int32Array window over the block, or null when the arena cannot grow (the caller
 * falls back to a SharedArrayBuffer of its own). Called by: kernel drivers, main thread.
 */
export function physArenaCtlAlloc(arena: PhysArenaDescriptor, bytes: number): Int32Array | null {
  const size = Math.ceil(bytes / kLine) * kLine;
  let st = ctlState.get(arena.memory);
  if (st === undefined) {
    st = { next: 0, end: 0, free: new Map() };
    ctlState.set(arena.memory, st);
  }
  const reuse = st.free.get(size);
  let offset = reuse?.pop();
  if (offset === undefined) {
    if (st.next + size > st.end) {
      const got = physArenaAlloc(arena, Math.max(size, kWasmPage));
      if (got === null) return null;
      st.next = got.offset;
      st.end = got.offset + Math.ceil(Math.max(size, kWasmPage) / kWasmPage) * kWasmPage;
    }
    offset = st.next;
    st.next += size;
  }
  const w = new Int32Array(arena.memory.buffer as unknown as SharedArrayBuffer, offset, size >> 2);
  if (reuse !== undefined) w.fill(0);
  return w;
}

/**
 * Give a block of physArenaCtlAlloc back. The caller guarantees no thread uses it any more (the
 * device destroyed the object, userspace is done with it). Called by: kernel drivers.
 */
export function physArenaCtlFree(arena: PhysArenaDescriptor, block: Int32Array): void {
  const st = ctlState.get(arena.memory);
  if (st === undefined) return;
  const list = st.free.get(block.byteLength) ?? [];
  // a second free of one block would hand it out twice: ignored (frees are rare, lists short).
  if (list.includes(block.byteOffset)) return;
  list.push(block.byteOffset);
  st.free.set(block.byteLength, list);
}

const kLine = 64;
interface CtlState {
  next: number;
  end: number;
  /** Freed blocks by byte size. */
  free: Map<number, number[]>;
}
const ctlState = new WeakMap<WasmMemory, CtlState>();

// (module (import "e" "m" (memory 0 65536 shared))
//   (func (export "c") (param i32 i32 i32) local.get 0 local.get 1 local.get 2 memory.copy))
// biome-ignore format: one line per wasm section
const kCopyModule = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x07, 0x01, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00, // type: (i32 i32 i32) -> ()
  0x02, 0x0b, 0x01, 0x01, 0x65, 0x01, 0x6d, 0x02, 0x03, 0x00, 0x80, 0x80, 0x04, // import e.m: shared memory 0..65536
  0x03, 0x02, 0x01, 0x00, // function 0 of type 0
  0x07, 0x05, 0x01, 0x01, 0x63, 0x00, 0x00, // export "c" = function 0
  0x0a, 0x0e, 0x01, 0x0c, 0x00, 0x20, 0x00, 0x20, 0x01, 0x20, 0x02, 0xfc, 0x0a, 0x00, 0x00, 0x0b, // code
]);
let copyModule: object | null = null;
// Weak: the instance holds the arena's memory, and a host's views (which hold the function)
// are what keeps it alive; a strong cache would keep every host's memory until the process exits.
const copiers = new Map<string, WeakRef<PhysArenaCopy>>();

/**
 * This thread's copy function for an arena (one instance per arena and thread while in use).
 * Called by: PhysMapView when it applies a map whose regions live in an arena.
 */
export function physArenaCopy(desc: PhysArenaDescriptor): PhysArenaCopy {
  let c = copiers.get(desc.id)?.deref();
  if (c === undefined) {
    copyModule ??= new Wasm.Module(kCopyModule);
    const inst = new Wasm.Instance(copyModule, { e: { m: desc.memory } });
    c = inst.exports.c as PhysArenaCopy;
    for (const [id, r] of copiers) if (r.deref() === undefined) copiers.delete(id);
    copiers.set(desc.id, new WeakRef(c));
  }
  return c;
}
