/**
 * nvidia-smi / xpu-smi path classes (X, NV#, PIX, PXB, PHB, NODE, SYS) derived from common
 * ancestors in the PCIe tree, so the answer depends only on the topology file:
 *
 *   1. X     the same PCI function.
 *   2. NV#   both GPUs in one NVLink group (# = bonded links per GPU), unless pcieOnly.
 *   3. PIX   the lowest common ancestor is a PCIe bridge and the path crosses at most one bridge,
 *            counting a switch (upstream port plus its downstream ports) as one bridge.
 *   4. PXB   the lowest common ancestor is a PCIe bridge and the path crosses several bridges.
 *   5. PHB   the only common ancestor is the host bridge.
 *   6. NODE  different host bridges of one NUMA node.
 *   7. SYS   different NUMA nodes.
 *   8. NET   different hosts (not an nvidia-smi class; never printed in the matrix).
 *
 * ACS does not change the class: nvidia-smi reports the wiring, the p2p matrix reports reachability.
 */
import type { Host, PcieNode, Topology } from './model.ts';
import { bridgeUnit, resolveEndpoint, treePath } from './pcie-tree.ts';

export type PathClass = 'X' | 'PIX' | 'PXB' | 'PHB' | 'NODE' | 'SYS' | 'NET' | `NV${number}`;

export interface PathClassOptions {
  /** Ignore NVLink: classify the PCIe path only. */
  readonly pcieOnly?: boolean;
}

/** Class of the path between two functions (device or endpoint names). */
export function pathClass(topo: Topology, a: string, b: string, opts: PathClassOptions = {}): PathClass {
  const ea = resolveEndpoint(topo, a);
  const eb = resolveEndpoint(topo, b);
  if (ea.host.id !== eb.host.id) return 'NET';
  return pathClassInHost(ea.host, ea.node, eb.node, opts);
}

export function pathClassInHost(
  host: Host,
  a: PcieNode,
  b: PcieNode,
  opts: PathClassOptions = {},
): PathClass {
  if (a.id === b.id) return 'X';
  if (!opts.pcieOnly && a.device && b.device && a.device !== b.device) {
    const link = host.privateLinks.find(
      (l) => l.kind === 'nvlink' && l.members.includes(a.device!) && l.members.includes(b.device!),
    );
    if (link) return `NV${link.links}`;
  }
  const path = treePath(host, a.id, b.id);
  if (path.top === null) {
    if (a.hostBridge === b.hostBridge) return 'PHB';
    return a.numa === b.numa ? 'NODE' : 'SYS';
  }
  if (path.top.kind === 'host-bridge') return 'PHB';
  const interior = [...path.up.slice(1), path.top, ...path.down.slice(0, -1)].filter(
    (n) => n.kind !== 'endpoint',
  );
  const units = new Set(interior.map((n) => bridgeUnit(host, n)));
  return units.size <= 1 ? 'PIX' : 'PXB';
}

const RANK: Record<string, number> = { X: 0, PIX: 2, PXB: 3, PHB: 4, NODE: 5, SYS: 6, NET: 7 };

/** Order classes best (closest) first: X < NV# < PIX < PXB < PHB < NODE < SYS < NET. */
export function pathClassRank(c: PathClass): number {
  return c.startsWith('NV') ? 1 : RANK[c];
}
