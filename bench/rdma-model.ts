/**
 * The modelled hardware of the RDMA bench (bench/rdma.ts): what the topology timing model
 * (topology/timing.ts, as `p2pemu topo --from --to` prints it) says a GPU -> NIC -> GPU RDMA
 * WRITE would do on the real machine the topology file describes. Nothing here is measured; the
 * bench prints it in its own section, never next to the wall-clock figures.
 *
 * A loopback RDMA WRITE is two PCIe legs running at once: the NIC reads the source GPU's memory
 * (read completions gpu0 -> nic0) and writes the destination's (posted writes nic0 -> gpu1). Both
 * are modelled together (they may share links or a root complex); the end-to-end rate is the
 * slower leg's, the latency the sum of both legs'.
 */
import type { Topology } from '../topology/model.ts';
import { modelFlows, type TransferModel } from '../topology/timing.ts';

export interface ModelLeg {
  src: string;
  dst: string;
  /** 'p2p-switch', 'p2p-host-bridge', 'bounce', ... */
  mode: string;
  GBps: number;
  latencyNs: number;
  bottleneck: string | null;
}

export interface RouteModel {
  bytes: number;
  legs: ModelLeg[];
  /** The two legs pipelined: the slower one's rate. */
  GBps: number;
  latencyNs: number;
  /** latency + bytes at that rate. */
  durationNs: number;
}

function leg(m: TransferModel): ModelLeg {
  if (!m.ok) throw new Error(`rdma bench: the timing model cannot route ${m.src} -> ${m.dst}: ${m.reason}`);
  return {
    src: m.src,
    dst: m.dst,
    mode: m.path.mode,
    GBps: m.rate / 1e9,
    latencyNs: m.latencyNs,
    bottleneck: m.bottleneck ? m.bottleneck.label : null,
  };
}

/** The modelled `bytes`-byte RDMA WRITE `src` GPU -> `nic` -> `dst` GPU on `topo`. */
export function modelGpuNicGpu(
  topo: Topology,
  bytes: number,
  src = 'gpu0',
  nic = 'nic0',
  dst = 'gpu1',
): RouteModel {
  const legs = modelFlows(topo, [
    { src, dst: nic, bytes, options: { op: 'read' } },
    { src: nic, dst, bytes, options: { op: 'write' } },
  ]).map(leg);
  const GBps = Math.min(...legs.map((l) => l.GBps));
  const latencyNs = legs.reduce((s, l) => s + l.latencyNs, 0);
  return { bytes, legs, GBps, latencyNs, durationNs: latencyNs + bytes / GBps };
}
