/**
 * Route of one transfer through the modelled hardware: the ordered hops with their latencies and
 * the resources (link directions, root complexes, memory controllers, NIC ports, fabric links)
 * the flow loads, each with its raw capacity and the flow's cost per payload byte.
 *
 * Inside a host the route follows the P2PDMA decision: BUS_ADDR turns at the common switch,
 * THRU_HOST_BRIDGE climbs to the root complex (an ACS-redirected flow crosses the switch's
 * upstream link twice), NOT_SUPPORTED bounces through system memory. Between hosts it goes
 * device -> NIC -> fabric (fewest hops, then lowest latency) -> NIC -> device.
 */
import { err } from '../common/errno.ts';
import type { ResourceUse } from './flow-share.ts';
import { type LinkLayer, pcieRawBytesPerSec, type TlpOp, tlpEfficiency, wireCost } from './link-rates.ts';
import { fabricRoute, type Place, pickNic } from './fabric-route.ts';
import type { Host, PcieNode, Topology } from './model.ts';
import { calcMapTypeAndDist } from './p2pdma.ts';
import { bridgeUnit, nodeOf, resolveEndpoint, treePath, upstreamChain } from './pcie-tree.ts';
import type { TimingParams } from './timing-params.ts';

export interface Hop {
  readonly label: string;
  readonly latencyNs: number;
  /** Set when the hop loads a shared resource. */
  readonly resource?: string;
  /** Raw capacity of the resource, bytes/s. */
  readonly capacity?: number;
  /** Resource bytes per payload byte. */
  readonly cost?: number;
}

export type TransferMode =
  | 'p2p-switch'
  | 'p2p-host-bridge'
  | 'private-link'
  | 'memory'
  | 'bounce'
  | 'network';

export interface FlowPath {
  readonly src: string;
  readonly dst: string;
  /** How the data travels: the host-local mode, or 'network' between hosts. */
  readonly mode: TransferMode;
  readonly hops: readonly Hop[];
  readonly uses: readonly ResourceUse[];
  readonly capacities: ReadonlyMap<string, number>;
  readonly latencyNs: number;
  readonly notes: readonly string[];
}

export interface RouteOptions {
  /** Data TLPs of device-to-device legs: posted writes (default) or read completions. */
  readonly op?: TlpOp;
  /** 'pcie' ignores NVLink between GPUs. */
  readonly via?: 'auto' | 'pcie';
  /** NIC (device or endpoint) to leave / enter each host through; default: the closest cabled one. */
  readonly srcNic?: string;
  readonly dstNic?: string;
}

class Route {
  hops: Hop[] = [];
  caps = new Map<string, number>();
  notes: string[] = [];
  readonly p: TimingParams;
  constructor(p: TimingParams) {
    this.p = p;
  }
  lat(label: string, ns: number) {
    this.hops.push({ label, latencyNs: ns });
  }
  use(label: string, resource: string, capacity: number, cost: number, ns: number) {
    this.hops.push({ label, latencyNs: ns, resource, capacity, cost });
    this.caps.set(resource, capacity);
  }
}

const MEM_RE = /^(?:([^/]+)\/)?numa(\d+)$/;

function resolvePlace(topo: Topology, ref: string): Place {
  const m = MEM_RE.exec(ref);
  if (m) {
    const host = m[1]
      ? topo.hosts.get(m[1])
      : topo.hosts.size === 1
        ? [...topo.hosts.values()][0]
        : undefined;
    if (!host) throw err('ENODEV', `timing: "${ref}" needs a known host prefix (host/numaN)`);
    const numa = Number(m[2]);
    if (!host.numa.has(numa)) throw err('ENODEV', `timing: host ${host.id} has no NUMA node ${numa}`);
    return { kind: 'mem', host, numa };
  }
  const e = resolveEndpoint(topo, ref);
  return { kind: 'ep', host: e.host, node: e.node };
}

/** One switch-traversal latency per distinct switch (`seen` carries switches already crossed). */
function switchHop(r: Route, host: Host, n: PcieNode, seen: Set<string>) {
  if (n.kind !== 'switch-upstream' && n.kind !== 'switch-downstream') return;
  const unit = bridgeUnit(host, n);
  if (seen.has(unit)) return;
  seen.add(unit);
  r.lat(`switch ${unit}`, nodeOf(host, unit).latencyNs ?? r.p.switchLatencyNs);
}

/** The links of `nodes` (each node's link to its parent) in one direction, with their switches. */
function pcieLinks(
  r: Route,
  host: Host,
  nodes: readonly PcieNode[],
  dir: 'up' | 'down',
  mps: number,
  op: TlpOp,
  seen = new Set<string>(),
) {
  for (const n of nodes) {
    switchHop(r, host, n, seen);
    if (n.link) {
      const { gen, width } = n.link;
      const label = `${n.id} link Gen${gen} x${width} ${dir}`;
      r.use(
        label,
        `pcie:${n.key}:${dir}`,
        pcieRawBytesPerSec(n.link),
        1 / tlpEfficiency(gen, mps, op),
        r.p.pcieLinkLatencyNs,
      );
    }
  }
}

