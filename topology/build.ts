/**
 * Whole-file rules and construction of the normalised Topology from a schema-valid file.
 * Each rule reports through `fail(path, expected, got)`, which throws a located TopologyError,
 * so the first broken rule in check order is the one the user sees. Check order: ids, NUMA,
 * parent references, cycles, parent kinds, BDFs, point-to-point links, then (build-fabric.ts)
 * private links and the fabric.
 */
import type { PathSegment } from './errors.ts';
import { buildFabric, buildPrivateLinks } from './build-fabric.ts';
import type { Acs, Device, Host, NumaNode, PcieKind, PcieNode, Topology } from './model.ts';
import type { HostSpec, PcieAttachSpec, PcieNodeSpec, TopologyFile } from './schema.ts';
import { formatCpuList, parseCpuList } from './units.ts';

export interface BuildContext {
  file: string;
  hash: string;
  fail(path: PathSegment[], expected: string, got?: string): never;
}

const DEFAULT_MPS = 256;
const NO_ACS: Acs = { rr: false, cr: false, ec: false };

/** Which parent kinds each kind may hang under: the shape of a real PCIe hierarchy. */
const PARENT_KINDS: Record<Exclude<PcieKind, 'host-bridge'>, readonly PcieKind[]> = {
  'root-port': ['host-bridge'],
  'switch-upstream': ['root-port', 'switch-downstream'],
  'switch-downstream': ['switch-upstream'],
  endpoint: ['root-port', 'switch-downstream'],
};

/** A node before validation of its references: the spec plus where it sits in the file. */
interface RawNode {
  id: string;
  kind: PcieKind;
  parent: string | null;
  path: PathSegment[];
  bdf: string | null;
  spec: PcieNodeSpec | PcieAttachSpec;
  device: string | null;
  pathIndex: number | null;
}

export function buildTopology(spec: TopologyFile, ctx: BuildContext): Topology {
  const hosts = new Map<string, Host>();
  spec.hosts.forEach((h, hi) => {
    if (hosts.has(h.id))
      ctx.fail(['hosts', hi, 'id'], 'expected a host id unique in the file', `"${h.id}" again`);
    hosts.set(h.id, buildHost(h, ['hosts', hi], ctx));
  });
  const fabric = buildFabric(spec, hosts, ctx);
  return {
    name: spec.name,
    description: spec.description,
    file: ctx.file,
    hash: ctx.hash,
    hosts,
    fabric,
    timing: spec.timing,
    spec,
  };
}

function buildHost(h: HostSpec, at: PathSegment[], ctx: BuildContext): Host {
  const { fail } = ctx;
  const numa = buildNuma(h, at, ctx);

  // Collect bridges and device functions into one node table (one id namespace per host).
  const raw = new Map<string, RawNode>();
  const addNode = (n: RawNode) => {
    const prev = raw.get(n.id);
    if (prev) fail([...n.path, 'id'], `expected a PCIe node id unique in host ${h.id}`, `"${n.id}" again`);
    raw.set(n.id, n);
  };
  h.pcie.forEach((p, i) => {
    const parent = p.kind === 'host-bridge' ? null : p.parent;
    const bdf = p.kind === 'host-bridge' ? null : p.bdf;
    addNode({
      id: p.id,
      kind: p.kind,
      parent,
      path: [...at, 'pcie', i],
      bdf,
      spec: p,
      device: null,
      pathIndex: null,
    });
  });
  const deviceIds = new Set<string>();
  h.devices.forEach((d, k) => {
    if (deviceIds.has(d.id))
      fail([...at, 'devices', k, 'id'], `expected a device id unique in host ${h.id}`, `"${d.id}" again`);
    deviceIds.add(d.id);
    d.pcie.forEach((a, m) => {
      const id = a.id ?? (d.pcie.length === 1 ? d.id : `${d.id}.${m}`);
      const path: PathSegment[] = [...at, 'devices', k, 'pcie', m];
      addNode({
        id,
        kind: 'endpoint',
        parent: a.parent,
        path,
        bdf: a.bdf,
        spec: a,
        device: d.id,
        pathIndex: m,
      });
    });
  });
  h.devices.forEach((d, k) => {
    const n = raw.get(d.id);
    if (n && n.device !== d.id) {
      fail(
        [...at, 'devices', k, 'id'],
        'expected a device id that is not also a PCIe bridge id',
        `"${d.id}"`,
      );
    }
  });

  // References, then cycles, then kinds: a cycle is only meaningful once every parent exists.
  for (const n of raw.values()) {
    if (n.parent !== null && !raw.has(n.parent)) {
      fail(
        [...n.path, 'parent'],
        `expected the id of a PCIe bridge in host ${h.id}`,
        `"${n.parent}" (no such node)`,
      );
    }
  }
  for (const n of raw.values()) {
    const seen: string[] = [];
    for (let c: RawNode | undefined = n; c && c.parent !== null; c = raw.get(c.parent)) {
      if (seen.includes(c.id)) {
        const cycle = [...seen.slice(seen.indexOf(c.id)), c.id].join(' -> ');
        fail(
          [...n.path, 'parent'],
          'expected a chain of parents ending at a host-bridge',
          `a cycle ${cycle}`,
        );
      }
      seen.push(c.id);
    }
  }
  for (const n of raw.values()) {
    if (n.kind === 'host-bridge') {
      const hb = n.spec as Extract<PcieNodeSpec, { kind: 'host-bridge' }>;
      if (!numa.has(hb.numa))
        fail([...n.path, 'numa'], `expected a NUMA node id of host ${h.id}`, `${hb.numa}`);
      continue;
    }
    const parent = raw.get(n.parent!)!;
    const allowed = PARENT_KINDS[n.kind];
    if (!allowed.includes(parent.kind)) {
      const what = n.kind === 'endpoint' ? 'a device' : `a ${n.kind}`;
      fail(
        [...n.path, 'parent'],
        `expected a ${allowed.join(' or ')} as parent of ${what}`,
        `${parent.kind} "${parent.id}"`,
      );
    }
  }

  const nodes = finishNodes(h, raw, ctx);
  const devices = buildDevices(h, nodes);
  const privateLinks = buildPrivateLinks(h, at, devices, ctx);
  return {
    id: h.id,
    hostname: h.hostname ?? h.id,
    cpu: h.cpu,
    smp: h.smp ? { bandwidth: h.smp.bandwidth, latencyNs: h.smp.latency } : undefined,
    numa,
    nodes,
    hostBridges: h.pcie.filter((p) => p.kind === 'host-bridge').map((p) => p.id),
    devices,
    privateLinks,
  };
}

