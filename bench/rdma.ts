/**
 * `p2pemu bench rdma`: RDMA WRITE GPU -> GPU through dma-buf MRs on the emulated mlx5 (loopback
 * RC pair on mlx5_0), on hosts booted from topology files with real GPU and NIC workers, against
 * raw baselines from the same run, all from one run():
 *   - ib_write_bw, per route (P2P by bus address: single-host.yaml; through the host bridge and
 *     the NIC's IOMMU: phb-host.yaml): 64 KiB, 1 MiB, 16 MiB WRITEs from a gpu0 buffer object to a
 *     gpu1 one vs `dst.set(src)` between gpu0's and gpu1's VRAM (goal >= 0.9x); every row's bytes
 *     are checked by GPU checksum jobs, and each route's map type is verified (bench/rdma-gpu.ts);
 *   - ib_write_lat (bus-address route): one signalled 8-byte WRITE GPU MR -> GPU MR, and the
 *     IBV_SEND_INLINE variant from user memory, vs a raw two-worker Atomics ping-pong round
 *     trip (goal <= 3x);
 *   - message rate (bus-address route): 8-byte WRITEs, 32 per doorbell (goal >= 1 M msg/s);
 *   - modelled hardware: the topology timing model's 16 MiB gpu0 -> nic0 -> gpu1, printed apart.
 * Hosts are booted one at a time and shut down before the next; no worker outlives run().
 * Pieces: rdma-gpu.ts (the rig), rdma-stream.ts (perftest loops), rdma-raw.ts (baselines),
 * rdma-model.ts (timing model).
 */
import {
  type GpuRdmaRig,
  RDMA_ROUTES,
  type RdmaRoute,
  type RouteMapping,
  routeTopology,
  withGpuRdmaRig,
} from './rdma-gpu.ts';
import { modelGpuNicGpu, type RouteModel } from './rdma-model.ts';
import { PingPong, RawCopyWorker, rawCopyGBps, rawSetGBps } from './rdma-raw.ts';
import { physArenaCopy } from '../nodes/fabric/phys-arena.ts';
import { msgRatePerSec, rdmaWrite, writeBw, writeLatUs } from './rdma-stream.ts';
import { machineLine } from './stats.ts';

export const description =
  'RDMA WRITE GPU->GPU via dma-buf MRs (switch P2P and host bridge) vs set; latency vs ping-pong; msg rate';

/** The issue's goals; marks are computed from the figures against these. */
export const RDMA_GOALS = { bwRatio: 0.9, latRatio: 3, msgRate: 1e6 } as const;

const SIZES = [64 << 10, 1 << 20, 16 << 20];
const BUF = 16 << 20;
const BATCH = 32;
const LAT_ITERS = 20_000;
const MSGS = 400_000;
const RIG = { bufBytes: BUF, nicSpinUs: 2000, depth: 1024 };
/**
 * Time cap of each latency, ping-pong and message-rate loop: on an idle machine they finish
 * their counts long before it; when other load keeps two spinning threads off the cores at the
 * same time every round trip costs a scheduler slice, and the cap keeps the run bounded (the
 * result says how many samples counted).
 */
const capMs = (budgetMs: number) => Math.max(250, 10 * budgetMs);

export interface BwRow {
  size: number;
  /** GB/s (10^9 bytes/s) of dst.set(src) gpu0 VRAM -> gpu1 VRAM: median over the rounds. */
  rawGBps: number;
  /** GB/s of the streamed RDMA WRITEs gpu0 buffer -> gpu1 buffer: median over the rounds. */
  rdmaGBps: number;
  /** Median over the rounds of (RDMA GB/s / raw GB/s of the same round). */
  ratio: number;
  /** Lowest and highest per-round ratio: how much the machine moved under the measurement. */
  ratioMin: number;
  ratioMax: number;
  /** Every round: [raw set GB/s, RDMA GB/s, raw copy GB/s, raw copy GB/s of the copy worker]. */
  rounds: [number, number, number, number][];
  /** WRITEs timed over all rounds (perftest's #iterations). */
  wrs: number;
  /**
   * The copy primitive the NIC's DMA uses here: 'memory.copy' (both VRAMs in the host arena) or
   * 'set'. GB/s of it on this thread, median over the rounds, and the median of RDMA / it.
   */
  copyKind: 'memory.copy' | 'set';
  copyGBps: number;
  ratioToCopy: number;
  /**
   * GB/s of that copy done by a worker while this thread spins (the two-thread shape of the
   * RDMA stream, no emulator), median over the rounds, and the median of RDMA / that per round.
   */
  workerCopyGBps: number;
  ratioToWorker: number;
  goalMet: boolean;
  /** CRC-32 of the destination's first `size` bytes after the row, equal to the source's. */
  crc32: number;
}

