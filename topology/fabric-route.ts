/**
 * Between hosts: which NIC function a transfer leaves or enters a host through, and the route
 * across the fabric's switches and cables. Deterministic, so two runs model the same path.
 */
import type { Host, NicDevice, NicPort, PcieNode, Topology } from './model.ts';
import { portKey } from './model.ts';
import { pathClassInHost, pathClassRank } from './path-class.ts';
import { endpointsOf, resolveEndpoint } from './pcie-tree.ts';

/** Where data starts or ends: a PCI function, or the memory of one NUMA node. */
export type Place = { kind: 'ep'; host: Host; node: PcieNode } | { kind: 'mem'; host: Host; numa: number };

export interface NicChoice {
  node: PcieNode;
  dev: NicDevice;
  port: NicPort;
  portKey: string;
}

function cabledPort(topo: Topology, host: Host, dev: NicDevice): NicPort | undefined {
  const ends = new Set(
    topo.fabric.links
      .flatMap((l) => [l.a, l.b])
      .filter((e) => e.kind === 'port')
      .map((e) => portKey(e.host, e.device, e.port)),
  );
  return dev.ports.find((p) => ends.has(portKey(host.id, dev.id, p.port)));
}

/** The NIC function a transfer leaves or enters a host through: as asked, else the closest cabled one. */
export function pickNic(topo: Topology, place: Place, ref: string | undefined): NicChoice | undefined {
  const host = place.host;
  const candidates = ref
    ? [resolveEndpoint(topo, ref.includes('/') ? ref : `${host.id}/${ref}`).node]
    : endpointsOf(host, 'nic');
  const scored = candidates
    .map((node) => {
      const dev = host.devices.get(node.device!) as NicDevice;
      const port = cabledPort(topo, host, dev);
      const rank =
        place.kind === 'ep'
          ? pathClassRank(pathClassInHost(host, place.node, node, { pcieOnly: true }))
          : node.numa === place.numa
            ? 0
            : 1;
      return { node, dev, port, rank };
    })
    .filter((c) => c.port !== undefined);
  scored.sort((x, y) => x.rank - y.rank);
  const best = scored[0];
  return best
    ? {
        node: best.node,
        dev: best.dev,
        port: best.port!,
        portKey: portKey(host.id, best.dev.id, best.port!.port),
      }
    : undefined;
}

export interface RouteStep {
  link: number;
  from: string;
  to: string;
  forward: boolean;
}

const endKey = (e: Topology['fabric']['links'][number]['a']) =>
  e.kind === 'port' ? portKey(e.host, e.device, e.port) : e.id;

/** Fewest cables, then lowest latency, then lowest cable index: deterministic, ECMP picks the first. */
export function fabricRoute(topo: Topology, from: string, to: string): RouteStep[] | undefined {
  const best = new Map<string, { hops: number; ns: number; steps: RouteStep[] }>([
    [from, { hops: 0, ns: 0, steps: [] }],
  ]);
  const queue = [from];
  const better = (a: { hops: number; ns: number }, b: { hops: number; ns: number } | undefined) =>
    !b || a.hops < b.hops || (a.hops === b.hops && a.ns < b.ns);
  while (queue.length > 0) {
    queue.sort((x, y) => best.get(x)!.hops - best.get(y)!.hops || best.get(x)!.ns - best.get(y)!.ns);
    const at = queue.shift()!;
    if (at !== from && at.includes('/')) continue; // a NIC port is an end, never a transit point
    const cur = best.get(at)!;
    topo.fabric.links.forEach((l, i) => {
      const [ka, kb] = [endKey(l.a), endKey(l.b)];
      if (ka !== at && kb !== at) return;
      const forward = ka === at;
      const next = forward ? kb : ka;
      const sw = topo.fabric.switches.get(next);
      const cand = {
        hops: cur.hops + 1,
        ns: cur.ns + l.latencyNs + (sw ? (sw.latencyNs ?? 0) : 0),
        steps: [...cur.steps, { link: i, from: at, to: next, forward }],
      };
      if (better(cand, best.get(next))) {
        best.set(next, cand);
        queue.push(next);
      }
    });
  }
  return best.get(to)?.steps;
}
