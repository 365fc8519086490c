/**
 * The timing model's public face: "how long would N bytes from A to B take on the modelled
 * hardware", alone or sharing links with other transfers (max-min fair). It is the second clock:
 * device models report it next to what the emulator measured, never mixed into one number.
 * Formulas: docs/timing-model.md. Routes: timing-path.ts and fabric-route.ts. Per-hop
 * defaults: timing-params.ts. Link arithmetic: link-rates.ts.
 *
 * Names: devices or endpoints ("h0/gpu0", "h0/nic0.1") and system memory ("h0/numa1").
 */
import { type Capacities, type FluidFlow, maxMinShare, simulateFlows } from './flow-share.ts';
import type { Topology } from './model.ts';
import { type FlowPath, type Hop, type RouteOptions, routeTransfer } from './timing-path.ts';
import { type TimingParams, timingParams } from './timing-params.ts';
import { formatDuration, formatRate } from './units.ts';

export { type FlowDemand, maxMinShare, type ResourceUse, simulateFlows } from './flow-share.ts';
export {
  FLIT_TLP_FRACTION,
  PACKET_OVERHEAD_BYTES,
  PCIE_GEN_SPEC,
  pcieLinkFigures,
  pcieRawBytesPerSec,
  tlpEfficiency,
  tlpOverheadBytes,
  wireGoodput,
} from './link-rates.ts';
export type { FlowPath, Hop, RouteOptions, TransferMode } from './timing-path.ts';
export { DEFAULT_TIMING, type TimingParams, timingParams } from './timing-params.ts';

export interface TransferOptions extends RouteOptions {
  /** Overrides of the per-hop parameters for this call. */
  readonly params?: Partial<TimingParams>;
}

export interface Bottleneck {
  readonly resource: string;
  readonly label: string;
  /** Payload bytes/s this resource allows the flow on its own. */
  readonly rate: number;
}

export type TransferModel =
  | {
      readonly ok: true;
      readonly src: string;
      readonly dst: string;
      readonly bytes: number;
      /** Latency plus bytes at the (shared) rate, ns. */
      readonly durationNs: number;
      /** Average payload rate over the data phase, bytes/s. */
      readonly rate: number;
      readonly latencyNs: number;
      readonly bottleneck: Bottleneck | undefined;
      readonly path: FlowPath;
    }
  | {
      readonly ok: false;
      readonly src: string;
      readonly dst: string;
      readonly bytes: number;
      readonly reason: string;
    };

export interface TransferSpec {
  readonly src: string;
  readonly dst: string;
  readonly bytes: number;
  /** When this transfer starts, ns after the first one (default 0). */
  readonly startNs?: number;
  readonly options?: RouteOptions;
}

/** The resource that limits a lone flow: smallest capacity / cost on its path. */
function bottleneckOf(path: FlowPath): Bottleneck | undefined {
  let best: Bottleneck | undefined;
  for (const h of path.hops) {
    if (!h.resource) continue;
    const rate = h.capacity! / h.cost!;
    if (!best || rate < best.rate) best = { resource: h.resource, label: h.label, rate };
  }
  return best;
}

/** Model several concurrent transfers; each gets a max-min fair share, re-shared as others finish. */
export function modelFlows(
  topo: Topology,
  transfers: readonly TransferSpec[],
  params: Partial<TimingParams> = {},
): TransferModel[] {
  const p = timingParams(topo, params);
  const routes = transfers.map((t) => routeTransfer(topo, t.src, t.dst, p, t.options));
  const caps = new Map<string, number>();
  const fluid: FluidFlow[] = [];
  routes.forEach((r, i) => {
    if ('unreachable' in r) return;
    for (const [k, v] of r.capacities) caps.set(k, v);
    fluid.push({
      id: String(i),
      uses: r.uses,
      bytes: transfers[i].bytes,
      startNs: transfers[i].startNs,
      latencyNs: r.latencyNs,
    });
  });
  const done = simulateFlows(fluid, caps as Capacities);
  return routes.map((r, i): TransferModel => {
    const t = transfers[i];
    if ('unreachable' in r)
      return { ok: false, src: t.src, dst: t.dst, bytes: t.bytes, reason: r.unreachable };
    const f = done.get(String(i))!;
    return {
      ok: true,
      src: t.src,
      dst: t.dst,
      bytes: t.bytes,
      durationNs: f.durationNs,
      rate: f.averageRate,
      latencyNs: r.latencyNs,
      bottleneck: bottleneckOf(r),
      path: r,
    };
  });
}

