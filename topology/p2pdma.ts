/**
 * PCI P2PDMA decisions, as drivers/pci/p2pdma.c makes them: can `client` DMA to memory that
 * `provider` exposes, how far is it, and does the client use a PCI bus address or an IOVA?
 * Pure functions over a Topology; exporters use them to decide `peer2peer`, the kernel uses
 * them to map (rule 8). Rule numbers refer to kernel-semantics.md §3.2.
 *
 * Expected "no" is a value: NOT_SUPPORTED, distance -1. Unknown device names throw (ENODEV),
 * because asking about a device that does not exist is a caller bug.
 */
import type { Rng } from '../common/random.ts';
import type { Host, PcieNode, Topology } from './model.ts';
import { hasAcsRedirect, nodeOf, resolveEndpoint, upstreamChain } from './pcie-tree.ts';

/** enum pci_p2pdma_map_type */
export const P2pdmaMapType = {
  UNKNOWN: 'UNKNOWN',
  NOT_SUPPORTED: 'NOT_SUPPORTED',
  BUS_ADDR: 'BUS_ADDR',
  THRU_HOST_BRIDGE: 'THRU_HOST_BRIDGE',
} as const;
export type P2pdmaMapType = (typeof P2pdmaMapType)[keyof typeof P2pdmaMapType];

/** A client that is not (and has no parent that is) a PCI device: a platform device, a CPU. */
export interface NonPciClient {
  readonly kind: 'non-pci';
  readonly name: string;
}
export type P2pdmaClient = string | NonPciClient;

export interface P2pdmaDecision {
  readonly mapType: P2pdmaMapType;
  /** Hops to the first common upstream bridge from both sides, or to both roots; -1 if not computable. */
  readonly distance: number;
  /** The first common upstream bridge, if the two share one. */
  readonly commonUpstream: string | null;
  /** BDFs of redirecting bridges, as the kernel lists them for pci=disable_acs_redir=. */
  readonly acsRedirects: readonly string[];
  /** Which §3.2 rule decided. */
  readonly rule: number;
  /** Why, in one phrase: 'same function', 'common upstream bridge', 'ACS redirect', ... */
  readonly reason: string;
  /** What the kernel would print with verbose set (pci_warn lines). */
  readonly warnings: readonly string[];
}

interface AllowEntry {
  readonly vendor: number;
  readonly device: number;
  readonly reqSameHostBridge: boolean;
}

/** pci_p2pdma_whitelist[]: the host bridges known to route P2P TLPs between root ports. */
export const P2PDMA_HOST_BRIDGE_ALLOW_LIST: readonly AllowEntry[] = [
  // Intel Xeon E5/Core i7
  { vendor: 0x8086, device: 0x3c00, reqSameHostBridge: true },
  { vendor: 0x8086, device: 0x3c01, reqSameHostBridge: true },
  // Intel Xeon E7 v3/Xeon E5 v3/Core i7
  { vendor: 0x8086, device: 0x2f00, reqSameHostBridge: true },
  { vendor: 0x8086, device: 0x2f01, reqSameHostBridge: true },
  // Intel Skylake-E
  { vendor: 0x8086, device: 0x2030, reqSameHostBridge: false },
  { vendor: 0x8086, device: 0x2031, reqSameHostBridge: false },
  { vendor: 0x8086, device: 0x2032, reqSameHostBridge: false },
  { vendor: 0x8086, device: 0x2033, reqSameHostBridge: false },
  { vendor: 0x8086, device: 0x2020, reqSameHostBridge: false },
  { vendor: 0x8086, device: 0x09a2, reqSameHostBridge: false },
];

/** cpu_supports_p2pdma(): any AMD CPU of family Zen (0x17) or newer routes P2P through its root complex. */
export function cpuSupportsP2pdma(host: Host): boolean {
  return host.cpu.vendor === 'amd' && host.cpu.family >= 0x17;
}

/** __host_bridge_whitelist() for one root complex. */
function hostBridgeAllowed(hb: PcieNode, sameHostBridge: boolean): boolean {
  const e = P2PDMA_HOST_BRIDGE_ALLOW_LIST.find(
    (x) => x.vendor === hb.hb?.vendor && x.device === hb.hb?.device,
  );
  if (!e) return false;
  return !(e.reqSameHostBridge && !sameHostBridge);
}

