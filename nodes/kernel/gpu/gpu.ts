/**
 * GPU driver: probe and remove (the PCI driver half of a DRM driver). The device model is
 * nodes/devices/gpu/, the command set fabric/gpu-layout.ts; the rest of the driver is split
 * like a GEM/TTM driver: gpu-bo.ts (buffer objects), gpu-placement.ts (creation, moves,
 * eviction), gpu-jobs.ts (fill/checksum/copy on buffer objects), gpu-sched.ts (dependency
 * scheduler), gpu-prime.ts (dma-buf export). docs/gpu.md is the overview.
 *
 * DOC: GPU address space
 * The GPU's IOMMU DMA domain is its VM: every placement of a buffer object, in VRAM (pages of
 * the VRAM BAR window) or in system memory, is mapped into one contiguous IOVA range of the
 * GPU's own domain with its DMA API, and descriptors carry those IOVAs. All GPU DMA, local or
 * not, thus goes through one routing point (fabric/dma.ts) with per-page translation, faults
 * and the IOMMU fault log. A real GPU reaches its VRAM without the IOMMU; here that shows only
 * as VRAM accesses appearing in the GPU's IOMMU domain.
 *
 * Thread: kernel (main thread).
 */
import { Errno, err } from '../../../common/errno.ts';
import { P2pdmaMapCache, P2pdmaMapType } from '../../../topology/p2pdma.ts';
import type { Topology } from '../../../topology/model.ts';
import { dmaBufInvalidateMappings } from '../dma-buf/dma-buf.ts';
import { dmaResvLock, dmaResvUnlock } from '../dma-buf/dma-resv.ts';
import type { Device } from '../device.ts';
import { type DeviceHost, deviceHostSpawn } from '../drivers/device-host.ts';
import type { HostKernel } from '../kernel.ts';
import type { PageAllocator } from '../mm/page-alloc.ts';
import type { MemRegion } from '../mm/region.ts';
import { type GpuBo, gpuBoReleaseWhenIdle } from './gpu-bo.ts';
import { GpuSched } from './gpu-sched.ts';

export { GPU_MAX_LEN, GpuCmdFlag, GpuOp } from '../../fabric/gpu-layout.ts';

/** The device model's worker entry. A file reference, not an import: kernel/ never imports devices/. */
const GPU_WORKER = new URL('../../devices/gpu/gpu-worker.ts', import.meta.url);

/** Default VRAM: 16 MiB (small hosts in tests; topology files give real sizes). */
export const GPU_DEFAULT_VRAM = 16 << 20;
/** Default deadline for a dependency fence (jobs, moves, pins): the emulator never hangs. */
export const GPU_FENCE_TIMEOUT_MS = 10_000;

export interface GpuOptions {
  /** VRAM bytes, a multiple of 4 KiB; default GPU_DEFAULT_VRAM. */
  vramBytes?: number;
  /** PCI identity (topology endpoint id) for P2P decisions; see gpuP2pMapType(). */
  pciId?: string;
  /** The topology `pciId` and importers' pciIds live in. */
  topology?: Topology;
  /** Descriptor queue depth (power of two in [2, 4096]); default 256. */
  queueDepth?: number;
  /** Enable DeviceOp.CRASH / DeviceOp.STALL (tests). */
  testHooks?: boolean;
  /** Hang timeout in ms; default DEVICE_HANG_TIMEOUT_MS. */
  hangTimeoutMs?: number;
  /** Deadline for dependency fences in ms; default GPU_FENCE_TIMEOUT_MS. */
  fenceTimeoutMs?: number;
}

/** One probed GPU. Fields are the driver's; other drivers use the gpu*() functions. */
export class Gpu {
  readonly name: string;
  readonly kernel: HostKernel;
  /** struct device: IOMMU requester and DMA API (its domain is the GPU VM). */
  readonly dev: Device;
  readonly host: DeviceHost;
  readonly sched: GpuSched;
  readonly vram: MemRegion;
  readonly vramAlloc: PageAllocator;
  /** Physical (CPU) address of the VRAM BAR window. */
  readonly vramPhys: number;
  readonly pciId: string | undefined;
  readonly topology: Topology | undefined;
  readonly fenceTimeoutMs: number;
  /** Live buffer objects in LRU order (oldest first): Map insertion order, re-inserted on use. */
  readonly lru = new Map<number, GpuBo>();
  /** VRAM releases in flight (moves out of VRAM, frees) and the pages each gives back. */
  readonly freeing = new Map<Promise<void>, number>();
  readonly p2pCache = new P2pdmaMapCache();
  /** Moves/frees whose old memory stayed allocated because a fence never signalled. */
  leaked = 0;
  evictions = 0;
  nextBoId = 1;
  removed = false;
  private removing: Promise<void> | null = null;

  constructor(kernel: HostKernel, name: string, opts: GpuOptions) {
    this.name = name;
    this.kernel = kernel;
    this.pciId = opts.pciId;
    this.topology = opts.topology;
    this.fenceTimeoutMs = opts.fenceTimeoutMs ?? GPU_FENCE_TIMEOUT_MS;
    // the device first: a taken name (EEXIST) then leaves no VRAM window behind.
    this.dev = kernel.addDevice(name, { pciId: opts.pciId });
    const vram = kernel.addDeviceMemory(`${name}-vram`, opts.vramBytes ?? GPU_DEFAULT_VRAM);
    this.vram = vram.region;
    this.vramAlloc = vram.alloc;
    const phys = kernel.physMap.regionToPhys(vram.region, 0);
    if (phys === null) throw err('ENODEV', `gpuProbe(${name}): VRAM BAR window not placed`);
    this.vramPhys = phys;
    if (this.dev.iommuId === undefined)
      throw err('ENODEV', `gpuProbe(${name}): device has no IOMMU requester id`);
    this.host = deviceHostSpawn({
      name,
      entry: GPU_WORKER,
      iommu: kernel.iommu,
      iommuId: this.dev.iommuId,
      queueDepth: opts.queueDepth,
      testHooks: opts.testHooks,
      hangTimeoutMs: opts.hangTimeoutMs,
    });
    this.sched = new GpuSched(this.host, this.fenceTimeoutMs);
  }