/** Between two root complexes of one host: mesh inside a socket, the SMP link between sockets. */
function crossHostBridges(r: Route, host: Host, hbA: PcieNode, hbB: PcieNode) {
  if (hbA.id === hbB.id) return;
  if (hbA.numa === hbB.numa) {
    r.lat(`mesh ${hbA.id} -> ${hbB.id}`, r.p.hostBridgeMeshLatencyNs);
    return;
  }
  const bw = host.smp?.bandwidth ?? r.p.smpBandwidth;
  const label = `SMP link numa${hbA.numa} -> numa${hbB.numa}`;
  r.use(label, `smp:${host.id}:${hbA.numa}>${hbB.numa}`, bw, 1, host.smp?.latencyNs ?? r.p.smpLatencyNs);
}

function rootComplex(r: Route, hb: PcieNode, p2p: boolean) {
  const ns = hb.latencyNs ?? r.p.rootComplexLatencyNs;
  if (p2p && hb.hb?.p2pBandwidth)
    r.use(`root complex ${hb.id} (P2P)`, `rc:${hb.key}`, hb.hb.p2pBandwidth, 1, ns);
  else r.lat(`root complex ${hb.id}`, ns);
}

function minMps(nodes: readonly PcieNode[]): number {
  return Math.min(...nodes.filter((n) => n.kind !== 'host-bridge').map((n) => n.mps));
}

/** Device memory to (or from) system memory of one NUMA node. */
function memLeg(r: Route, host: Host, ep: PcieNode, numa: number, toMem: boolean) {
  const chain = upstreamChain(host, ep.id);
  const mps = minMps(chain);
  const hb = nodeOf(host, ep.hostBridge);
  const memHb = host.hostBridges.map((id) => nodeOf(host, id)).find((h) => h.numa === numa) ?? hb;
  const n = host.numa.get(numa)!;
  const memBw = n.memoryBandwidth ?? r.p.memoryBandwidth;
  const mem = () =>
    r.use(
      `memory numa${numa}`,
      `mem:${host.id}/numa${numa}`,
      memBw,
      1,
      n.memoryLatencyNs ?? r.p.memoryLatencyNs,
    );
  if (toMem) {
    pcieLinks(r, host, chain, 'up', mps, 'write');
    rootComplex(r, hb, false);
    if (memHb.numa !== hb.numa) crossHostBridges(r, host, hb, memHb);
    mem();
  } else {
    mem();
    if (memHb.numa !== hb.numa) crossHostBridges(r, host, memHb, hb);
    rootComplex(r, hb, false);
    pcieLinks(r, host, [...chain].reverse(), 'down', mps, 'read');
  }
}

/** Device to device inside one host, as P2PDMA would route it. */
function deviceLeg(
  topo: Topology,
  r: Route,
  host: Host,
  a: PcieNode,
  z: PcieNode,
  opts: RouteOptions,
): TransferMode {
  const op = opts.op ?? 'write';
  if (opts.via !== 'pcie' && a.device && z.device && a.device !== z.device) {
    const link = host.privateLinks.find(
      (l) => l.members.includes(a.device!) && l.members.includes(z.device!),
    );
    if (link) {
      const bw = link.links * link.linkRate;
      const ns = link.latencyNs ?? r.p.privateLinkLatencyNs;
      r.use(
        `${link.kind} ${link.id} ${a.device} tx (${link.links} links)`,
        `nvl:${link.key}:${a.device}:tx`,
        bw,
        1,
        ns,
      );
      r.use(
        `${link.kind} ${link.id} ${z.device} rx (${link.links} links)`,
        `nvl:${link.key}:${z.device}:rx`,
        bw,
        1,
        0,
      );
      return 'private-link';
    }
  }
  const d = calcMapTypeAndDist(topo, a.key, z.key);
  if (d.mapType === 'BUS_ADDR') {
    const tp = treePath(host, a.id, z.id);
    const mps = minMps([...tp.up, tp.top!, ...tp.down]);
    // One pass: the switch where traffic turns is crossed once, however many of its ports are on the path.
    const seen = new Set<string>();
    pcieLinks(r, host, tp.up, 'up', mps, op, seen);
    switchHop(r, host, tp.top!, seen);
    pcieLinks(r, host, tp.down, 'down', mps, op, seen);
    return 'p2p-switch';
  }
  if (d.mapType === 'THRU_HOST_BRIDGE') {
    const up = upstreamChain(host, a.id);
    const down = upstreamChain(host, z.id).reverse();
    const mps = minMps([...up, ...down]);
    const hbA = nodeOf(host, a.hostBridge);
    const hbB = nodeOf(host, z.hostBridge);
    pcieLinks(r, host, up, 'up', mps, op);
    rootComplex(r, hbA, true);
    crossHostBridges(r, host, hbA, hbB);
    if (hbB.id !== hbA.id) rootComplex(r, hbB, true);
    pcieLinks(r, host, down, 'down', mps, op);
    if (d.acsRedirects.length > 0)
      r.notes.push(`ACS redirect at ${d.acsRedirects.join(', ')} sends P2P through the root complex`);
    return 'p2p-host-bridge';
  }
  r.notes.push(`P2P not supported (${d.reason}); bounced through system memory of numa${a.numa}`);
  memLeg(r, host, a, a.numa, true);
  memLeg(r, host, z, a.numa, false);
  return 'bounce';
}