export interface RouteResult {
  id: string;
  file: string;
  label: string;
  mapping: RouteMapping;
  bandwidth: BwRow[];
}

export interface RdmaBenchResult {
  budgetMs: number;
  machine: string;
  goals: typeof RDMA_GOALS;
  routes: RouteResult[];
  latency: {
    route: string;
    /** Samples behind each median (LAT_ITERS unless the time cap stopped the loop first). */
    writeSamples: number;
    inlineSamples: number;
    pingPongSamples: number;
    /** Median post -> polled completion of one signalled 8-byte WRITE GPU MR -> GPU MR, µs. */
    writeUs: number;
    /** The same, IBV_SEND_INLINE from user memory. */
    inlineUs: number;
    /** Median round trip of the raw two-worker ping-pong, µs. */
    pingPongRttUs: number;
    /** Medians over the rounds of (latency / ping-pong RTT of the same round), and their spread. */
    writeRatio: number;
    inlineRatio: number;
    writeRatioMin: number;
    writeRatioMax: number;
    /** Every round: [ping-pong RTT, WRITE, inline WRITE] medians, µs. */
    rounds: [number, number, number][];
    /** perftest's LAT columns over every WRITE sample of all rounds, µs. */
    writeStats: LatStats;
    writeGoalMet: boolean;
    inlineGoalMet: boolean;
  };
  msgRate: { route: string; messages: number; size: number; batch: number; perSec: number; goalMet: boolean };
  modelled: { route: string; file: string; model: RouteModel }[];
}

function routeHead(rig: GpuRdmaRig): Omit<RouteResult, 'bandwidth'> {
  const { id, file, label } = rig.route;
  return { id, file, label, mapping: rig.mapping };
}

/** perftest ib_write_lat's columns, microseconds. */
export interface LatStats {
  iterations: number;
  min: number;
  max: number;
  typical: number;
  avg: number;
  stdev: number;
  p99: number;
  p999: number;
}

function latStats(parts: readonly Float64Array[]): LatStats {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const xs = new Float64Array(n);
  let at = 0;
  for (const p of parts) {
    xs.set(p, at);
    at += p.length;
  }
  xs.sort();
  const avg = xs.reduce((a, x) => a + x, 0) / n;
  const stdev = Math.sqrt(xs.reduce((a, x) => a + (x - avg) ** 2, 0) / n);
  const q = (f: number) => xs[Math.min(n - 1, Math.ceil(f * n) - 1)];
  return {
    iterations: n,
    min: xs[0],
    max: xs[n - 1],
    typical: xs[n >> 1],
    avg,
    stdev,
    p99: q(0.99),
    p999: q(0.999),
  };
}

/** Rounds of the latency measurement (odd), each a ping-pong slice and two latency slices. */
const LAT_ROUNDS = 9;

/**
 * ib_write_lat next to the raw ping-pong, in LAT_ROUNDS rounds: a ping-pong slice (this thread
 * asleep; the NIC worker has stopped spinning by then), then the WRITE and the inline WRITE
 * slices. The ratio is taken inside each round (the VM drifts) and the median reported.
 */