  /** Pages of VRAM that releases in flight will give back. */
  get vramFreeingPages(): number {
    let n = 0;
    for (const p of this.freeing.values()) n += p;
    return n;
  }

  /** Track a VRAM release (`pages` pages) until `p` settles. */
  trackFreeing(p: Promise<void>, pages: number): void {
    const tracked = p.finally(() => this.freeing.delete(tracked));
    this.freeing.set(tracked, pages);
  }

  /** Mark `bo` most recently used. */
  touch(bo: GpuBo): void {
    this.lru.delete(bo.id);
    this.lru.set(bo.id, bo);
  }

  /** Internal: remove() body, once. */
  _remove(body: () => Promise<void>): Promise<void> {
    this.removing ??= body();
    return this.removing;
  }

  toString(): string {
    return this.name;
  }
}

// GPUs by host and name: what userspace opens (/dev/dri/cardN by name here).
const registry = new WeakMap<HostKernel, Map<string, Gpu>>();

/** The GPU probed as `name` on `kernel`. Throws: ENODEV naming it. Called by: nodes/uapi/gpu.ts. */
export function gpuLookup(kernel: HostKernel, name: string): Gpu {
  const gpu = registry.get(kernel)?.get(name);
  if (gpu === undefined)
    throw err('ENODEV', `gpuLookup: no GPU named ${JSON.stringify(name)} on ${kernel.name}`);
  return gpu;
}

/**
 * Probe a GPU on `kernel`: VRAM as a BAR window with its page allocator (addDeviceMemory), the
 * device behind the IOMMU in its own DMA domain, its worker and scheduler.
 * Called by: host boot, tests. Thread: kernel.
 * Throws: EEXIST/EINVAL from HostKernel.addDevice; EINVAL naming a bad option; ENODEV.
 */
export function gpuProbe(kernel: HostKernel, name = 'gpu0', opts: GpuOptions = {}): Gpu {
  if (typeof opts !== 'object' || opts === null)
    throw err('EINVAL', `gpuProbe(${name}): opts must be an object`);
  const t = opts.fenceTimeoutMs;
  if (t !== undefined && !(t > 0 && t < 2 ** 31)) {
    throw err('EINVAL', `gpuProbe(${name}): opts.fenceTimeoutMs ${t} must be in (0, 2^31) ms`);
  }
  if (opts.topology !== undefined && opts.pciId === undefined) {
    throw err('EINVAL', `gpuProbe(${name}): opts.topology needs opts.pciId`);
  }
  const gpu = new Gpu(kernel, name, opts);
  let byName = registry.get(kernel);
  if (byName === undefined) registry.set(kernel, (byName = new Map()));
  byName.set(name, gpu);
  return gpu;
}

/**
 * How `dev` reaches this GPU's VRAM (pci_p2pdma_map_type with the GPU as provider): from the
 * topology when the GPU and `dev` both have PCI ids in it; otherwise THRU_HOST_BRIDGE, i.e.
 * the VRAM BAR mapped through `dev`'s IOMMU like any other memory (the safe default: it works
 * on every host that routes P2P through the root complex, and needs no switch).
 * Called by: gpu-prime.ts (attach, map). Thread: kernel.
 */
export function gpuP2pMapType(gpu: Gpu, dev: Device): P2pdmaMapType {
  if (gpu.topology === undefined || gpu.pciId === undefined || dev.pciId === undefined)
    return P2pdmaMapType.THRU_HOST_BRIDGE;
  return gpu.p2pCache.get(gpu.topology, gpu.pciId, dev.pciId).mapType;
}

/**
 * Remove the GPU (the PCI remove callback): refuse new work (ENODEV), let queued jobs run and
 * the device drain, stop its worker; then every buffer object is `gone`. Objects nobody
 * exported give their memory back (after their fences); exported ones tell their importers
 * (invalidate, like a revoke: maps and attaches now fail ENODEV) and keep their memory until
 * the dma-buf is released, since an importer may still hold a mapping. The VRAM BAR window
 * stays in the physical map (the kernel has no BAR removal yet). Resolves once the worker has
 * exited and every release in flight settled. Idempotent.
 * Called by: host teardown, tests. Lock: none held.
 */
export function gpuRemove(gpu: Gpu): Promise<void> {
  return gpu._remove(async () => {
    gpu.removed = true;
    registry.get(gpu.kernel)?.delete(gpu.name);
    if (!(await gpu.sched.close(gpu.fenceTimeoutMs))) gpu.sched.failQueued(-Errno.ETIMEDOUT);
    await gpu.host.close();
    gpu.sched.failQueued(-Errno.ENODEV);
    for (const bo of [...gpu.lru.values()]) {
      bo.gone = true;
      if (bo.dmabuf === null) {
        void gpuBoReleaseWhenIdle(bo);
        continue;
      }
      await dmaResvLock(bo.resv, null);
      try {
        dmaBufInvalidateMappings(bo.dmabuf);
      } finally {
        dmaResvUnlock(bo.resv);
      }
    }
    await Promise.all([...gpu.freeing.keys()]);
  });
}
