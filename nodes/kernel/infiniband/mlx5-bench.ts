/**
 * Micro-benchmark of the emulated mlx5 HCA, loopback on one HCA (not a test, not wired into
 * bench/index.ts; call runMlx5Bench() or printMlx5Bench()):
 *
 *  - bandwidth: RDMA WRITE between two MockExporter VRAM dma-buf MRs (the "GPU to GPU through
 *    dma-buf MRs" path) for 64 KiB, 1 MiB and 16 MiB, perftest ib_write_bw style (a window of
 *    WRs in flight, every 16th signalled), through the IOMMU (MockExporter buffers) and by PCI
 *    bus address (a P2P BAR exporter), against TypedArray.prototype.set of the same size between
 *    two device-memory buffers of the same host (the better of a run before and one after);
 *  - latency: one signalled 8-byte WRITE, post to completion polled in a spin, median, against
 *    the round trip of a raw two-worker Atomics ping-pong (both spinning);
 *  - message rate: 8-byte WRITEs posted in batches (one doorbell per batch, one signalled WR
 *    per batch).
 *
 * Wall clock of this machine only (the emulator's own speed), never a modelled-hardware figure.
 * Run: npx tsx -e "import('./nodes/kernel/infiniband/mlx5-bench.ts').then((m) => m.printMlx5Bench())"
 */
import { spawnWorker } from '../../../common/worker.ts';
import { type Process, processExit, Process as Proc } from '../../uapi/process.ts';
import {
  IbvAccess,
  type IbvCq,
  type IbvQp,
  IbvSendFlags,
  type IbvSendWr,
  type IbvWc,
  IbvWrOpcode,
  ibvCloseDevice,
  ibvOpenDevice,
  ibvPollCq,
  ibvPostSend,
  ibvRegDmabufMr,
  mmapAnonymous,
} from '../../uapi/verbs.ts';
import { dmaBufFd } from '../dma-buf/dma-buf-file.ts';
import { MockExporter, Placement } from '../dma-buf/mock-exporter.ts';
import { HostKernel } from '../kernel.ts';
import { dmaBufExport } from '../dma-buf/dma-buf.ts';
import type { DmaBufOps } from '../dma-buf/dma-buf-ops.ts';
import { sgTableCreate } from '../dma-buf/scatterlist.ts';
import { connect, qpEnd } from './fixtures/rdma-host.ts';
import { mlx5Probe, mlx5Remove } from './mlx5/mlx5-ib.ts';

export interface Mlx5BwRow {
  size: number;
  /** GB/s (10^9 bytes/s) of dst.set(src) between two VRAM buffers. */
  rawGBps: number;
  /** GB/s of loopback RDMA WRITE between two VRAM dma-buf MRs mapped through the IOMMU. */
  iommuGBps: number;
  /** GB/s of the same between two VRAM dma-buf MRs reached by PCI bus address (P2P). */
  busGBps: number;
}

export interface Mlx5BenchResult {
  bandwidth: Mlx5BwRow[];
  /** Median post-to-completion time of one 8-byte signalled WRITE, microseconds. */
  writeLatUs: number;
  /** The same with IBV_SEND_INLINE (perftest's default for small messages). */
  inlineLatUs: number;
  /** Median round trip of the raw two-worker ping-pong, microseconds. */
  pingPongRttUs: number;
  /** Messages per second of 8-byte WRITEs in batches of `batch`. */
  msgRate: number;
  batch: number;
}

const SIZES = [64 << 10, 1 << 20, 16 << 20];
const ACCESS =
  IbvAccess.IBV_ACCESS_LOCAL_WRITE | IbvAccess.IBV_ACCESS_REMOTE_WRITE | IbvAccess.IBV_ACCESS_REMOTE_READ;

/** A BAR exported by PCI bus address (P2PDMA BUS_ADDR), as a dma-buf fd of `proc`. */
function busExport(proc: Process, kernel: HostKernel, size: number): number {
  const mem = kernel.addDeviceMemory(`bench-p2p-${kernel.physMap.generation}`, size);
  const win = kernel.physMap.descriptor().windows.find((w) => w.regionId === mem.region.id)!;
  const ops: DmaBufOps = {
    mapDmaBuf: () =>
      sgTableCreate([{ dmaAddress: win.phys + win.busOffset, dmaLength: size, bus: true }], [], 'bench_p2p'),
    unmapDmaBuf: () => {},
    release: () => {},
  };
  return dmaBufFd(proc.fdt, dmaBufExport({ expName: 'bench-p2p', ops, size, priv: mem }));
}