async function latencyRounds(rig: GpuRdmaRig, budgetMs: number): Promise<RdmaBenchResult['latency']> {
  const pp = new PingPong();
  try {
    const w8 = rdmaWrite(8, rig.src, rig.dst);
    const inl = rdmaWrite(8, rig.user, rig.dst, true);
    const per = Math.ceil(LAT_ITERS / LAT_ROUNDS);
    const cap = capMs(budgetMs) / LAT_ROUNDS;
    const lat = { iters: per, warmup: 200, maxMs: cap };
    // warm-up, not counted (JIT on both sides)
    writeLatUs(rig.qp, rig.cq, w8, { iters: 2_000, warmup: 0, maxMs: cap });
    writeLatUs(rig.qp, rig.cq, inl, { iters: 2_000, warmup: 0, maxMs: cap });
    pp.rttUs(2_000, cap);
    const nap = new Int32Array(new SharedArrayBuffer(4));
    const rounds: [number, number, number][] = [];
    const all: Float64Array[] = [];
    let ppN = 0;
    let wN = 0;
    let iN = 0;
    for (let r = 0; r < LAT_ROUNDS; r++) {
      // let the NIC worker's busy-poll (RIG.nicSpinUs) run out: it would share the cores
      Atomics.wait(nap, 0, 0, 2 * (RIG.nicSpinUs / 1000) + 1);
      const p = pp.rttUs(per, cap);
      const w = writeLatUs(rig.qp, rig.cq, w8, lat);
      const i = writeLatUs(rig.qp, rig.cq, inl, lat);
      rounds.push([p.us, w.value, i.value]);
      if (w.sortedUs) all.push(w.sortedUs);
      ppN += p.samples;
      wN += w.samples;
      iN += i.samples;
    }
    const wr = rounds.map(([p, w]) => w / p);
    const writeRatio = median(wr);
    const inlineRatio = median(rounds.map(([p, , i]) => i / p));
    return {
      route: rig.route.id,
      writeSamples: wN,
      inlineSamples: iN,
      pingPongSamples: ppN,
      writeUs: median(rounds.map((x) => x[1])),
      inlineUs: median(rounds.map((x) => x[2])),
      pingPongRttUs: median(rounds.map((x) => x[0])),
      writeRatio,
      inlineRatio,
      writeRatioMin: Math.min(...wr),
      writeRatioMax: Math.max(...wr),
      rounds,
      writeStats: latStats(all),
      writeGoalMet: writeRatio <= RDMA_GOALS.latRatio,
      inlineGoalMet: inlineRatio <= RDMA_GOALS.latRatio,
    };
  } finally {
    await pp.close();
  }
}

/** Paired rounds per bandwidth row (odd: the median is one round). */
const BW_ROUNDS = 11;

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/**
 * ib_write_bw rows of one route, each verified by GPU checksums before it counts. Each row is
 * BW_ROUNDS rounds of three slices of about budgetMs / BW_ROUNDS each (the raw set, the RDMA
 * stream, the set in a worker), rotating which goes first: this VM's copy speed drifts by 2x
 * within seconds, and a ratio taken inside one round cancels that drift; the row reports the
 * median of the per-round ratios. An RDMA slice is at least one whole stream call (8 warm-up
 * WRs and at least 16 more, 384 MiB at 16 MiB), so at 16 MiB it runs longer than the others.
 */
async function bandwidthRows(rig: GpuRdmaRig, budgetMs: number): Promise<BwRow[]> {
  const copier = new RawCopyWorker(rig.raw.src, rig.raw.dst, rig.raw.arena);
  try {
    return await bandwidthRowsWith(rig, copier, budgetMs);
  } finally {
    await copier.close();
  }
}

