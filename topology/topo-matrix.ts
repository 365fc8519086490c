/**
 * `nvidia-smi topo -m` and `nvidia-smi topo -p2p` look-alikes, byte for byte where the real tool
 * has a format (tabs, " X " on the diagonal, legend text), so users' parsers and eyes carry over.
 * Rows and columns: GPUs then NIC functions of one host, each in PCI bus order. The p2p matrix
 * also lists NICs (nvidia-smi shows GPUs only) because GPU<->NIC is what GPUDirect RDMA needs.
 */
import type { Host, PcieNode, Topology } from './model.ts';
import { calcMapTypeAndDist } from './p2pdma.ts';
import { type PathClassOptions, pathClassInHost } from './path-class.ts';
import { endpointsOf } from './pcie-tree.ts';

export const TOPO_LEGEND = [
  '  X    = Self',
  '  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)',
  '  NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node',
  '  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)',
  '  PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)',
  '  PIX  = Connection traversing at most a single PCIe bridge',
  '  NV#  = Connection traversing a bonded set of # NVLinks',
] as const;

export const P2P_LEGEND = [
  '  X    = Self',
  '  OK   = Status Ok',
  '  CNS  = Chipset not supported',
  '  GNS  = GPU not supported',
  '  TNS  = Topology not supported',
  '  NS   = Not supported',
  '  DR   = Disabled by regkey',
  '  U    = Unknown',
] as const;

export type P2pStatus = 'X' | 'OK' | 'CNS' | 'GNS' | 'TNS' | 'NS' | 'DR' | 'U';

export interface MatrixEntry {
  /** GPU0, NIC1, ... */
  readonly label: string;
  readonly node: PcieNode;
  readonly kind: 'gpu' | 'nic';
  /** NICs: OS name for the NIC legend (mlx5_N in bus order unless the file names it). */
  readonly osName?: string;
}

/** The rows/columns of one host's matrix. */
export function matrixEntries(host: Host): MatrixEntry[] {
  const gpus = endpointsOf(host, 'gpu').map((node, i) => ({ label: `GPU${i}`, node, kind: 'gpu' as const }));
  const nics = endpointsOf(host, 'nic').map((node, i) => ({
    label: `NIC${i}`,
    node,
    kind: 'nic' as const,
    osName: node.osName ?? `mlx5_${i}`,
  }));
  return [...gpus, ...nics];
}

/** The -p2p status of `row` reading from `col` (col is the provider, row the client). */
export function p2pStatus(topo: Topology, host: Host, row: PcieNode, col: PcieNode): P2pStatus {
  if (row.id === col.id) return 'X';
  for (const n of [row, col]) {
    const d = host.devices.get(n.device!);
    if (d?.kind === 'gpu' && !d.p2p) return 'GNS';
  }
  const d = calcMapTypeAndDist(topo, col.key, row.key);
  if (d.mapType !== 'NOT_SUPPORTED') return 'OK';
  // One root complex refusing is the chipset; two that may not talk to each other is the topology.
  return row.hostBridge === col.hostBridge ? 'CNS' : 'TNS';
}

function hostsToShow(topo: Topology, hostId?: string): Host[] {
  if (hostId === undefined) return [...topo.hosts.values()];
  const h = topo.hosts.get(hostId);
  return h ? [h] : [];
}

/** A host line only when several hosts are shown, so one host prints exactly like the real tool. */
function banner(shown: readonly Host[], host: Host, out: string[]) {
  if (shown.length > 1) out.push(`Host ${host.id} (${host.hostname}):`, '');
}

function nicLegend(entries: readonly MatrixEntry[], out: string[]) {
  const nics = entries.filter((e) => e.kind === 'nic');
  if (nics.length === 0) return;
  out.push('', 'NIC Legend:', '');
  for (const n of nics) out.push(`  ${n.label}: ${n.osName}`);
}

/** `nvidia-smi topo -m` for each host (or one). */
export function renderTopoMatrix(topo: Topology, opts: PathClassOptions & { host?: string } = {}): string {
  const out: string[] = [];
  const shown = hostsToShow(topo, opts.host);
  for (const host of shown) {
    banner(shown, host, out);
    const entries = matrixEntries(host);
    out.push(
      `\t${[...entries.map((e) => e.label), 'CPU Affinity', 'NUMA Affinity', 'GPU NUMA ID'].join('\t')}`,
    );
    for (const r of entries) {
      const cells: string[] = entries.map((c) => {
        const cls = pathClassInHost(host, r.node, c.node, opts);
        return cls === 'X' ? ' X ' : cls;
      });
      if (r.kind === 'gpu') {
        const numa = host.numa.get(r.node.numa)!;
        const gpu = host.devices.get(r.node.device!);
        const gpuNuma = gpu?.kind === 'gpu' && gpu.numaId !== undefined ? String(gpu.numaId) : 'N/A';
        cells.push(numa.cpulist, String(numa.id), '', gpuNuma);
      }
      out.push(`${r.label}\t${cells.join('\t')}`);
    }
    out.push('', 'Legend:', '', ...TOPO_LEGEND);
    nicLegend(entries, out);
    out.push('');
  }
  return `${out.join('\n')}\n`;
}

/** `nvidia-smi topo -p2p r` for each host (or one), GPUs and NICs. */
export function renderP2pMatrix(topo: Topology, opts: { host?: string } = {}): string {
  const out: string[] = [];
  const shown = hostsToShow(topo, opts.host);
  for (const host of shown) {
    banner(shown, host, out);
    const entries = matrixEntries(host);
    out.push(` \t${entries.map((e) => e.label).join('\t')}\t`);
    for (const r of entries) {
      out.push(` ${r.label}\t${entries.map((c) => p2pStatus(topo, host, r.node, c.node)).join('\t')}\t`);
    }
    out.push('', 'Legend:', '', ...P2P_LEGEND);
    nicLegend(entries, out);
    out.push('');
  }
  return `${out.join('\n')}\n`;
}

/** Machine-readable form of both matrices plus the P2PDMA decisions behind the p2p one. */
export function topoJson(topo: Topology, opts: PathClassOptions & { host?: string } = {}): object {
  return {
    name: topo.name,
    file: topo.file,
    hash: topo.hash,
    hosts: hostsToShow(topo, opts.host).map((host) => {
      const entries = matrixEntries(host);
      const devices = entries.map((e) => {
        const numa = host.numa.get(e.node.numa)!;
        return {
          label: e.label,
          kind: e.kind,
          device: e.node.device,
          endpoint: e.node.id,
          bdf: e.node.bdf,
          ...(e.osName ? { osName: e.osName } : {}),
          cpuAffinity: numa.cpulist,
          numaAffinity: numa.id,
        };
      });
      const matrix: Record<string, Record<string, string>> = {};
      const p2p: Record<string, Record<string, string>> = {};
      const p2pdma: object[] = [];
      for (const r of entries) {
        matrix[r.label] = {};
        p2p[r.label] = {};
        for (const c of entries) {
          matrix[r.label][c.label] = pathClassInHost(host, r.node, c.node, opts);
          p2p[r.label][c.label] = p2pStatus(topo, host, r.node, c.node);
          if (r === c) continue;
          const d = calcMapTypeAndDist(topo, c.node.key, r.node.key);
          p2pdma.push({
            provider: c.label,
            client: r.label,
            mapType: d.mapType,
            distance: d.distance,
            reason: d.reason,
          });
        }
      }
      return { id: host.id, hostname: host.hostname, devices, matrix, p2p, p2pdma };
    }),
  };
}
