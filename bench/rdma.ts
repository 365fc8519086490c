/**
 * RDMA on the emulated mlx5 HCA (perftest-style, loopback on one HCA), emulator against raw
 * baselines measured in the same run:
 *   - ib_write_bw: RDMA WRITE between two device-memory dma-buf MRs (through the IOMMU, and by
 *     PCI bus address as a P2P BUS_ADDR mapping gives it) vs TypedArray.set of the same size;
 *   - ib_write_lat: one signalled 8-byte WRITE, post to polled completion, vs the round trip of
 *     a raw two-worker Atomics ping-pong;
 *   - message rate: 8-byte WRITEs posted in batches (one doorbell per batch).
 * Wall clock of this machine only; modelled hardware figures come from `p2pemu topo --from/--to`.
 * The device memory is a mock exporter's VRAM region (the same BAR-window memory a GPU export
 * maps), so the figure is the NIC data path's, not the GPU driver's.
 */
import { type Mlx5BenchResult, runMlx5Bench } from '../nodes/kernel/infiniband/mlx5-bench.ts';

export const description =
  'RDMA WRITE bandwidth/latency/message rate vs TypedArray.set and an Atomics ping-pong';

export async function run(opts: { iterations?: number }): Promise<Mlx5BenchResult> {
  // A pending waitAsync does not keep Node alive; hold the loop open for the whole run.
  const keep = setInterval(() => {}, 1 << 30);
  try {
    return await runMlx5Bench({ budgetMs: opts.iterations ?? 300 });
  } finally {
    clearInterval(keep);
  }
}

const size = (n: number) => (n >= 1 << 20 ? `${n >> 20} MiB` : `${n >> 10} KiB`);

export function format(r: Mlx5BenchResult): string {
  const lines = [
    'RDMA on the emulated mlx5 (loopback, one HCA), wall clock of this machine',
    `machine: node ${process.version}, ${process.platform}-${process.arch}`,
    '',
    'ib_write_bw   raw set GB/s   WRITE via IOMMU GB/s  ratio   WRITE by bus addr GB/s  ratio   (goal >= 0.9x)',
  ];
  for (const b of r.bandwidth) {
    lines.push(
      `${size(b.size).padEnd(12)}  ${b.rawGBps.toFixed(2).padStart(12)}   ${b.iommuGBps.toFixed(2).padStart(20)}  ${(b.iommuGBps / b.rawGBps).toFixed(2).padStart(5)}x  ${b.busGBps.toFixed(2).padStart(22)}  ${(b.busGBps / b.rawGBps).toFixed(2).padStart(5)}x`,
    );
  }
  const rtt = r.pingPongRttUs;
  lines.push(
    '',
    `ib_write_lat  8-byte WRITE post->completion ${r.writeLatUs.toFixed(2)} us, inline ${r.inlineLatUs.toFixed(2)} us; raw two-worker ping-pong RTT ${rtt.toFixed(2)} us; ratio ${(r.writeLatUs / rtt).toFixed(1)}x / ${(r.inlineLatUs / rtt).toFixed(1)}x (goal <= 3x)`,
    `msg rate      8-byte WRITEs, ${r.batch} per doorbell: ${(r.msgRate / 1e6).toFixed(2)} M msg/s (goal >= 1 M msg/s)`,
  );
  return lines.join('\n');
}