async function bandwidthRowsWith(rig: GpuRdmaRig, copier: RawCopyWorker, budgetMs: number): Promise<BwRow[]> {
  const rows: BwRow[] = [];
  const slice = budgetMs / BW_ROUNDS;
  const copy = rig.raw.arena ? physArenaCopy(rig.raw.arena) : null;
  // Warm-up, not counted: the first ~second of streaming runs while V8 still compiles the data
  // path on background threads, which on a 2-core machine take the cores the NIC worker and this
  // thread need (measured: the first rounds ran at 5-10 % of the later ones).
  for (const size of SIZES) {
    rawSetGBps(rig.raw.src.subarray(0, size), rig.raw.dst.subarray(0, size), budgetMs / 3);
    rawCopyGBps(rig.raw.src.subarray(0, size), rig.raw.dst.subarray(0, size), budgetMs / 3, copy);
    copier.gbps(size, budgetMs / 3);
    writeBw(rig.qp, rig.cq, size, budgetMs, rdmaWrite(size, rig.src, rig.dst));
  }
  for (const size of SIZES) {
    await rig.poison(size);
    const src = rig.raw.src.subarray(0, size);
    const dst = rig.raw.dst.subarray(0, size);
    const wr = rdmaWrite(size, rig.src, rig.dst);
    const rounds: [number, number, number, number][] = [];
    let wrs = 0;
    const measure = [
      () => rawSetGBps(src, dst, slice),
      () => {
        const b = writeBw(rig.qp, rig.cq, size, slice, wr);
        wrs += b.wrs;
        return b.gbps;
      },
      () => rawCopyGBps(src, dst, slice, copy),
      () => copier.gbps(size, slice),
    ];
    for (let i = 0; i < BW_ROUNDS; i++) {
      // rotate which slice goes first, so a drift within a round does not favour one of them
      const got = [0, 0, 0, 0];
      for (let k = 0; k < measure.length; k++) {
        const j = (i + k) % measure.length;
        got[j] = measure[j]();
      }
      rounds.push([got[0], got[1], got[2], got[3]]);
    }
    const crc32 = await rig.verify(size);
    const ratios = rounds.map(([raw, rdma]) => rdma / raw);
    const ratio = median(ratios);
    rows.push({
      size,
      rawGBps: median(rounds.map((r) => r[0])),
      rdmaGBps: median(rounds.map((r) => r[1])),
      ratio,
      ratioMin: Math.min(...ratios),
      ratioMax: Math.max(...ratios),
      rounds,
      wrs,
      copyKind: copy === null ? 'set' : 'memory.copy',
      copyGBps: median(rounds.map((r) => r[2])),
      ratioToCopy: median(rounds.map(([, rdma, c]) => rdma / c)),
      workerCopyGBps: median(rounds.map((r) => r[3])),
      ratioToWorker: median(rounds.map(([, rdma, , w]) => rdma / w)),
      goalMet: ratio >= RDMA_GOALS.bwRatio,
      crc32,
    });
  }
  return rows;
}

/**
 * Run the whole bench. `opts.iterations` is the budget of each bandwidth row in ms (default
 * 300); the latency, ping-pong and message-rate loops stop after ten budgets (capMs). Throws,
 * reporting nothing, when a route got the wrong map type, the data path changed during a run,
 * a WR failed, or a checksum did not match. Every host is shut down before it returns.
 */
export async function run(opts: { iterations?: number }): Promise<RdmaBenchResult> {
  const budgetMs = opts.iterations ?? 300;
  // A pending waitAsync does not keep Node alive; hold the loop open for the whole run.
  const keep = setInterval(() => {}, 1 << 30);
  try {
    const machine = machineLine();
    const bus = RDMA_ROUTES.busAddr;
    const first = await withGpuRdmaRig(bus, RIG, async (rig) => {
      const bandwidth = await bandwidthRows(rig, budgetMs);
      await rig.poison(4096);
      const w8 = rdmaWrite(8, rig.src, rig.dst);
      const latency = await latencyRounds(rig, budgetMs);
      const rate = msgRatePerSec(rig.qp, rig.cq, w8, {
        batch: BATCH,
        n: MSGS,
        warmup: 10_000,
        maxMs: capMs(budgetMs),
      });
      // the last 8-byte WRITEs came from the GPU source: they must have landed too.
      await rig.verify(8);
      return { route: { ...routeHead(rig), bandwidth }, latency, rate };
    });
    const second = await withGpuRdmaRig(RDMA_ROUTES.hostBridge, RIG, async (rig) => ({
      ...routeHead(rig),
      bandwidth: await bandwidthRows(rig, budgetMs),
    }));
    const routes: RdmaRoute[] = [bus, RDMA_ROUTES.hostBridge];
    return {
      budgetMs,
      machine,
      goals: RDMA_GOALS,
      routes: [first.route, second],
      latency: first.latency,
      msgRate: {
        route: bus.id,
        messages: first.rate.samples,
        size: 8,
        batch: BATCH,
        perSec: first.rate.value,
        goalMet: first.rate.value >= RDMA_GOALS.msgRate,
      },
      modelled: routes.map((r) => ({
        route: r.id,
        file: r.file,
        model: modelGpuNicGpu(routeTopology(r), BUF),
      })),
    };
  } finally {
    clearInterval(keep);
  }
}

