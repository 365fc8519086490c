import { describe, expect, it } from 'vitest';
import { loadTopologyFile, parseTopology } from './load.ts';
import { P2P_LEGEND, renderP2pMatrix, renderTopoMatrix, TOPO_LEGEND, topoJson } from './topo-matrix.ts';

const load = (p: string) => loadTopologyFile(`topology/${p}.yaml`);

const SINGLE_HOST = [
  '\tGPU0\tGPU1\tNIC0\tNIC1\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID',
  'GPU0\t X \tPIX\tPIX\tPIX\t0-31\t0\t\tN/A',
  'GPU1\tPIX\t X \tPIX\tPIX\t0-31\t0\t\tN/A',
  'NIC0\tPIX\tPIX\t X \tPIX',
  'NIC1\tPIX\tPIX\tPIX\t X ',
  '',
  'Legend:',
  '',
  '  X    = Self',
  '  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)',
  '  NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node',
  '  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)',
  '  PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)',
  '  PIX  = Connection traversing at most a single PCIe bridge',
  '  NV#  = Connection traversing a bonded set of # NVLinks',
  '',
  'NIC Legend:',
  '',
  '  NIC0: mlx5_0',
  '  NIC1: mlx5_1',
  '',
  '',
].join('\n');

describe('topo matrix', () => {
  it('topo matrix - single host prints exactly like nvidia-smi topo -m', () => {
    expect(renderTopoMatrix(load('examples/single-host'))).toBe(SINGLE_HOST);
  });

  it('topo matrix - the DGX-like host shows NV18, PIX to its own NIC, NODE and SYS to the others', () => {
    const lines = renderTopoMatrix(load('examples/dgx-like')).split('\n');
    expect(lines[1]).toBe(
      `GPU0\t X \t${Array(7).fill('NV18').join('\t')}\tPIX\tNODE\tSYS\tSYS\t0-55,112-167\t0\t\tN/A`,
    );
    expect(lines[8]).toBe(
      `GPU7\t${Array(7).fill('NV18').join('\t')}\t X \tSYS\tSYS\tNODE\tPIX\t56-111,168-223\t1\t\tN/A`,
    );
    expect(lines[9]).toBe('NIC0\tPIX\tPIX\tNODE\tNODE\tSYS\tSYS\tSYS\tSYS\t X \tNODE\tSYS\tSYS');
  });

  it("topo matrix - the legends are the real tool's text", () => {
    expect(TOPO_LEGEND).toHaveLength(7);
    expect(P2P_LEGEND).toContain('  TNS  = Topology not supported');
  });

  it('topo matrix - several hosts get one matrix each under a host line; --host picks one', () => {
    const t = load('examples/two-hosts');
    const all = renderTopoMatrix(t);
    expect(all.startsWith('Host h0 (node0):\n\n\tGPU0\tGPU1\tNIC0\tNIC1\t')).toBe(true);
    expect(all).toContain('Host h1 (node1):');
    expect(renderTopoMatrix(t, { host: 'h1' })).not.toContain('Host h0');
  });

  it('topo matrix - p2p marks OK, CNS (host bridge refuses) and TNS (host bridges may not talk)', () => {
    const cns = renderP2pMatrix(load('testdata/trees/switch-no-acs')).split('\n');
    expect(cns[0]).toBe(' \tGPU0\tGPU1\tGPU2\tGPU3\tNIC0\tNIC1\t');
    expect(cns[1]).toBe(' GPU0\tX\tOK\tOK\tCNS\tOK\tOK\t');
    const tns = renderP2pMatrix(load('testdata/trees/host-bridges'), { host: 'h0' }).split('\n');
    expect(tns[1]).toBe(' GPU0\tX\tOK\tTNS\t');
  });

  it('topo matrix - p2p marks GNS for a GPU whose driver refuses P2P', () => {
    const text = `version: 1
name: gns
hosts:
  - id: h0
    cpu: {vendor: amd, family: 0x19}
    numa: [{id: 0, cpus: 0-7, memory: 8GiB}]
    pcie:
      - {id: hb0, kind: host-bridge, numa: 0, vendor: 0x1022, device: 0x14a4}
      - {id: rp0, kind: root-port, parent: hb0, bdf: 00:01.0}
      - {id: rp1, kind: root-port, parent: hb0, bdf: 00:02.0}
    devices:
      - {id: g0, kind: gpu, vram: 8GiB, p2p: false, pcie: {parent: rp0, bdf: 01:00.0, link: {gen: 4, width: 16}}}
      - {id: g1, kind: gpu, vram: 8GiB, pcie: {parent: rp1, bdf: 02:00.0, link: {gen: 4, width: 16}}}
`;
    expect(renderP2pMatrix(parseTopology(text)).split('\n')[1]).toBe(' GPU0\tX\tGNS\t');
  });

  it('topo matrix - JSON carries both matrices and the P2PDMA decisions behind them', () => {
    const j = topoJson(load('examples/two-hosts'), { host: 'h1' }) as {
      hosts: {
        devices: { label: string; bdf: string }[];
        matrix: Record<string, Record<string, string>>;
        p2pdma: { provider: string; client: string; mapType: string }[];
      }[];
    };
    const h1 = j.hosts[0];
    expect(h1.devices.map((d) => d.label)).toEqual(['GPU0', 'GPU1', 'NIC0', 'NIC1']);
    expect(h1.matrix.GPU0.NIC0).toBe('PIX');
    expect(h1.p2pdma.find((d) => d.provider === 'GPU0' && d.client === 'NIC0')!.mapType).toBe(
      'THRU_HOST_BRIDGE',
    );
    expect(JSON.parse(JSON.stringify(j))).toEqual(j);
  });
});
