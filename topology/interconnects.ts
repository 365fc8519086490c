/**
 * The five built-in interconnects of the negotiation (the list Jason Gunthorpe gave on
 * dri-devel, Sept 2025), their match() rules, offer builders, and the default quality estimate.
 *
 *   vram-private  VRAM offset over a private GPU link: both GPUs in one NVLink/xGMI group
 *   dma-addr      dma_addr_t for the importer's struct device (the SGT type). A P2P entry needs
 *                 an importer that accepts P2P and a P2PDMA path (not NOT_SUPPORTED); a plain
 *                 entry always matches and means the exporter places the buffer in system memory
 *   iova-private  an IOVA in a private interconnect's address space: same domain name
 *   pci-bar       a slice of a PCI BAR: not revoked, and the importer's device (if any) reaches it
 *   phys-addr     a raw phys_addr_t range (VFIO -> iommufd/KVM): not revoked, exactly one range
 *
 * A refusal the other entries may still satisfy is EOPNOTSUPP; a revoked exporter is ENODEV,
 * which aborts the negotiation (§5.4 rule 10). Missing required fields throw EINVAL.
 */
import { err } from '../common/errno.ts';
import type { Topology } from './model.ts';
import type {
  Chosen,
  MappingType,
  MatchContext,
  MatchData,
  MatchOutcome,
  Offer,
  QualityFn,
} from './negotiate.ts';
import { resolveEndpoint } from './pcie-tree.ts';
import { modelTransfer, type TransferModel } from './timing.ts';

export const InterconnectType = {
  VRAM_PRIVATE: 'vram-private',
  DMA_ADDR: 'dma-addr',
  IOVA_PRIVATE: 'iova-private',
  PCI_BAR: 'pci-bar',
  PHYS_ADDR: 'phys-addr',
} as const;
export type InterconnectType = (typeof InterconnectType)[keyof typeof InterconnectType];

/** Quality of result: what the timing model says a reference transfer over this choice costs. */
export interface Quality {
  /** Payload bytes/s of the slowest leg. */
  readonly bandwidth: number;
  readonly latencyNs: number;
  /** Hops on the modelled route (links, switches, root complexes, ...). */
  readonly hops: number;
  /** latency + referenceBytes / bandwidth: lower is better. */
  readonly modelledNs: number;
}

function field(o: Offer, name: string, kind: 'string' | 'number' | 'boolean', optional = false): unknown {
  const v = o[name];
  if (v === undefined && optional) return undefined;
  if (typeof v !== kind) throw err('EINVAL', `negotiate: ${o.type} offer needs ${name} (${kind})`);
  return v;
}
const str = (o: Offer, name: string) => field(o, name, 'string') as string;
const optStr = (o: Offer, name: string) => field(o, name, 'string', true) as string | undefined;

const skip = (reason: string): MatchOutcome => ({ ok: false, code: 'EOPNOTSUPP', reason });

const vramPrivate: MappingType = {
  name: InterconnectType.VRAM_PRIVATE,
  match(exp, imp, ctx) {
    const a = str(exp, 'device');
    const b = str(imp, 'device');
    if (!ctx.topology) {
      const la = optStr(exp, 'link');
      return la !== undefined && la === optStr(imp, 'link')
        ? { ok: true, data: { link: la } }
        : skip('no shared private link');
    }
    const ea = resolveEndpoint(ctx.topology, a);
    const eb = resolveEndpoint(ctx.topology, b);
    const link =
      ea.host.id === eb.host.id &&
      ea.host.privateLinks.find(
        (l) => l.members.includes(ea.node.device!) && l.members.includes(eb.node.device!),
      );
    if (!link) return skip(`no private link between ${a} and ${b}`);
    const want = optStr(exp, 'link');
    if (want !== undefined && want !== link.id)
      return skip(`exporter offers link ${want}, the devices share ${link.id}`);
    return { ok: true, data: { link: link.key, exporterDevice: a, importerDevice: b } };
  },
};

const dmaAddr: MappingType = {
  name: InterconnectType.DMA_ADDR,
  match(exp, imp, ctx) {
    const dev = str(imp, 'device');
    const accepts = field(imp, 'acceptsP2p', 'boolean') as boolean;
    if (!(field(exp, 'p2p', 'boolean') as boolean)) return { ok: true, data: { dmaDevice: dev, p2p: false } };
    const provider = str(exp, 'provider');
    if (!accepts) return skip(`importer ${dev} does not accept P2P`);
    const d = ctx.p2pdma(provider, dev);
    if (d.mapType === 'NOT_SUPPORTED') return skip(`P2PDMA ${provider} -> ${dev}: ${d.reason}`);
    const addressing = d.mapType === 'BUS_ADDR' ? 'bus-addr' : 'iova';
    return {
      ok: true,
      data: { dmaDevice: dev, p2p: true, provider, mapType: d.mapType, distance: d.distance, addressing },
    };
  },
  systemPlacement: (_e, _i, data) => data.p2p === false,
};

const iovaPrivate: MappingType = {
  name: InterconnectType.IOVA_PRIVATE,
  match(exp, imp) {
    const a = str(exp, 'domain');
    const b = str(imp, 'domain');
    return a === b ? { ok: true, data: { domain: a } } : skip(`IOVA domains differ (${a} vs ${b})`);
  },
};