const sizeName = (n: number) => (n >= 1 << 20 ? `${n >> 20} MiB` : `${n >> 10} KiB`);
const mark = (met: boolean) => (met ? 'met' : 'MISSED');

/**
 * The same measurements in perftest's own tables (--report_gbits), so a perftest user's parser
 * and eye carry over: BW peak is the best round, BW average the mean of the rounds; the LAT row
 * covers every WRITE sample of all latency rounds.
 */
function perftestLines(r: RdmaBenchResult): string[] {
  const out = ['perftest format (ib_write_bw --report_gbits; peak: best round, average: mean of the rounds)'];
  for (const rt of r.routes) {
    out.push(
      ` route ${rt.id}`,
      ' #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]',
    );
    for (const b of rt.bandwidth) {
      const gbs = b.rounds.map((x) => x[1]);
      const avg = gbs.reduce((a, x) => a + x, 0) / gbs.length;
      out.push(
        ` ${String(b.size).padEnd(10)} ${String(b.wrs).padEnd(14)} ${(Math.max(...gbs) * 8).toFixed(2).padEnd(18)} ${(avg * 8).toFixed(2).padEnd(20)} ${((avg * 1e9) / b.size / 1e6).toFixed(6)}`,
      );
    }
  }
  const t = r.latency.writeStats;
  const f = (x: number) => x.toFixed(2).padEnd(14);
  out.push(
    '',
    `perftest format (ib_write_lat, route ${r.latency.route}, 8-byte WRITE GPU MR -> GPU MR; post to polled completion)`,
    ' #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]    t_stdev[usec]   99% percentile[usec]   99.9% percentile[usec]',
    ` 8       ${String(t.iterations).padEnd(14)} ${f(t.min)} ${f(t.max)} ${f(t.typical)} ${f(t.avg)} ${f(t.stdev)} ${f(t.p99)}         ${t.p999.toFixed(2)}`,
  );
  return out;
}