/** How long `bytes` from `src` to `dst` would take alone on the modelled hardware. */
export function modelTransfer(
  topo: Topology,
  src: string,
  dst: string,
  bytes: number,
  opts: TransferOptions = {},
): TransferModel {
  return modelFlows(topo, [{ src, dst, bytes, options: opts }], opts.params)[0];
}

/** Steady-state max-min rates (bytes/s) of a set of long-running flows, by transfer index. */
export function flowRates(
  topo: Topology,
  transfers: readonly Omit<TransferSpec, 'bytes'>[],
  params: Partial<TimingParams> = {},
): number[] {
  const p = timingParams(topo, params);
  const caps = new Map<string, number>();
  const flows = transfers.map((t, i) => {
    const r = routeTransfer(topo, t.src, t.dst, p, t.options);
    if ('unreachable' in r) return { id: String(i), uses: [], demand: 0 };
    for (const [k, v] of r.capacities) caps.set(k, v);
    return { id: String(i), uses: r.uses };
  });
  const rates = maxMinShare(flows, caps);
  return flows.map((f) => rates.get(f.id)!);
}

/** Both clocks of one transfer, side by side and never combined. */
export interface TwoClocks {
  readonly bytes: number;
  readonly measured: { readonly ns: number; readonly rate: number };
  readonly modelled: { readonly ns: number; readonly rate: number } | { readonly unreachable: string };
}

export function twoClocks(bytes: number, measuredNs: number, model: TransferModel): TwoClocks {
  const measured = { ns: measuredNs, rate: measuredNs > 0 ? bytes / (measuredNs / 1e9) : Infinity };
  const modelled = model.ok ? { ns: model.durationNs, rate: model.rate } : { unreachable: model.reason };
  return { bytes, measured, modelled };
}

export function formatTwoClocks(t: TwoClocks): string {
  const m = `measured ${formatDuration(t.measured.ns)} (${formatRate(t.measured.rate)})`;
  const mod =
    'unreachable' in t.modelled
      ? `modelled: unreachable (${t.modelled.unreachable})`
      : `modelled ${formatDuration(t.modelled.ns)} (${formatRate(t.modelled.rate)})`;
  return `${m} | ${mod}`;
}

/** Human-readable breakdown of a modelled transfer: hops, latency, bottleneck, duration. */
export function formatTransferModel(m: TransferModel): string {
  if (!m.ok) return `${m.src} -> ${m.dst}: unreachable: ${m.reason}`;
  const lines = [`${m.src} -> ${m.dst}, ${m.bytes} bytes, mode ${m.path.mode}`];
  for (const h of m.path.hops) lines.push(`  ${hopLine(h)}`);
  for (const n of m.path.notes) lines.push(`  note: ${n}`);
  lines.push(`  latency     ${formatDuration(m.latencyNs)}`);
  if (m.bottleneck) lines.push(`  bottleneck  ${m.bottleneck.label}: ${formatRate(m.bottleneck.rate)}`);
  lines.push(`  duration    ${formatDuration(m.durationNs)} at ${formatRate(m.rate)}`);
  return lines.join('\n');
}

function hopLine(h: Hop): string {
  const lat = `+${formatDuration(h.latencyNs)}`.padEnd(11);
  if (!h.resource) return `${lat} ${h.label}`;
  const eff = h.cost! > 1 ? `, ${(100 / h.cost!).toFixed(2)}% payload` : '';
  return `${lat} ${h.label}: raw ${formatRate(h.capacity!)}${eff} -> ${formatRate(h.capacity! / h.cost!)}`;
}
