/**
 * Flow-level sharing: max-min fair rates for concurrent flows over shared resources (links in one
 * direction, a root complex, a memory controller), and a fluid simulation that re-shares when a
 * flow finishes. Topology-free: resources are names with capacities.
 *
 * A flow's rate is in payload bytes/s. Using a resource costs `cost` resource bytes per payload
 * byte (TLP or packet headers), so a resource r bounds its flows by sum(rate_f * cost_f,r) <= cap_r.
 */
import { err } from '../common/errno.ts';

export interface ResourceUse {
  readonly resource: string;
  /** Resource bytes per payload byte (>= 1 for header overhead; 2 when a flow crosses it twice). */
  readonly cost: number;
}

export interface FlowDemand {
  readonly id: string;
  readonly uses: readonly ResourceUse[];
  /** Upper bound on the flow's own rate (bytes/s), e.g. what its source can generate. */
  readonly demand?: number;
}

/** Capacities in resource bytes per second; a resource missing here is unlimited. */
export type Capacities = ReadonlyMap<string, number>;

const EPS = 1e-9;

function mergeUses(uses: readonly ResourceUse[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const u of uses) m.set(u.resource, (m.get(u.resource) ?? 0) + u.cost);
  return m;
}

/**
 * Max-min fair rates by progressive filling: raise every unfrozen flow's rate equally until some
 * resource fills (its flows freeze) or a flow reaches its demand (it freezes). Flows that touch
 * no limited resource and have no demand get Infinity.
 */
export function maxMinShare(flows: readonly FlowDemand[], capacities: Capacities): Map<string, number> {
  const rate = new Map<string, number>();
  const uses = new Map<string, Map<string, number>>();
  for (const f of flows) {
    if (rate.has(f.id)) throw err('EINVAL', `maxMinShare: duplicate flow id ${f.id}`);
    rate.set(f.id, 0);
    const limited = new Map(
      [...mergeUses(f.uses)].filter(([r]) => Number.isFinite(capacities.get(r) ?? Infinity)),
    );
    uses.set(f.id, limited);
  }
  const remaining = new Map<string, number>();
  for (const u of uses.values()) for (const r of u.keys()) remaining.set(r, capacities.get(r)!);
  const active = new Set(flows.map((f) => f.id));
  const demandOf = new Map(flows.map((f) => [f.id, f.demand ?? Infinity]));

  while (active.size > 0) {
    const load = new Map<string, number>();
    for (const id of active) for (const [r, c] of uses.get(id)!) load.set(r, (load.get(r) ?? 0) + c);
    let inc = Infinity;
    for (const [r, l] of load) inc = Math.min(inc, remaining.get(r)! / l);
    for (const id of active) inc = Math.min(inc, demandOf.get(id)! - rate.get(id)!);
    if (!Number.isFinite(inc)) {
      for (const id of active) rate.set(id, Infinity);
      break;
    }
    for (const id of active) {
      rate.set(id, rate.get(id)! + inc);
      for (const [r, c] of uses.get(id)!) remaining.set(r, remaining.get(r)! - inc * c);
    }
    const full = new Set([...load.keys()].filter((r) => remaining.get(r)! <= EPS * capacities.get(r)!));
    for (const id of [...active]) {
      const saturated = [...uses.get(id)!.keys()].some((r) => full.has(r));
      if (saturated || rate.get(id)! >= demandOf.get(id)! * (1 - EPS)) active.delete(id);
    }
  }
  return rate;
}

export interface FluidFlow extends FlowDemand {
  readonly bytes: number;
  /** When the flow's data starts moving (ns). */
  readonly startNs?: number;
  /** Fixed latency added after the last byte leaves the bottleneck (ns). */
  readonly latencyNs?: number;
}

export interface FluidResult {
  readonly id: string;
  readonly startNs: number;
  readonly finishNs: number;
  readonly durationNs: number;
  /** bytes / (finish - start - latency): the average data rate the flow got. */
  readonly averageRate: number;
}

/**
 * Fluid simulation: between events every active flow moves at its max-min rate; an event is a
 * flow starting or finishing. Returns per-flow finish times (data done + its latency).
 */
export function simulateFlows(flows: readonly FluidFlow[], capacities: Capacities): Map<string, FluidResult> {
  const left = new Map(flows.map((f) => [f.id, f.bytes]));
  const dataDone = new Map<string, number>();
  const pending = [...flows].sort((a, b) => (a.startNs ?? 0) - (b.startNs ?? 0));
  const active: FluidFlow[] = [];
  let now = pending.length > 0 ? (pending[0].startNs ?? 0) : 0;

  while (pending.length > 0 || active.length > 0) {
    while (pending.length > 0 && (pending[0].startNs ?? 0) <= now) active.push(pending.shift()!);
    for (const f of [...active]) {
      if (left.get(f.id)! <= 0) {
        dataDone.set(f.id, now);
        active.splice(active.indexOf(f), 1);
      }
    }
    if (active.length === 0) {
      if (pending.length > 0) now = pending[0].startNs ?? 0;
      continue;
    }
    const rates = maxMinShare(active, capacities);
    let dt = Infinity;
    for (const f of active) {
      const r = rates.get(f.id)!;
      dt = Math.min(dt, r === Infinity ? 0 : r > 0 ? (left.get(f.id)! / r) * 1e9 : Infinity);
    }
    if (pending.length > 0) dt = Math.min(dt, (pending[0].startNs ?? 0) - now);
    if (!Number.isFinite(dt)) throw err('EINVAL', 'simulateFlows: a flow has zero rate and can never finish');
    for (const f of active) {
      const r = rates.get(f.id)!;
      const moved = r === Infinity ? left.get(f.id)! : r * (dt / 1e9);
      // Absorb floating-point dust so a flow that should be done is done.
      const rest = left.get(f.id)! - moved;
      left.set(f.id, rest <= f.bytes * 1e-12 ? 0 : rest);
    }
    now += dt;
  }

  const out = new Map<string, FluidResult>();
  for (const f of flows) {
    const start = f.startNs ?? 0;
    const done = dataDone.get(f.id) ?? start;
    const finish = done + (f.latencyNs ?? 0);
    const dataNs = done - start;
    out.set(f.id, {
      id: f.id,
      startNs: start,
      finishNs: finish,
      durationNs: finish - start,
      averageRate: dataNs > 0 ? f.bytes / (dataNs / 1e9) : Infinity,
    });
  }
  return out;
}