const pciBar: MappingType = {
  name: InterconnectType.PCI_BAR,
  match(exp, imp, ctx) {
    const provider = str(exp, 'provider');
    const bar = field(exp, 'bar', 'number') as number;
    if (exp.revoked === true)
      return { ok: false, code: 'ENODEV', reason: `${provider} BAR ${bar} is revoked` };
    const dev = optStr(imp, 'device');
    if (dev === undefined) return { ok: true, data: { provider, bar } };
    const d = ctx.p2pdma(provider, dev);
    if (d.mapType === 'NOT_SUPPORTED') return skip(`P2PDMA ${provider} -> ${dev}: ${d.reason}`);
    const addressing = d.mapType === 'BUS_ADDR' ? 'bus-addr' : 'iova';
    return {
      ok: true,
      data: { provider, bar, dmaDevice: dev, mapType: d.mapType, distance: d.distance, addressing },
    };
  },
};

const physAddr: MappingType = {
  name: InterconnectType.PHYS_ADDR,
  match(exp) {
    if (exp.revoked === true) return { ok: false, code: 'ENODEV', reason: 'exporter is revoked' };
    const ranges = field(exp, 'ranges', 'number') as number;
    return ranges === 1
      ? { ok: true, data: { ranges } }
      : skip(`phys-addr needs exactly one range, exporter has ${ranges}`);
  },
};

export const BUILTIN_TYPES: ReadonlyMap<string, MappingType> = new Map(
  [vramPrivate, dmaAddr, iovaPrivate, pciBar, physAddr].map((t) => [t.name, t]),
);

/**
 * What a GPU exporter offers, as xe does on the branch: a P2P dma-addr entry for its BAR, then
 * a plain entry (the exporter migrates to system memory when that one is chosen). With a
 * private link, a vram-private entry first.
 */
export function gpuExporterOffers(
  provider: string,
  opts: { privateLink?: boolean; p2p?: boolean } = {},
): Offer[] {
  const out: Offer[] = [];
  if (opts.privateLink) out.push({ type: 'vram-private', device: provider, label: `VRAM of ${provider}` });
  if (opts.p2p !== false) out.push({ type: 'dma-addr', p2p: true, provider, label: `P2P from ${provider}` });
  out.push({ type: 'dma-addr', p2p: false, device: provider, label: 'system memory' });
  return out;
}

/**
 * A dma-addr importer entry per PCIe path of `device`: a multipath NIC offers one per function,
 * in path order, so the negotiation can pick the path that reaches the exporter.
 */
export function importerDmaAddrOffers(
  topo: Topology,
  device: string,
  opts: { acceptsP2p: boolean },
): Offer[] {
  const { host, device: dev } = resolveDevice(topo, device);
  return dev.endpoints.map((ep) => {
    const node = host.nodes.get(ep)!;
    return {
      type: 'dma-addr',
      device: node.key,
      acceptsP2p: opts.acceptsP2p,
      label: node.osName ?? node.key,
    };
  });
}

function resolveDevice(topo: Topology, ref: string) {
  const e = resolveEndpoint(topo, ref);
  if (!e.device) throw err('EINVAL', `negotiate: "${ref}" is not a device`);
  return { host: e.host, device: e.device };
}

/**
 * Christian König's model (§5.5 scenario 4): once an active attachment had to use system memory,
 * the exporter offers later importers only entries that keep the buffer there.
 */
export function reduceExporterOffers(offers: readonly Offer[], active: readonly Chosen[]): Offer[] {
  if (!active.some((c) => c.placement === 'system')) return [...offers];
  return offers.filter((o) => o.type === 'dma-addr' && o.p2p === false);
}

/** Legs a chosen pair would move data over, as timing-model routes. */
function legs(
  topo: Topology,
  exp: Offer,
  imp: Offer,
  data: MatchData,
): { src: string; dst: string; via?: 'pcie' }[] | undefined {
  const dev = (o: Offer, k: string) => (typeof o[k] === 'string' ? (o[k] as string) : undefined);
  switch (exp.type) {
    case 'vram-private':
      return [{ src: dev(exp, 'device')!, dst: dev(imp, 'device')! }];
    case 'dma-addr': {
      if (data.p2p) return [{ src: String(data.provider), dst: String(data.dmaDevice), via: 'pcie' }];
      const owner = dev(exp, 'device');
      const mem =
        dev(exp, 'memory') ?? (owner ? memoryOf(topo, owner) : memoryOf(topo, String(data.dmaDevice)));
      const toImporter = { src: mem, dst: String(data.dmaDevice) };
      return owner ? [{ src: owner, dst: mem }, toImporter] : [toImporter];
    }
    case 'pci-bar':
    case 'phys-addr':
    case 'iova-private': {
      const src = dev(exp, 'provider') ?? dev(exp, 'device');
      const dst = dev(imp, 'device');
      return src && dst ? [{ src, dst, via: 'pcie' }] : undefined;
    }
    default:
      return undefined;
  }
}

function memoryOf(topo: Topology, ref: string): string {
  const e = resolveEndpoint(topo, ref);
  return `${e.host.id}/numa${e.node.numa}`;
}

/** Quality from the timing model: the legs run pipelined, so the slowest sets the rate and latencies add. */
export function defaultQuality(topo: Topology | undefined, referenceBytes: number): QualityFn {
  return (exp, imp, data, _ctx: MatchContext) => {
    if (!topo) return undefined;
    const route = legs(topo, exp, imp, data);
    if (!route) return undefined;
    const models: TransferModel[] = route.map((l) =>
      modelTransfer(topo, l.src, l.dst, referenceBytes, { via: l.via }),
    );
    let bandwidth = Infinity;
    let latencyNs = 0;
    let hops = 0;
    for (const m of models) {
      if (!m.ok) return undefined;
      bandwidth = Math.min(bandwidth, m.rate);
      latencyNs += m.latencyNs;
      hops += m.path.hops.length;
    }
    return { bandwidth, latencyNs, hops, modelledNs: latencyNs + (referenceBytes / bandwidth) * 1e9 };
  };
}
