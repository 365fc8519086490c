/**
 * Raw baselines of the RDMA bench (bench/rdma.ts), measured in the same run as the emulator:
 *   - `rawSetGBps`: `dst.set(src)` between two device memories (the issue's baseline: one copy,
 *     no queues, no translation);
 *   - `rawCopyGBps` with the host arena's copy: the same copy by wasm `memory.copy`, the primitive
 *     the emulator's DMA uses between two regions of one arena (fabric/phys-arena.ts);
 *   - `RawCopyWorker`: that copy in a worker while this thread spins, the two-thread shape of an
 *     RDMA stream with no emulator in it;
 *   - `PingPong`: the median round trip of a raw two-worker Atomics ping-pong, both sides
 *     spinning (bench/fixtures/pingpong-worker.ts), the floor of any cross-thread
 *     request/response, which an RDMA WRITE's post -> completion is.
 * Wall clock of this machine only.
 */
import { spawnWorker } from '../common/worker.ts';
import type { PhysArenaCopy, PhysArenaDescriptor } from '../nodes/fabric/phys-arena.ts';
import { COPY_BPS_BYTE, COPY_CTL_BYTES, CopyCtl } from './fixtures/copy-worker.ts';
import { PP_CTL_BYTES, PpCtl } from './fixtures/pingpong-worker.ts';

/** GB/s (10^9 bytes/s) of `dst.set(src)` repeated for about `budgetMs` after three warm-up copies. */
export function rawSetGBps(src: Uint8Array, dst: Uint8Array, budgetMs: number): number {
  return rawCopyGBps(src, dst, budgetMs, null);
}

/**
 * rawSetGBps with `copy` (an arena's memory.copy; src and dst both in that arena) instead of
 * `set`; null: `set`.
 */
export function rawCopyGBps(
  src: Uint8Array,
  dst: Uint8Array,
  budgetMs: number,
  copy: PhysArenaCopy | null,
): number {
  const once = copy === null ? () => dst.set(src) : () => copy(dst.byteOffset, src.byteOffset, src.length);
  for (let i = 0; i < 3; i++) once();
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  do {
    once();
    n++;
    t = performance.now();
  } while (t - t0 < budgetMs);
  return (src.length * n) / ((t - t0) / 1000) / 1e9;
}

/** Wait for a worker told to stop to exit; terminate it if it has not within 5 s. */
function joinWorker(w: ReturnType<typeof spawnWorker>): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = setTimeout(() => void w.terminate().then(() => resolve()), 5_000);
    w.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

const PINGPONG_WORKER = new URL('./fixtures/pingpong-worker.ts', import.meta.url);

/**
 * The raw two-worker ping-pong (bench/fixtures/pingpong-worker.ts), kept alive so its slices can
 * be paired with the emulator's: `rttUs` runs one slice while this thread sleeps (the two
 * workers have the cores to themselves). Call close() when done (both workers exit).
 */
export class PingPong {
  private readonly ctl: Int32Array;
  private readonly workers: ReturnType<typeof spawnWorker>[];
  private seq = 0;
  private error: unknown = null;

  constructor() {
    const sab = new SharedArrayBuffer(PP_CTL_BYTES);
    this.ctl = new Int32Array(sab);
    this.workers = [0, 1].map((role) =>
      spawnWorker(PINGPONG_WORKER, { workerData: { pingpong: true, sab, role } }),
    );
    for (const w of this.workers)
      w.on('error', (e) => {
        this.error = e;
      });
  }

