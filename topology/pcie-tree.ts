/**
 * Queries over a host's PCIe tree: resolving names, walking upstream the way the kernel's
 * pci_upstream_bridge() does, common ancestors, and the path between two functions. Pure.
 *
 * Names: "h0/gpu0" (host/device or host/endpoint) anywhere; a bare "gpu0" when exactly one host
 * has it. A device name means its first PCIe path; a multipath NIC's other paths are named by
 * endpoint id ("h0/nic0.1").
 */
import { err } from '../common/errno.ts';
import type { Device, Host, PcieNode, Topology } from './model.ts';

export interface Endpoint {
  readonly host: Host;
  readonly node: PcieNode;
  readonly device: Device | undefined;
}

function splitRef(topo: Topology, ref: string, what: string): { host: Host; id: string } {
  const slash = ref.indexOf('/');
  if (slash >= 0) {
    const host = topo.hosts.get(ref.slice(0, slash));
    if (!host) throw err('ENODEV', `${what}: no host "${ref.slice(0, slash)}" in topology ${topo.name}`);
    return { host, id: ref.slice(slash + 1) };
  }
  const owners = [...topo.hosts.values()].filter((h) => h.nodes.has(ref) || h.devices.has(ref));
  if (owners.length === 1) return { host: owners[0], id: ref };
  if (owners.length === 0)
    throw err('ENODEV', `${what}: no device or PCIe node "${ref}" in topology ${topo.name}`);
  throw err(
    'EINVAL',
    `${what}: "${ref}" exists on several hosts (${owners.map((h) => h.id).join(', ')}); write host/${ref}`,
  );
}

/** The PCIe function named by `ref`. Throws ENODEV for unknown names (a broken contract). */
export function resolveEndpoint(topo: Topology, ref: string): Endpoint {
  const { host, id } = splitRef(topo, ref, 'resolveEndpoint');
  const dev = host.devices.get(id);
  const node = dev ? host.nodes.get(dev.endpoints[0]) : host.nodes.get(id);
  if (!node) throw err('ENODEV', `resolveEndpoint: no device or PCIe node "${id}" on host ${host.id}`);
  return { host, node, device: node.device ? host.devices.get(node.device) : undefined };
}

/** The device named by `ref` (a device id or one of its endpoint ids). */
export function resolveDevice(topo: Topology, ref: string): { host: Host; device: Device } {
  const { host, id } = splitRef(topo, ref, 'resolveDevice');
  const device = host.devices.get(id) ?? host.devices.get(host.nodes.get(id)?.device ?? '');
  if (!device) throw err('ENODEV', `resolveDevice: no device "${id}" on host ${host.id}`);
  return { host, device };
}

export function nodeOf(host: Host, id: string): PcieNode {
  const n = host.nodes.get(id);
  if (!n) throw err('ENODEV', `no PCIe node "${id}" on host ${host.id}`);
  return n;
}

/**
 * The node and its upstream bridges, stopping at the root port: exactly the chain
 * pci_upstream_bridge() walks (the host bridge is not a PCI function, so it is not in it).
 */
export function upstreamChain(host: Host, id: string): PcieNode[] {
  const chain: PcieNode[] = [];
  for (let n: PcieNode | undefined = nodeOf(host, id); n && n.kind !== 'host-bridge'; ) {
    chain.push(n);
    n = n.parent === null ? undefined : host.nodes.get(n.parent);
  }
  return chain;
}

/** The node and all its ancestors up to and including its host bridge. */
export function ancestors(host: Host, id: string): PcieNode[] {
  const out: PcieNode[] = [];
  for (
    let n: PcieNode | undefined = nodeOf(host, id);
    n;
    n = n.parent === null ? undefined : host.nodes.get(n.parent)
  ) {
    out.push(n);
  }
  return out;
}

/** Lowest common ancestor (a node itself counts); null when the two sit under different host bridges. */
export function lowestCommonAncestor(host: Host, a: string, b: string): PcieNode | null {
  const up = new Set(ancestors(host, b).map((n) => n.id));
  return ancestors(host, a).find((n) => up.has(n.id)) ?? null;
}

export interface TreePath {
  /** From `a` (inclusive) up to the turning point (exclusive). */
  readonly up: readonly PcieNode[];
  /** Where traffic turns; null when it leaves the tree through the host bridges. */
  readonly top: PcieNode | null;
  /** From below the turning point down to `b` (inclusive). */
  readonly down: readonly PcieNode[];
}

/** The shortest tree path between two nodes of one host. Through two host bridges, top is null. */
export function treePath(host: Host, a: string, b: string): TreePath {
  const lca = lowestCommonAncestor(host, a, b);
  const ua = ancestors(host, a);
  const ub = ancestors(host, b);
  if (!lca) return { up: ua, top: null, down: ub.reverse() };
  return { up: ua.slice(0, ua.indexOf(lca)), top: lca, down: ub.slice(0, ub.indexOf(lca)).reverse() };
}

/** Endpoints of the host, optionally of one device kind, in BDF order (how nvidia-smi numbers GPUs). */
export function endpointsOf(host: Host, kind?: Device['kind']): PcieNode[] {
  return [...host.nodes.values()]
    .filter((n) => n.kind === 'endpoint' && (!kind || host.devices.get(n.device!)?.kind === kind))
    .sort((x, y) => (x.bdf! < y.bdf! ? -1 : x.bdf! > y.bdf! ? 1 : 0));
}

/** The switch a port belongs to (its upstream port id), or the node itself for anything else. */
export function bridgeUnit(host: Host, n: PcieNode): string {
  return n.kind === 'switch-downstream' && n.parent !== null ? nodeOf(host, n.parent).id : n.id;
}

/** True when ACS control on this function redirects peer traffic upstream (RR, CR or EC set). */
export function hasAcsRedirect(n: PcieNode): boolean {
  return n.acs.rr || n.acs.cr || n.acs.ec;
}