export function format(r: RdmaBenchResult): string {
  const g = r.goals;
  const lines = [
    'RDMA WRITE GPU -> GPU through dma-buf MRs, mlx5_0 loopback RC pair, on topology-booted hosts',
    `measured: wall clock of this machine (${r.budgetMs} ms per bandwidth row)`,
    r.machine,
  ];
  for (const rt of r.routes) {
    const m = rt.mapping;
    lines.push(
      '',
      `route ${rt.id}: ${rt.file}`,
      `  ${rt.label}`,
      `  map type: ${m.attaches.map((a) => `${a.bo} -> ${a.dev} ${a.mapType}`).join(', ')} (expected ${m.expected}: verified)`,
      `  VRAM mapped through the NIC's IOMMU: ${m.nicIommuVramBytes >> 20} MiB; buffers in ${m.placement.join(' / ')}; attach.mapType (negotiated interconnect): ${m.negotiated.map((n) => n ?? 'none').join(', ')}`,
      `  NIC DMA copy: ${rt.bandwidth[0]?.copyKind === 'memory.copy' ? "wasm memory.copy in the host's memory arena (both VRAMs in it)" : 'TypedArray.set (the VRAMs are not in one arena)'}`,
      `  ib_write_bw  raw set GB/s  RDMA WRITE GB/s   ratio (min-max, ${BW_ROUNDS} rounds)  goal >= ${g.bwRatio}x  | raw copy GB/s  RDMA/it | worker copy GB/s  RDMA/it | data check (GPU checksum)`,
    );
    for (const b of rt.bandwidth) {
      lines.push(
        `  ${sizeName(b.size).padEnd(11)}  ${b.rawGBps.toFixed(2).padStart(11)}  ${b.rdmaGBps.toFixed(2).padStart(15)}  ${b.ratio.toFixed(2).padStart(5)}x (${b.ratioMin.toFixed(2)}-${b.ratioMax.toFixed(2)})${' '.repeat(11)}${mark(b.goalMet).padEnd(12)}| ${b.copyGBps.toFixed(2).padStart(13)}  ${b.ratioToCopy.toFixed(2).padStart(6)}x | ${b.workerCopyGBps.toFixed(2).padStart(16)}  ${b.ratioToWorker.toFixed(2).padStart(6)}x | crc32 0x${b.crc32.toString(16).padStart(8, '0')} matches`,
      );
    }
  }
  lines.push(
    '',
    "  ratio: median of the per-round (RDMA / raw set) ratios, the issue's baseline. The NIC's DMA copies with",
    '  the raw copy column (memory.copy: a memmove; V8 copies SharedArrayBuffers with `set` at relaxed-atomic',
    "  speed), so RDMA / raw copy is the emulator's own cost. worker copy: that copy in a worker thread while",
    '  this thread spins (the two-thread shape of the stream, no emulator), and RDMA / it, per round',
  );
  const l = r.latency;
  const m = r.msgRate;
  lines.push(
    '',
    `ib_write_lat (route ${l.route}; ${l.rounds.length} rounds, each a ping-pong slice then the WRITE slices; medians; goal <= ${g.latRatio}x the raw two-worker ping-pong RTT ${l.pingPongRttUs.toFixed(2)} us, ${l.pingPongSamples} round trips)`,
    `  8-byte WRITE GPU MR -> GPU MR   ${l.writeUs.toFixed(2).padStart(6)} us  ${l.writeRatio.toFixed(1).padStart(5)}x  ${mark(l.writeGoalMet).padEnd(6)}  (${l.writeSamples} samples; per-round ratio ${l.writeRatioMin.toFixed(1)}-${l.writeRatioMax.toFixed(1)}x)`,
    `  8-byte WRITE inline (user mem)  ${l.inlineUs.toFixed(2).padStart(6)} us  ${l.inlineRatio.toFixed(1).padStart(5)}x  ${mark(l.inlineGoalMet).padEnd(6)}  (${l.inlineSamples} samples)`,
    '',
    `message rate (route ${m.route}; goal >= ${g.msgRate / 1e6} M msg/s)`,
    `  ${m.size}-byte WRITEs, ${m.batch} per doorbell, ${m.messages} messages: ${(m.perSec / 1e6).toFixed(2)} M msg/s  ${mark(m.goalMet)}`,
    '',
    ...perftestLines(r),
    '',
    'MODELLED HARDWARE (topology timing model, not measured; compare with the figures above only as two clocks)',
  );
  for (const x of r.modelled) {
    const mod = x.model;
    lines.push(
      `  route ${x.route} (${x.file}): ${sizeName(mod.bytes)} gpu0 -> nic0 -> gpu1: ${mod.GBps.toFixed(2)} GB/s, latency ${mod.latencyNs.toFixed(0)} ns, ${(mod.durationNs / 1000).toFixed(1)} us`,
    );
    for (const leg of mod.legs)
      lines.push(
        `    ${`${leg.src} -> ${leg.dst}`.padEnd(14)} ${leg.mode.padEnd(16)} ${leg.GBps.toFixed(2).padStart(6)} GB/s  ${leg.latencyNs.toFixed(0).padStart(4)} ns  bottleneck ${leg.bottleneck ?? 'none'}`,
      );
  }
  return lines.join('\n');
}