function hostLeg(topo: Topology, r: Route, from: Place, to: Place, opts: RouteOptions): TransferMode {
  const host = from.host;
  if (from.kind === 'ep' && to.kind === 'ep') return deviceLeg(topo, r, host, from.node, to.node, opts);
  if (from.kind === 'ep' && to.kind === 'mem') memLeg(r, host, from.node, to.numa, true);
  else if (from.kind === 'mem' && to.kind === 'ep') memLeg(r, host, to.node, from.numa, false);
  else if (from.kind === 'mem' && to.kind === 'mem') {
    const nf = host.numa.get(from.numa)!;
    const resource = `mem:${host.id}/numa${from.numa}`;
    r.use(
      `memory numa${from.numa} read`,
      resource,
      nf.memoryBandwidth ?? r.p.memoryBandwidth,
      1,
      nf.memoryLatencyNs ?? r.p.memoryLatencyNs,
    );
    if (from.numa !== to.numa) {
      const bw = host.smp?.bandwidth ?? r.p.smpBandwidth;
      r.use(
        `SMP link numa${from.numa} -> numa${to.numa}`,
        `smp:${host.id}:${from.numa}>${to.numa}`,
        bw,
        1,
        host.smp?.latencyNs ?? r.p.smpLatencyNs,
      );
    }
    const nt = host.numa.get(to.numa)!;
    r.use(
      `memory numa${to.numa} write`,
      `mem:${host.id}/numa${to.numa}`,
      nt.memoryBandwidth ?? r.p.memoryBandwidth,
      1,
      0,
    );
  }
  return 'memory';
}

/** Route of a transfer, or a reason it has none (no cabled NIC, no fabric route, mixed link layers). */
export function routeTransfer(
  topo: Topology,
  src: string,
  dst: string,
  p: TimingParams,
  opts: RouteOptions = {},
): FlowPath | { unreachable: string } {
  const from = resolvePlace(topo, src);
  const to = resolvePlace(topo, dst);
  const r = new Route(p);
  let mode: TransferMode;
  if (from.host.id === to.host.id) {
    mode = hostLeg(topo, r, from, to, opts);
  } else {
    const nicA = pickNic(topo, from, opts.srcNic);
    const nicB = pickNic(topo, to, opts.dstNic);
    if (!nicA || !nicB) return { unreachable: `no cabled NIC on host ${(nicA ? to : from).host.id}` };
    if (nicA.port.linkLayer !== nicB.port.linkLayer)
      return { unreachable: `link layers differ (${nicA.port.linkLayer} vs ${nicB.port.linkLayer})` };
    const route = fabricRoute(topo, nicA.portKey, nicB.portKey);
    if (!route) return { unreachable: `no fabric route from ${nicA.portKey} to ${nicB.portKey}` };
    const mtu = Math.min(nicA.port.mtu, nicB.port.mtu);
    const layer: LinkLayer = nicA.port.linkLayer;
    const cost = wireCost(mtu, layer);
    if (!(from.kind === 'ep' && from.node.id === nicA.node.id))
      hostLeg(topo, r, from, { kind: 'ep', host: from.host, node: nicA.node }, opts);
    r.lat(`NIC ${nicA.node.key}`, nicA.dev.latencyNs ?? p.nicLatencyNs);
    r.use(`port ${nicA.portKey} tx (MTU ${mtu})`, `port:${nicA.portKey}:tx`, nicA.port.rate, cost, 0);
    for (const step of route) {
      const link = topo.fabric.links[step.link];
      r.use(
        `cable ${link.id} ${step.from} -> ${step.to}`,
        `fab:${link.id}:${step.forward ? 'ab' : 'ba'}`,
        link.rate,
        cost,
        link.latencyNs,
      );
      const sw = topo.fabric.switches.get(step.to);
      if (sw) r.lat(`fabric switch ${sw.id}`, sw.latencyNs ?? p.fabricSwitchLatencyNs);
    }
    r.use(`port ${nicB.portKey} rx`, `port:${nicB.portKey}:rx`, nicB.port.rate, cost, 0);
    r.lat(`NIC ${nicB.node.key}`, nicB.dev.latencyNs ?? p.nicLatencyNs);
    if (!(to.kind === 'ep' && to.node.id === nicB.node.id))
      hostLeg(topo, r, { kind: 'ep', host: to.host, node: nicB.node }, to, opts);
    mode = 'network';
  }
  const uses = r.hops.filter((h) => h.resource).map((h) => ({ resource: h.resource!, cost: h.cost! }));
  const latencyNs = r.hops.reduce((s, h) => s + h.latencyNs, 0);
  return { src, dst, mode, hops: r.hops, uses, capacities: r.caps, latencyNs, notes: r.notes };
}
