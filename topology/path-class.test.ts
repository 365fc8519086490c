import { describe, expect, it } from 'vitest';
import { loadTopologyFile } from './load.ts';
import { type PathClass, pathClass, pathClassRank } from './path-class.ts';

const load = (p: string) => loadTopologyFile(`topology/${p}.yaml`);
const noAcs = load('testdata/trees/switch-no-acs');
const acs = load('testdata/trees/switch-acs-allowed');
const hostBridges = load('testdata/trees/host-bridges');
const dgx = load('examples/dgx-like');
const twoHosts = load('examples/two-hosts');

describe('path class', () => {
  // [topology, a, b, class]; numbers name the rule in path-class.ts.
  const cases: [string, ReturnType<typeof load>, string, string, PathClass][] = [
    ['1 same function', noAcs, 'a', 'a', 'X'],
    ['3 two ports of one switch', noAcs, 'a', 'b', 'PIX'],
    ['3 two functions of one device', noAcs, 'c0', 'c1', 'PIX'],
    ['4 through a nested switch', noAcs, 'a', 'e', 'PXB'],
    ['5 two root ports of one host bridge', noAcs, 'a', 'd', 'PHB'],
    ['6 two host bridges of one NUMA node', hostBridges, 'h0/g00', 'h0/g10', 'NODE'],
    ['7 two NUMA nodes', hostBridges, 'h1/g00', 'h1/g10', 'SYS'],
    ['2 NVLink group', dgx, 'gpu0', 'gpu7', 'NV18'],
    ['3 GPU and NIC on one switch', dgx, 'gpu1', 'nic0', 'PIX'],
    ['6 GPU and NIC on another root complex of the socket', dgx, 'gpu0', 'nic1', 'NODE'],
    ['7 GPU and NIC on the other socket', dgx, 'gpu0', 'nic3', 'SYS'],
    ['7 multipath NIC paths on two sockets', twoHosts, 'h0/nic0.0', 'h0/nic0.1', 'SYS'],
    ['8 different hosts', twoHosts, 'h0/gpu0', 'h1/gpu0', 'NET'],
  ];
  for (const [what, topo, a, b, cls] of cases) {
    it(`path class - rule ${what}: ${topo.name} ${a} ~ ${b} is ${cls}`, () => {
      expect(pathClass(topo, a, b)).toBe(cls);
      expect(pathClass(topo, b, a)).toBe(cls);
    });
  }

  it('path class - pcieOnly looks through NVLink to the PCIe wiring', () => {
    expect(pathClass(dgx, 'gpu0', 'gpu1', { pcieOnly: true })).toBe('PIX');
    expect(pathClass(dgx, 'gpu0', 'gpu2', { pcieOnly: true })).toBe('NODE');
    expect(pathClass(dgx, 'gpu0', 'gpu4', { pcieOnly: true })).toBe('SYS');
  });

  it('path class - ACS changes reachability, not the class', () => {
    expect(pathClass(acs, 'a', 'b')).toBe('PIX');
  });

  it('path class - ranks order classes from closest to farthest', () => {
    const order: PathClass[] = ['X', 'NV12', 'PIX', 'PXB', 'PHB', 'NODE', 'SYS', 'NET'];
    expect([...order].reverse().sort((x, y) => pathClassRank(x) - pathClassRank(y))).toEqual(order);
  });
});
