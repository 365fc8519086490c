/**
 * GPU uapi: the GEM-style ioctls of a GPU opened by name (its /dev/dri/card node): buffer
 * object create/close/info, PRIME handle <-> fd, job submission (fill, checksum, copy) with
 * in-fences and out-fences as sync_file fds or drm_syncobj handles, job wait, and the
 * evict-on-demand knob. Every call runs as a syscall of the process.
 *
 * Per-process state (the drm_file: GEM handles and submitted jobs, per GPU) lives in a WeakMap
 * keyed by Process. gpuClose() drops it (close of the card fd), and so does process exit, through
 * the process's exit hooks.
 *
 * Errors: ENODEV (no such GPU, or removed), ENOENT (unknown handle or job), EBADF (fd not open),
 * EINVAL (a bad argument, named), ENOMEM, EBUSY (evict of a pinned object), ETIME (wait timeout).
 */
import { err } from '../../common/errno.ts';
import { dmaBufFd, dmaBufFromFd } from '../kernel/dma-buf/dma-buf-file.ts';
import { type DmaFence, dmaFenceWaitTimeout } from '../kernel/dma-buf/dma-fence.ts';
import { syncFileGetFence, syncFileInstall } from '../kernel/dma-buf/sync-file.ts';
import { drmSyncobjFenceGet, drmSyncobjFind, drmSyncobjReplaceFence } from '../kernel/dma-buf/syncobj.ts';
import { type Gpu, gpuLookup } from '../kernel/gpu/gpu.ts';
import {
  type GpuBo,
  GpuPlacement,
  gpuBoCheck,
  gpuBoGet,
  gpuBoIsPinned,
  gpuBoPut,
} from '../kernel/gpu/gpu-bo.ts';
import { type GpuJob, gpuBoChecksum, gpuBoCopy, gpuBoFill } from '../kernel/gpu/gpu-jobs.ts';
import { gpuBoCreate, gpuBoEvict } from '../kernel/gpu/gpu-placement.ts';
import { gpuBoExport, gpuDmaBufIsGpu } from '../kernel/gpu/gpu-prime.ts';
import { type Process, syscall } from './process.ts';

export { GpuPlacement };

/** The drm_file of one process on one GPU. */
interface DrmFile {
  handles: Map<number, GpuBo>;
  nextHandle: number;
  jobs: Map<number, GpuJob>;
  nextJob: number;
}

const files = new WeakMap<Process, Map<Gpu, DrmFile>>();

function drmFile(proc: Process, card: string, who: string): { gpu: Gpu; file: DrmFile } {
  if (typeof card !== 'string') throw err('EINVAL', `${who}: gpu must be a GPU name`);
  const gpu = gpuLookup(proc.kernel, card);
  let perGpu = files.get(proc);
  if (perGpu === undefined) {
    files.set(proc, (perGpu = new Map()));
    // Exit closes every card the process opened, dropping its GEM handles.
    proc.atExit(() => {
      for (const file of files.get(proc)?.values() ?? [])
        for (const bo of file.handles.values()) if (!bo.freed) gpuBoPut(bo);
      files.delete(proc);
    });
  }
  let file = perGpu.get(gpu);
  if (file === undefined)
    perGpu.set(gpu, (file = { handles: new Map(), nextHandle: 1, jobs: new Map(), nextJob: 1 }));
  return { gpu, file };
}

function lookup(file: DrmFile, handle: number, who: string): GpuBo {
  const bo = file.handles.get(handle);
  if (bo === undefined) throw err('ENOENT', `${who}: handle ${handle} is not open`);
  return bo;
}

function addHandle(file: DrmFile, bo: GpuBo): number {
  const h = file.nextHandle++;
  file.handles.set(h, bo);
  return h;
}

/** DRM_IOCTL_GPU_GEM_CREATE: a zeroed object of `size` bytes; returns its handle. */
export function gpuGemCreate(
  proc: Process,
  gpu: string,
  args: { size: number; placement?: GpuPlacement },
): Promise<number> {
  return syscall(proc, 'GPU_GEM_CREATE', async () => {
    const { gpu: g, file } = drmFile(proc, gpu, 'GPU_GEM_CREATE');
    if (!args || typeof args !== 'object') throw err('EINVAL', 'GPU_GEM_CREATE: args missing');
    return addHandle(file, await gpuBoCreate(g, args.size, args.placement ?? GpuPlacement.VRAM));
  });
}