  /**
   * Median round trip in microseconds of up to `iters` ping-pongs, stopping after `maxMs`, and how
   * many were done. Throws if the workers did no round trip within maxMs + 10 s.
   */
  rttUs(iters: number, maxMs: number): { us: number; samples: number } {
    const c = this.ctl;
    const cmd = ++this.seq;
    Atomics.store(c, PpCtl.ITERS, iters);
    Atomics.store(c, PpCtl.MAX_MS, Math.max(1, Math.round(maxMs)));
    Atomics.store(c, PpCtl.PING, 0);
    Atomics.store(c, PpCtl.READY, 0);
    Atomics.store(c, PpCtl.CMD, cmd);
    Atomics.notify(c, PpCtl.CMD);
    // sleep, not spin: the two workers get both cores
    const end = performance.now() + maxMs + 10_000;
    for (let d = Atomics.load(c, PpCtl.DONE); d !== cmd; d = Atomics.load(c, PpCtl.DONE)) {
      const left = end - performance.now();
      if (left <= 0 || this.error !== null)
        throw new Error(
          `rdma bench: the ping-pong workers did not finish${this.error ? `: ${String(this.error)}` : ''}`,
        );
      Atomics.wait(c, PpCtl.DONE, d, Math.min(left, 100));
    }
    const samples = Atomics.load(c, PpCtl.COUNT);
    if (samples === 0)
      throw new Error(`rdma bench: the ping-pong workers did no round trip within ${maxMs} ms`);
    return { us: Atomics.load(c, PpCtl.RESULT) / 1000, samples };
  }

  async close(): Promise<void> {
    Atomics.store(this.ctl, PpCtl.CMD, -1);
    Atomics.notify(this.ctl, PpCtl.CMD);
    await Promise.all(this.workers.map(joinWorker));
  }
}

const COPY_WORKER = new URL('./fixtures/copy-worker.ts', import.meta.url);

/**
 * The raw copy in a worker thread while this thread spins (bench/fixtures/copy-worker.ts): the
 * two-thread shape of an RDMA WRITE stream with no emulator in it, so a row can say how much of
 * the gap to `rawSetGBps` is the machine running two busy threads and how much is the emulator.
 * Call close() when done (the worker exits).
 */
export class RawCopyWorker {
  private readonly ctl: Int32Array;
  private readonly bps: Float64Array;
  private readonly worker: ReturnType<typeof spawnWorker>;
  private seq = 0;

  /** `arena`: both views' arena (the worker copies with its memory.copy); null: `set`. */
  constructor(src: Uint8Array, dst: Uint8Array, arena: PhysArenaDescriptor | null) {
    const sab = new SharedArrayBuffer(COPY_CTL_BYTES);
    this.ctl = new Int32Array(sab, 0, 4);
    this.bps = new Float64Array(sab, COPY_BPS_BYTE, 1);
    const view = (a: Uint8Array) => ({
      sab: a.buffer as SharedArrayBuffer,
      offset: a.byteOffset,
      length: a.length,
    });
    this.worker = spawnWorker(COPY_WORKER, {
      workerData: { copyWorker: true, ctl: sab, src: view(src), dst: view(dst), arena },
    });
    // a failing worker shows up as gbps() throwing at its deadline, not as an unhandled event
    this.worker.on('error', (e) => {
      this.error = e;
    });
  }

  private error: unknown = null;

  /**
   * GB/s of the worker copying `size` bytes repeatedly for `ms`, this thread spinning on the
   * completion word meanwhile (as a poster spins on its CQ). Throws after `ms` + 10 s without an
   * answer.
   */
  gbps(size: number, ms: number): number {
    const c = this.ctl;
    const cmd = ++this.seq;
    // whole milliseconds on the wire (an Int32 word): at least 1
    Atomics.store(c, CopyCtl.MS, Math.max(1, Math.round(ms)));
    Atomics.store(c, CopyCtl.SIZE, size);
    Atomics.store(c, CopyCtl.CMD, cmd);
    Atomics.notify(c, CopyCtl.CMD);
    const end = performance.now() + ms + 10_000;
    while (Atomics.load(c, CopyCtl.DONE) !== cmd) {
      if (performance.now() > end)
        throw new Error(
          `rdma bench: the copy worker did not answer${this.error ? `: ${String(this.error)}` : ''}`,
        );
    }
    return this.bps[0] / 1e9;
  }

  async close(): Promise<void> {
    Atomics.store(this.ctl, CopyCtl.CMD, -1);
    Atomics.notify(this.ctl, CopyCtl.CMD);
    await joinWorker(this.worker);
  }
}