/** host_bridge_whitelist(): both root complexes listed; REQ_SAME_HOST_BRIDGE entries only within one. */
export function hostBridgeWhitelist(host: Host, hbA: string, hbB: string): boolean {
  const a = nodeOf(host, hbA);
  if (hbA === hbB) return hostBridgeAllowed(a, true);
  return hostBridgeAllowed(a, false) && hostBridgeAllowed(nodeOf(host, hbB), false);
}

const hex4 = (n: number | undefined) => (n ?? 0).toString(16).padStart(4, '0');

function refused(rule: number, reason: string, warnings: string[] = []): P2pdmaDecision {
  const mapType = P2pdmaMapType.NOT_SUPPORTED;
  return { mapType, distance: -1, commonUpstream: null, acsRedirects: [], rule, reason, warnings };
}

/**
 * calc_map_type_and_dist(): walk up from the provider; for each of its bridges look for it on the
 * client's chain. Found: a common upstream bridge, BUS_ADDR unless a bridge on either side (the
 * provider side including the common bridge) redirects (rules 2-3). Not found, or redirected:
 * traffic crosses the root complex, allowed iff the CPU or the host bridge allow-list says so (rule 4).
 */
export function calcMapTypeAndDist(topo: Topology, provider: string, client: P2pdmaClient): P2pdmaDecision {
  const p = resolveEndpoint(topo, provider);
  if (typeof client !== 'string') {
    return refused(1, 'client is not a PCI device', [
      `${client.name}: cannot be used for peer-to-peer DMA as it is not a PCI device`,
    ]);
  }
  const c = resolveEndpoint(topo, client);
  if (c.host.id !== p.host.id)
    return refused(1, 'client and provider are in different hosts (no shared PCI hierarchy)');

  const host = p.host;
  const a = upstreamChain(host, p.node.id);
  const b = upstreamChain(host, c.node.id);
  const acs: string[] = [];
  let distA = 0;
  let distB = 0;
  let common: PcieNode | null = null;
  for (const x of a) {
    if (hasAcsRedirect(x)) acs.push(x.bdf!);
    const at = b.findIndex((y) => y.id === x.id);
    if (at >= 0) {
      common = x;
      distB = at;
      break;
    }
    distB = b.length;
    distA++;
  }
  const distance = distA + distB;
  const pname = p.node.bdf!;
  if (common) {
    for (const y of b.slice(0, distB)) if (hasAcsRedirect(y)) acs.push(y.bdf!);
    if (acs.length === 0) {
      const reason = distance === 0 ? 'same function' : 'common upstream bridge';
      return {
        mapType: P2pdmaMapType.BUS_ADDR,
        distance,
        commonUpstream: common.id,
        acsRedirects: [],
        rule: distance === 0 ? 2 : 3,
        reason,
        warnings: [],
      };
    }
  }
  const warnings: string[] = [];
  if (common) {
    warnings.push(`${c.node.bdf}: ACS redirect is set between the client and provider (${pname})`);
    warnings.push(
      `${c.node.bdf}: to disable ACS redirect for this path, add the kernel parameter: pci=disable_acs_redir=${acs.join(';')}`,
    );
  }
  const base = { distance, commonUpstream: common?.id ?? null, acsRedirects: common ? acs : [], rule: 4 };
  const via = common ? 'ACS redirect' : 'no common upstream bridge';
  if (cpuSupportsP2pdma(host)) {
    return {
      ...base,
      mapType: P2pdmaMapType.THRU_HOST_BRIDGE,
      reason: `${via}; AMD Zen root complex routes P2P`,
      warnings,
    };
  }
  const hbA = p.node.hostBridge;
  const hbB = c.node.hostBridge;
  if (hostBridgeWhitelist(host, hbA, hbB)) {
    return {
      ...base,
      mapType: P2pdmaMapType.THRU_HOST_BRIDGE,
      reason: `${via}; host bridge on the P2PDMA allow-list`,
      warnings,
    };
  }
  for (const hb of new Set([hbA, hbB])) {
    const info = nodeOf(host, hb).hb;
    if (!P2PDMA_HOST_BRIDGE_ALLOW_LIST.some((e) => e.vendor === info?.vendor && e.device === info?.device)) {
      warnings.push(
        `${hb}: Host bridge not in P2PDMA whitelist: ${hex4(info?.vendor)}:${hex4(info?.device)}`,
      );
    }
  }
  warnings.push(
    `${c.node.bdf}: cannot be used for peer-to-peer DMA as the client and provider (${pname}) do not share an upstream bridge or whitelisted host bridge`,
  );
  const why =
    hbA !== hbB && hostBridgeWhitelist(host, hbA, hbA) && hostBridgeWhitelist(host, hbB, hbB)
      ? 'host bridge allowed only within itself (REQ_SAME_HOST_BRIDGE)'
      : 'host bridge not on the P2PDMA allow-list';
  return { ...base, mapType: P2pdmaMapType.NOT_SUPPORTED, reason: `${via}; ${why}`, warnings };
}