function rawBw(src: Uint8Array, dst: Uint8Array, budgetMs: number): number {
  for (let i = 0; i < 3; i++) dst.set(src);
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  do {
    dst.set(src);
    n++;
    t = performance.now();
  } while (t - t0 < budgetMs);
  return (src.length * n) / ((t - t0) / 1000) / 1e9;
}

/** Post `total` WRs made by `wr(i, signaled)` keeping at most `depth` in flight; every `sig`-th is signalled. */
function stream(
  qp: IbvQp,
  cq: IbvCq,
  total: number,
  depth: number,
  sigEvery: number,
  batchMax: number,
  wr: (i: number, signaled: boolean) => IbvSendWr,
): void {
  const wc: IbvWc[] = [];
  const batch = Math.min(batchMax, depth);
  const sig = Math.min(sigEvery, batch);
  let posted = 0;
  let done = 0;
  while (done < total) {
    if (posted < total && posted - done + batch <= depth) {
      const n = Math.min(batch, total - posted);
      const list: IbvSendWr[] = [];
      for (let k = 0; k < n; k++, posted++)
        list.push(wr(posted, (posted + 1) % sig === 0 || posted === total - 1));
      ibvPostSend(qp, list);
    }
    const got = ibvPollCq(cq, 16, wc);
    for (let k = 0; k < got; k++) {
      if (wc[k].status !== 0)
        throw new Error(`mlx5 bench: WR ${wc[k].wr_id} failed with status ${wc[k].status}`);
      done = wc[k].wr_id + 1;
    }
  }
}

async function pingPong(iters: number): Promise<number> {
  const sab = new SharedArrayBuffer(16);
  const entry = new URL('../../fabric/mlx5-bench-pingpong-worker.ts', import.meta.url);
  const ws = [0, 1].map((role) => spawnWorker(entry, { workerData: { sab, role, iters } }));
  try {
    const w = new Int32Array(sab);
    const r = Atomics.waitAsync(w, 2, 0, 60_000);
    if (r.async) await r.value;
    return Atomics.load(w, 1) / 1000;
  } finally {
    await Promise.all(ws.map((x) => x.terminate()));
  }
}

