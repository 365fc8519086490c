/**
 * GPU jobs on buffer objects (the command submission ioctl's kernel half): FILL and CHECKSUM
 * on the compute block, COPY on the copy engine, each published in the objects' dma_resv.
 *
 * DOC: synchronisation
 * Submission locks every object of the job (one ww transaction, so two submissions on the same
 * pair cannot deadlock), collects the dependencies, pushes the job to the scheduler (which
 * returns its fence at once) and adds that fence to each object before unlocking:
 *  - implicit sync (default): a job that writes an object waits for everything up to READ on
 *    it and is added as WRITE; a job that only reads waits for KERNEL and WRITE fences and is
 *    added as READ (dma_resv_usage_rw, kernel-semantics §2.3 rule 22);
 *  - explicit sync (`explicit: true`): the job waits only for KERNEL fences (moves: memory must
 *    be where the job's address says) and the caller's `inFences`, and is added as BOOKKEEP,
 *    so other implicit users do not wait for it but moves and frees still do (rule 25).
 * The job's addresses are the objects' GPU VAs at submission; a later move waits for the job
 * (its fence is on the object) before freeing those pages.
 *
 * Thread: kernel (main thread).
 */
import { err } from '../../../common/errno.ts';
import { GPU_FILL_WIDTHS, GPU_MAX_LEN, GpuOp } from '../../fabric/gpu-layout.ts';
import { type DmaFence, dmaFenceIsSignaled } from '../dma-buf/dma-fence.ts';
import {
  type DmaResv,
  DmaResvUsage,
  dmaResvAddFence,
  dmaResvGetFences,
  dmaResvLock,
  dmaResvLockSlow,
  dmaResvReserveFences,
  dmaResvUnlock,
  dmaResvUsageRw,
} from '../dma-buf/dma-resv.ts';
import type { DeviceCmd } from '../drivers/device-host.ts';
import { WwAcquireCtx } from '../locking/ww-mutex.ts';
import type { Gpu } from './gpu.ts';
import { type GpuBo, gpuBoCheck } from './gpu-bo.ts';
import { GpuEntity, type GpuJob } from './gpu-sched.ts';

export type { GpuJob, GpuJobResult } from './gpu-sched.ts';

/** How a job synchronises (DOC: synchronisation). */
export interface GpuSubmitOpts {
  /** Explicit sync: BOOKKEEP usage, no implicit dependencies besides KERNEL fences. */
  explicit?: boolean;
  /** Extra dependencies (a sync_file's or syncobj's fence). */
  inFences?: readonly DmaFence[];
}

interface BoAccess {
  bo: GpuBo;
  write: boolean;
}

/**
 * FILL `length` bytes at `offset` of `bo` with `pattern` (its low `width` bytes, little-endian,
 * repeated from `offset`; width 1, 2 or 4). Resolves once the job is queued (its fence is on
 * the object). Called by: uapi, drivers, tests. Lock: not held (takes the object's).
 * Throws: EINVAL naming a bad argument; ENODEV (removed, dead GPU); ETIMEDOUT never (deps are
 * the scheduler's business: a dependency that never signals fails the job's fence).
 */
export function gpuBoFill(
  bo: GpuBo,
  offset: number,
  length: number,
  pattern: number,
  width = 4,
  opts: GpuSubmitOpts = {},
): Promise<GpuJob> {
  gpuBoCheck('gpuBoFill', bo);
  checkRange('gpuBoFill', bo, offset, length);
  if (!GPU_FILL_WIDTHS.includes(width)) throw err('EINVAL', `gpuBoFill: width ${width} must be 1, 2 or 4`);
  if (!Number.isInteger(pattern) || pattern < -(2 ** 31) || pattern >= 2 ** 32)
    throw err('EINVAL', `gpuBoFill: pattern ${pattern} must be a 32-bit integer`);
  return submit(bo.gpu, [{ bo, write: true }], opts, () => ({
    opcode: GpuOp.FILL,
    dst: bo.gpuVa + offset,
    len: length,
    arg0: pattern | 0,
    arg1: width,
  }));
}

/**
 * CHECKSUM `length` bytes at `offset` of `bo`: the job's result is their CRC-32 (zlib.crc32).
 * Same contract as gpuBoFill (the job only reads: READ usage).
 */
export function gpuBoChecksum(
  bo: GpuBo,
  offset: number,
  length: number,
  opts: GpuSubmitOpts = {},
): Promise<GpuJob> {
  gpuBoCheck('gpuBoChecksum', bo);
  checkRange('gpuBoChecksum', bo, offset, length);
  return submit(bo.gpu, [{ bo, write: false }], opts, () => ({
    opcode: GpuOp.CHECKSUM,
    src: bo.gpuVa + offset,
    len: length,
  }));
}

/**
 * COPY `length` bytes from `src`+`srcOffset` to `dst`+`dstOffset` on the copy engine (VRAM or
 * system memory on either side). Same contract as gpuBoFill; EINVAL if both are one object
 * with overlapping ranges, or the objects belong to different GPUs.
 */