/** pci_p2pdma_distance(): the distance, or -1 when the client cannot reach the provider (rule 5: THRU_HOST_BRIDGE counts). */
export function pciP2pdmaDistance(topo: Topology, provider: string, client: P2pdmaClient): number {
  return pciP2pdmaDistanceMany(topo, provider, [client]);
}

/** pci_p2pdma_distance_many(): summed distance over all clients; -1 if any is NOT_SUPPORTED or there are none. */
export function pciP2pdmaDistanceMany(
  topo: Topology,
  provider: string,
  clients: readonly P2pdmaClient[],
): number {
  if (clients.length === 0) return -1;
  let total = 0;
  for (const c of clients) {
    const d = calcMapTypeAndDist(topo, provider, c);
    if (d.mapType === P2pdmaMapType.NOT_SUPPORTED) return -1;
    total += d.distance;
  }
  return total;
}

/**
 * pci_p2pmem_find_many(): among providers, one with minimal total distance to all clients,
 * chosen at random among ties (seeded, so runs replay); undefined when none reaches them all.
 */
export function pciP2pmemFindMany(
  topo: Topology,
  providers: readonly string[],
  clients: readonly P2pdmaClient[],
  rng?: Rng,
): string | undefined {
  let best: string[] = [];
  let bestDist = Number.POSITIVE_INFINITY;
  for (const p of providers) {
    const d = pciP2pdmaDistanceMany(topo, p, clients);
    if (d < 0) continue;
    if (d < bestDist) [best, bestDist] = [[p], d];
    else if (d === bestDist) best.push(p);
  }
  if (best.length === 0) return undefined;
  return best.length === 1 || !rng ? best[0] : best[rng.below(best.length)];
}

/**
 * The map-type cache (rule 6): one decision per (provider, client), computed on first use, and
 * dropped whole when the topology changes (a different hash is a re-enumeration).
 */
export class P2pdmaMapCache {
  #hash: string | undefined;
  #map = new Map<string, P2pdmaDecision>();
  hits = 0;
  misses = 0;

  get(topo: Topology, provider: string, client: P2pdmaClient): P2pdmaDecision {
    if (this.#hash !== topo.hash) {
      this.#map.clear();
      this.#hash = topo.hash;
    }
    const key = `${provider}\u0000${typeof client === 'string' ? client : `non-pci:${client.name}`}`;
    const hit = this.#map.get(key);
    if (hit) {
      this.hits++;
      return hit;
    }
    this.misses++;
    const d = calcMapTypeAndDist(topo, provider, client);
    this.#map.set(key, d);
    return d;
  }
}

/** How the importer's device addresses MMIO for one map type (rule 8, dma_buf_phys_vec_to_sgt). */
export type P2pdmaAddressing =
  | { readonly kind: 'bus-addr'; readonly busAddr: bigint }
  | { readonly kind: 'iova'; readonly attrs: readonly ['DMA_ATTR_MMIO'] }
  | { readonly kind: 'invalid'; readonly code: 'EINVAL' };

/**
 * BUS_ADDR: the client uses the bus address (CPU physical + the host bridge's bus offset), no
 * IOVA. THRU_HOST_BRIDGE: map through the DMA API/IOMMU with DMA_ATTR_MMIO. Anything else: EINVAL.
 */
export function p2pdmaAddressing(mapType: P2pdmaMapType, physAddr: bigint, busOffset = 0n): P2pdmaAddressing {
  if (mapType === P2pdmaMapType.BUS_ADDR) return { kind: 'bus-addr', busAddr: physAddr + busOffset };
  if (mapType === P2pdmaMapType.THRU_HOST_BRIDGE) return { kind: 'iova', attrs: ['DMA_ATTR_MMIO'] };
  return { kind: 'invalid', code: 'EINVAL' };
}