function buildNuma(h: HostSpec, at: PathSegment[], { fail }: BuildContext): Map<number, NumaNode> {
  const numa = new Map<number, NumaNode>();
  const owner = new Map<number, number>();
  h.numa.forEach((n, i) => {
    if (numa.has(n.id))
      fail([...at, 'numa', i, 'id'], `expected a NUMA id unique in host ${h.id}`, `${n.id} again`);
    const cpus = parseCpuList(n.cpus);
    if (!cpus) fail([...at, 'numa', i, 'cpus'], 'expected a cpulist with ascending ranges', `"${n.cpus}"`);
    for (const c of cpus!) {
      const o = owner.get(c);
      if (o !== undefined)
        fail(
          [...at, 'numa', i, 'cpus'],
          'expected CPUs not listed by another NUMA node',
          `CPU ${c} (also in node ${o})`,
        );
      owner.set(c, n.id);
    }
    numa.set(n.id, {
      id: n.id,
      cpus: cpus!,
      cpulist: formatCpuList(cpus!),
      memory: n.memory,
      memoryBandwidth: n.memoryBandwidth,
      memoryLatencyNs: n.memoryLatency,
    });
  });
  return numa;
}

interface ParsedBdf {
  domain: number;
  bus: number;
  dev: number;
  fn: number;
}

function parseBdf(s: string, defaultDomain: number): ParsedBdf & { domainGiven: boolean } {
  const parts = s.split(':');
  const domainGiven = parts.length === 3;
  const domain = domainGiven ? Number.parseInt(parts[0], 16) : defaultDomain;
  const bus = Number.parseInt(parts[parts.length - 2], 16);
  const [dev, fn] = parts[parts.length - 1].split('.').map((x) => Number.parseInt(x, 16));
  return { domain, bus, dev, fn, domainGiven };
}

export function formatBdf(b: ParsedBdf): string {
  const hex = (n: number, w: number) => n.toString(16).padStart(w, '0');
  return `${hex(b.domain, 4)}:${hex(b.bus, 2)}:${hex(b.dev, 2)}.${b.fn}`;
}