/** Run the three measurements (about budgetMs per bandwidth row). Throws if a WR fails. */
export async function runMlx5Bench(
  opts: { budgetMs?: number; batch?: number } = {},
): Promise<Mlx5BenchResult> {
  const budgetMs = opts.budgetMs ?? 300;
  const batch = opts.batch ?? 32;
  const kernel = new HostKernel({ ramBytes: 16 << 20 });
  const nic = await mlx5Probe(kernel, 'mlx5_0', { spinUs: 2000, queueDepth: 16 });
  let proc: Process | null = null;
  try {
    proc = new Proc(kernel, 'mlx5-bench');
    const ctx = ibvOpenDevice(proc, 'mlx5_0');
    const a = await qpEnd(ctx, 1024);
    const b = await qpEnd(ctx, 1024, a.pd);
    await connect(a, b, { timeout: 20, retryCnt: 7 });
    await connect(b, a, { timeout: 20, retryCnt: 7 });
    const max = Math.max(...SIZES);
    // VRAM twice the buffer: the mock allocator then hands out 8-page runs, not single pages.
    const bufs = [0, 1].map(() => MockExporter.create(kernel.mockExporterEnv(2 * max), max, Placement.VRAM));
    const fds = [
      ...bufs.map((e) => dmaBufFd(proc!.fdt, e.dmabuf)),
      busExport(proc, kernel, max),
      busExport(proc, kernel, max),
    ];
    const mrs = await Promise.all(
      fds.map((fd, i) => ibvRegDmabufMr(a.pd, 0, max, (i + 1) * 0x1000_0000, fd, ACCESS)),
    );
    const write =
      (len: number, src = 0, dst = 1, inline = false) =>
      (i: number, signaled: boolean): IbvSendWr => ({
        wr_id: i,
        opcode: IbvWrOpcode.IBV_WR_RDMA_WRITE,
        send_flags:
          (signaled ? IbvSendFlags.IBV_SEND_SIGNALED : 0) | (inline ? IbvSendFlags.IBV_SEND_INLINE : 0),
        sg_list: [
          inline
            ? { addr: userBuf.addr, length: len, lkey: 0 }
            : { addr: mrs[src].addr, length: len, lkey: mrs[src].lkey },
        ],
        wr: { rdma: { remote_addr: mrs[dst].addr, rkey: mrs[dst].rkey } },
      });
    const userBuf = mmapAnonymous(proc, 4096);
    const bw = (size: number, src: number, dst: number): number => {
      const depth = Math.max(4, Math.min(256, (32 << 20) / size));
      stream(a.qp, a.cq, 8, depth, 4, 4, write(size, src, dst)); // warm-up
      let total = 0;
      const t0 = performance.now();
      let t = t0;
      do {
        const n = Math.max(16, Math.ceil((256 << 20) / size / 4));
        stream(a.qp, a.cq, n, depth, 16, 16, write(size, src, dst));
        total += n;
        t = performance.now();
      } while (t - t0 < budgetMs);
      return (size * total) / ((t - t0) / 1000) / 1e9;
    };
    const raw = kernel.addDeviceMemory('bench-raw', 2 * max).region.bytes;
    raw.fill(0x5a, 0, max);
    const bandwidth: Mlx5BwRow[] = [];
    for (const size of SIZES) {
      // the baseline is measured before and after the two RDMA runs and the better one counts:
      // the machine's other load moves all three.
      const before = rawBw(raw.subarray(0, size), raw.subarray(max, max + size), budgetMs);
      const iommuGBps = bw(size, 0, 1);
      const busGBps = bw(size, 2, 3);
      const after = rawBw(raw.subarray(0, size), raw.subarray(max, max + size), budgetMs);
      bandwidth.push({ size, rawGBps: Math.max(before, after), iommuGBps, busGBps });
    }
    // latency: one 8-byte signalled WRITE at a time, completion spin-polled.
    const latency = (mk: (i: number, s: boolean) => IbvSendWr): number => {
      const lat: number[] = [];
      const wc: IbvWc[] = [];
      for (let i = 0; i < 20_000; i++) {
        const w = mk(i, true);
        const t = performance.now();
        ibvPostSend(a.qp, w);
        while (ibvPollCq(a.cq, 1, wc) === 0) {
          // spin: the perftest ib_write_lat way
        }
        if (i >= 1000) lat.push(performance.now() - t);
      }
      lat.sort((x, y) => x - y);
      return lat[lat.length >> 1] * 1000;
    };
    const writeLatUs = latency(write(8));
    const inlineLatUs = latency(write(8, 0, 1, true));
    const pingPongRttUs = await pingPong(20_000);
    // message rate: 8-byte WRITEs, `batch` per doorbell, one signalled per batch.
    const n = 400_000;
    stream(a.qp, a.cq, 10_000, 1024, batch, batch, write(8));
    const t0 = performance.now();
    stream(a.qp, a.cq, n, 1024, batch, batch, write(8));
    const msgRate = n / ((performance.now() - t0) / 1000);
    await ibvCloseDevice(ctx);
    return { bandwidth, writeLatUs, inlineLatUs, pingPongRttUs, msgRate, batch };
  } finally {
    await mlx5Remove(nic);
    if (proc) await processExit(proc);
    kernel.close();
  }
}

/** Run and print a perftest-like summary. */
export async function printMlx5Bench(): Promise<Mlx5BenchResult> {
  const r = await runMlx5Bench();
  console.log(' #bytes   raw set [GB/s]  WRITE via IOMMU [GB/s] (ratio)  WRITE by bus addr [GB/s] (ratio)');
  for (const b of r.bandwidth) {
    const col = (v: number) => `${v.toFixed(2).padStart(8)} (${(v / b.rawGBps).toFixed(2)})`;
    console.log(
      `${String(b.size).padStart(9)}  ${b.rawGBps.toFixed(2).padStart(14)}  ${col(b.iommuGBps).padStart(30)}  ${col(b.busGBps).padStart(32)}`,
    );
  }
  const rtt = r.pingPongRttUs;
  console.log(`raw two-worker ping-pong RTT median: ${rtt.toFixed(2)} us`);
  console.log(
    `8-byte WRITE post->completion median: ${r.writeLatUs.toFixed(2)} us (x${(r.writeLatUs / rtt).toFixed(1)}); inline: ${r.inlineLatUs.toFixed(2)} us (x${(r.inlineLatUs / rtt).toFixed(1)})`,
  );
  console.log(
    `message rate (8-byte WRITE, ${r.batch} per doorbell): ${(r.msgRate / 1e6).toFixed(2)} M msg/s`,
  );
  return r;
}