/** DRM_IOCTL_GEM_CLOSE: drop the handle (the object lives on while exported or busy). */
export function gpuGemClose(proc: Process, gpu: string, handle: number): void {
  syscall(proc, 'GEM_CLOSE', () => {
    const { file } = drmFile(proc, gpu, 'GEM_CLOSE');
    const bo = lookup(file, handle, 'GEM_CLOSE');
    file.handles.delete(handle);
    gpuBoPut(bo);
  });
}

/** Where the object lives now, how often it moved, whether it is pinned. */
export function gpuGemInfo(
  proc: Process,
  gpu: string,
  handle: number,
): { size: number; placement: GpuPlacement; moves: number; pinned: boolean } {
  return syscall(proc, 'GPU_GEM_INFO', () => {
    const bo = lookup(drmFile(proc, gpu, 'GPU_GEM_INFO').file, handle, 'GPU_GEM_INFO');
    return { size: bo.size, placement: bo.placement, moves: bo.moves, pinned: gpuBoIsPinned(bo) };
  });
}

/** DRM_IOCTL_PRIME_HANDLE_TO_FD: a dma-buf fd for the object (one dma-buf per object). */
export function gpuPrimeHandleToFd(proc: Process, gpu: string, handle: number): number {
  return syscall(proc, 'PRIME_HANDLE_TO_FD', () => {
    const bo = lookup(drmFile(proc, gpu, 'PRIME_HANDLE_TO_FD').file, handle, 'PRIME_HANDLE_TO_FD');
    return dmaBufFd(proc.fdt, gpuBoExport(bo));
  });
}

/**
 * DRM_IOCTL_PRIME_FD_TO_HANDLE for this GPU's own exports (a new handle to the same object).
 * Importing another exporter's buffer is not modelled (the GPU is no importer yet): EINVAL.
 */
export function gpuPrimeFdToHandle(proc: Process, gpu: string, fd: number): number {
  return syscall(proc, 'PRIME_FD_TO_HANDLE', () => {
    const { gpu: g, file } = drmFile(proc, gpu, 'PRIME_FD_TO_HANDLE');
    const dmabuf = dmaBufFromFd(proc.fdt, fd, 'PRIME_FD_TO_HANDLE');
    if (!gpuDmaBufIsGpu(dmabuf) || (dmabuf.priv as GpuBo).gpu !== g)
      throw err('EINVAL', `PRIME_FD_TO_HANDLE: fd ${fd} is not a buffer of ${g.name}`);
    return addHandle(file, gpuBoGet(dmabuf.priv as GpuBo));
  });
}

/** One job for gpuSubmit(). `handle` is the object written (fill, copy) or read (checksum). */
export interface GpuSubmitArgs {
  op: 'fill' | 'checksum' | 'copy';
  handle: number;
  offset?: number;
  length: number;
  /** fill: the pattern and its width in bytes (1, 2, 4; default 4). */
  pattern?: number;
  width?: number;
  /** copy: the source object and offset. */
  srcHandle?: number;
  srcOffset?: number;
  /** Explicit sync (BOOKKEEP usage; only the in-fences and moves are waited for). */
  explicit?: boolean;
  /** In-fences: a sync_file fd and/or a syncobj handle (its current fence). */
  inSyncFile?: number;
  inSyncobj?: number;
  /** Out-fences: install the job's fence in this syncobj, and/or return a sync_file fd. */
  outSyncobj?: number;
  outSyncFile?: boolean;
}