export function gpuBoCopy(
  src: GpuBo,
  srcOffset: number,
  dst: GpuBo,
  dstOffset: number,
  length: number,
  opts: GpuSubmitOpts = {},
): Promise<GpuJob> {
  gpuBoCheck('gpuBoCopy', src);
  gpuBoCheck('gpuBoCopy', dst);
  if (src.gpu !== dst.gpu) throw err('EINVAL', `gpuBoCopy: ${src} and ${dst} are on different GPUs`);
  checkRange('gpuBoCopy', src, srcOffset, length);
  checkRange('gpuBoCopy', dst, dstOffset, length);
  if (src === dst && srcOffset < dstOffset + length && dstOffset < srcOffset + length)
    throw err('EINVAL', `gpuBoCopy: source and destination ranges of ${src} overlap`);
  const access =
    src === dst
      ? [{ bo: dst, write: true }]
      : [
          { bo: src, write: false },
          { bo: dst, write: true },
        ];
  return submit(src.gpu, access, opts, () => ({
    opcode: GpuOp.COPY,
    src: src.gpuVa + srcOffset,
    dst: dst.gpuVa + dstOffset,
    len: length,
  }));
}

/**
 * Push one raw descriptor on the USER entity, with no object and no dependency: misprogramming
 * tests, the test hooks (DeviceOp.CRASH/STALL), peer-to-peer copies by bus address.
 * Throws: ENODEV, EINVAL naming a descriptor field.
 */
export function gpuSubmitRaw(gpu: Gpu, cmd: DeviceCmd, deps: readonly DmaFence[] = []): GpuJob {
  if (gpu.removed) throw err('ENODEV', `gpuSubmitRaw: ${gpu.name} was removed`);
  return gpu.sched.push(GpuEntity.USER, [cmd], deps);
}

function checkRange(fn: string, bo: GpuBo, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0)
    throw err('EINVAL', `${fn}: offset ${offset} must be a non-negative integer`);
  if (!Number.isSafeInteger(length) || length <= 0 || length > GPU_MAX_LEN)
    throw err('EINVAL', `${fn}: length ${length} must be an integer in [1, ${GPU_MAX_LEN}]`);
  if (offset + length > bo.size)
    throw err('EINVAL', `${fn}: [${offset}, +${length}) outside ${bo} (${bo.size} bytes)`);
}

// Lock, collect dependencies, push, publish, unlock (DOC: synchronisation). `build` runs with
// the locks held, so the addresses it reads are the current placement's.
async function submit(
  gpu: Gpu,
  access: BoAccess[],
  opts: GpuSubmitOpts,
  build: () => DeviceCmd,
): Promise<GpuJob> {
  if (typeof opts !== 'object' || opts === null) throw err('EINVAL', 'gpu submit: opts must be an object');
  const inFences = opts.inFences ?? [];
  if (!Array.isArray(inFences)) throw err('EINVAL', 'gpu submit: opts.inFences must be an array');
  const resvs = access.map((a) => a.bo.resv);
  await lockAll(resvs);
  try {
    for (const a of access) gpuBoCheck('gpu submit', a.bo);
    const deps: DmaFence[] = [...inFences];
    for (const a of access) {
      const usage = opts.explicit ? DmaResvUsage.KERNEL : dmaResvUsageRw(a.write);
      for (const f of dmaResvGetFences(a.bo.resv, usage)) if (!dmaFenceIsSignaled(f)) deps.push(f);
      dmaResvReserveFences(a.bo.resv, 1);
    }
    const job = gpu.sched.push(GpuEntity.USER, [build()], deps);
    for (const a of access) {
      const usage = opts.explicit ? DmaResvUsage.BOOKKEEP : a.write ? DmaResvUsage.WRITE : DmaResvUsage.READ;
      dmaResvAddFence(a.bo.resv, job.fence, usage);
      gpu.touch(a.bo);
    }
    return job;
  } finally {
    for (const r of resvs) dmaResvUnlock(r);
  }
}

// drm_exec in miniature: lock every reservation in one ww transaction, backing off on EDEADLK.
async function lockAll(resvs: DmaResv[]): Promise<void> {
  const ctx = new WwAcquireCtx('gpu_submit');
  let contended: DmaResv | null = null;
  for (;;) {
    const held: DmaResv[] = [];
    let current: DmaResv | null = null;
    try {
      if (contended !== null) {
        current = contended;
        await dmaResvLockSlow(contended, ctx);
        held.push(contended);
      }
      for (const r of resvs) {
        if (r === contended) continue;
        current = r;
        await dmaResvLock(r, ctx);
        held.push(r);
      }
      ctx.acquireDone();
      return;
    } catch (e) {
      for (const r of held) dmaResvUnlock(r);
      // wait-die asks us to back off; a lock this task already holds is a caller bug, not that.
      if ((e as { code?: string }).code !== 'EDEADLK' || current?.lock.ownerIsCurrentTask()) throw e;
      contended = current;
    }
  }
}