/** Resolve host bridge, depth and BDFs, check BDF rules and point-to-point links, freeze nodes. */
function finishNodes(h: HostSpec, raw: Map<string, RawNode>, { fail }: BuildContext): Map<string, PcieNode> {
  const top = (n: RawNode): RawNode => (n.parent === null ? n : top(raw.get(n.parent)!));
  const depth = (n: RawNode): number => (n.parent === null ? 0 : 1 + depth(raw.get(n.parent)!));
  const bdfs = new Map<string, ParsedBdf>();
  const owner = new Map<string, string>();
  for (const n of raw.values()) {
    if (n.bdf === null) continue;
    const hb = top(n).spec as Extract<PcieNodeSpec, { kind: 'host-bridge' }>;
    const b = parseBdf(n.bdf, hb.domain);
    if (b.domainGiven && b.domain !== hb.domain) {
      fail(
        [...n.path, 'bdf'],
        `expected PCI domain ${formatBdf({ ...b, domain: hb.domain }).slice(0, 4)} of host bridge ${hb.id}`,
        `"${n.bdf}"`,
      );
    }
    const full = formatBdf(b);
    const prev = owner.get(full);
    if (prev)
      fail([...n.path, 'bdf'], `expected a BDF unique in host ${h.id}`, `${full} (already used by ${prev})`);
    owner.set(full, n.id);
    bdfs.set(n.id, b);
  }
  for (const n of raw.values()) {
    if (n.bdf === null) continue;
    const b = bdfs.get(n.id)!;
    const parent = raw.get(n.parent!)!;
    if (parent.kind === 'host-bridge') {
      const hb = parent.spec as Extract<PcieNodeSpec, { kind: 'host-bridge' }>;
      if (b.bus !== hb.bus)
        fail([...n.path, 'bdf'], `expected bus ${hex2(hb.bus)} (root bus of ${hb.id})`, `bus ${hex2(b.bus)}`);
      continue;
    }
    const pb = bdfs.get(parent.id)!;
    if (b.bus === pb.bus) {
      fail(
        [...n.path, 'bdf'],
        `expected a bus other than ${hex2(pb.bus)} (devices below ${parent.id} sit on its secondary bus)`,
        `bus ${hex2(b.bus)}`,
      );
    }
    // A root port or downstream port ends in one point-to-point link: one device, maybe several functions.
    if (parent.kind !== 'switch-upstream') {
      for (const sib of raw.values()) {
        if (sib === n || sib.parent !== parent.id) continue;
        const sb = bdfs.get(sib.id)!;
        if (sb.bus !== b.bus || sb.dev !== b.dev) {
          fail(
            [...n.path, 'parent'],
            `expected one device (functions of one bus:device) below ${parent.kind} ${parent.id}`,
            `${sib.id} and ${n.id}`,
          );
        }
      }
    }
  }

  const nodes = new Map<string, PcieNode>();
  for (const n of raw.values()) {
    const topNode = top(n);
    const hb = topNode.spec as Extract<PcieNodeSpec, { kind: 'host-bridge' }>;
    const s = n.spec as Partial<PcieAttachSpec> & { latency?: number; vendor?: number };
    const children = [...raw.values()]
      .filter((c) => c.parent === n.id)
      .map((c) => c.id)
      .sort((x, y) => bdfOrder(bdfs.get(x)!, bdfs.get(y)!));
    nodes.set(n.id, {
      key: `${h.id}/${n.id}`,
      id: n.id,
      host: h.id,
      kind: n.kind,
      parent: n.parent,
      children,
      bdf: n.bdf === null ? null : formatBdf(bdfs.get(n.id)!),
      link: s.link ?? null,
      mps: s.mps ?? DEFAULT_MPS,
      acs: s.acs ?? NO_ACS,
      latencyNs: s.latency,
      hostBridge: topNode.id,
      numa: hb.numa,
      depth: depth(n),
      device: n.device,
      pathIndex: n.pathIndex,
      osName: s.name ?? null,
      hb:
        n.kind === 'host-bridge'
          ? {
              vendor: hb.vendor,
              device: hb.device,
              domain: hb.domain,
              bus: hb.bus,
              p2pBandwidth: hb.p2pBandwidth,
            }
          : null,
    });
  }
  return nodes;
}

const hex2 = (n: number) => n.toString(16).padStart(2, '0');
function bdfOrder(a: ParsedBdf, b: ParsedBdf): number {
  return a.domain - b.domain || a.bus - b.bus || a.dev - b.dev || a.fn - b.fn;
}

function buildDevices(h: HostSpec, nodes: Map<string, PcieNode>): Map<string, Device> {
  const devices = new Map<string, Device>();
  for (const d of h.devices) {
    const endpoints = [...nodes.values()]
      .filter((n) => n.device === d.id)
      .sort((a, b) => a.pathIndex! - b.pathIndex!);
    const base = {
      key: `${h.id}/${d.id}`,
      id: d.id,
      host: h.id,
      model: d.model,
      vendor: d.vendor,
      bars: d.bars,
    };
    const eps = endpoints.map((n) => n.id);
    if (d.kind === 'gpu')
      devices.set(d.id, { ...base, kind: 'gpu', endpoints: eps, vram: d.vram, p2p: d.p2p, numaId: d.numaId });
    else if (d.kind === 'nic') {
      devices.set(d.id, {
        ...base,
        kind: 'nic',
        endpoints: eps,
        driver: d.driver,
        ports: d.ports,
        tph: d.tph,
        latencyNs: d.latency,
      });
    } else devices.set(d.id, { ...base, kind: 'vfio', endpoints: eps, tph: d.tph });
  }
  return devices;
}