/** Submit one job; returns its id for gpuWait() and the out sync_file fd (or null). */
export function gpuSubmit(
  proc: Process,
  gpu: string,
  args: GpuSubmitArgs,
): Promise<{ job: number; syncFile: number | null }> {
  return syscall(proc, 'GPU_SUBMIT', async () => {
    const { file } = drmFile(proc, gpu, 'GPU_SUBMIT');
    if (!args || typeof args !== 'object') throw err('EINVAL', 'GPU_SUBMIT: args missing');
    const bo = lookup(file, args.handle, 'GPU_SUBMIT');
    const inFences: DmaFence[] = [];
    if (args.inSyncFile !== undefined) inFences.push(syncFileGetFence(proc.fdt, args.inSyncFile));
    if (args.inSyncobj !== undefined) {
      const s = drmSyncobjFind(proc.syncobjs, args.inSyncobj);
      if (s === null) throw err('ENOENT', `GPU_SUBMIT: syncobj ${args.inSyncobj} is not open`);
      const f = drmSyncobjFenceGet(s);
      if (f !== null) inFences.push(f);
    }
    const out = args.outSyncobj === undefined ? null : drmSyncobjFind(proc.syncobjs, args.outSyncobj);
    if (args.outSyncobj !== undefined && out === null)
      throw err('ENOENT', `GPU_SUBMIT: syncobj ${args.outSyncobj} is not open`);
    const opts = { explicit: args.explicit === true, inFences };
    const offset = args.offset ?? 0;
    let job: GpuJob;
    if (args.op === 'fill')
      job = await gpuBoFill(bo, offset, args.length, args.pattern ?? 0, args.width ?? 4, opts);
    else if (args.op === 'checksum') job = await gpuBoChecksum(bo, offset, args.length, opts);
    else if (args.op === 'copy') {
      const src = lookup(file, args.srcHandle ?? -1, 'GPU_SUBMIT: srcHandle');
      job = await gpuBoCopy(src, args.srcOffset ?? 0, bo, offset, args.length, opts);
    } else throw err('EINVAL', `GPU_SUBMIT: op ${JSON.stringify(args.op)} is not fill, checksum or copy`);
    if (out !== null) drmSyncobjReplaceFence(out, job.fence);
    const id = file.nextJob++;
    file.jobs.set(id, job);
    return { job: id, syncFile: args.outSyncFile ? syncFileInstall(proc.fdt, job.fence) : null };
  });
}

/**
 * Wait for job `job` up to `timeoutMs`: its status (0 or a negative errno) and result (the
 * CRC-32 of a checksum). The job is forgotten once waited for. ETIME on timeout.
 */
export function gpuWait(
  proc: Process,
  gpu: string,
  job: number,
  timeoutMs: number,
): Promise<{ status: number; result: number }> {
  return syscall(proc, 'GPU_WAIT', async () => {
    const { file } = drmFile(proc, gpu, 'GPU_WAIT');
    const j = file.jobs.get(job);
    if (j === undefined) throw err('ENOENT', `GPU_WAIT: job ${job} is not pending`);
    if ((await dmaFenceWaitTimeout(j.fence, timeoutMs)) === 0)
      throw err('ETIME', `GPU_WAIT: job ${job} not done in ${timeoutMs} ms`);
    file.jobs.delete(job);
    return await j.done;
  });
}

/**
 * The evict-on-demand knob: move the object to system memory now (invalidating its importers).
 * Returns a sync_file fd of the move's KERNEL fence, or -1 when it already is in system memory.
 * EBUSY if pinned.
 */
export function gpuGemEvict(proc: Process, gpu: string, handle: number): Promise<number> {
  return syscall(proc, 'GPU_GEM_EVICT', async () => {
    const bo = lookup(drmFile(proc, gpu, 'GPU_GEM_EVICT').file, handle, 'GPU_GEM_EVICT');
    gpuBoCheck('GPU_GEM_EVICT', bo);
    const f = await gpuBoEvict(bo);
    return f === null ? -1 : syncFileInstall(proc.fdt, f);
  });
}

/** close() of the card: drop every handle and job of the process on `gpu`. */
export function gpuClose(proc: Process, gpu: string): void {
  syscall(proc, 'close(card)', () => {
    const { gpu: g, file } = drmFile(proc, gpu, 'close(card)');
    for (const bo of file.handles.values()) if (!bo.freed) gpuBoPut(bo);
    files.get(proc)?.delete(g);
  });
}
