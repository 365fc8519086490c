// P2PDMA decisions on the reference trees in testdata/trees. "rule N" = kernel-semantics.md §3.2 rule N.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Rng } from '../common/random.ts';
import { loadTopologyFile, parseTopology } from './load.ts';
import {
  P2pdmaMapCache,
  calcMapTypeAndDist,
  cpuSupportsP2pdma,
  hostBridgeWhitelist,
  p2pdmaAddressing,
  pciP2pdmaDistance,
  pciP2pdmaDistanceMany,
  pciP2pmemFindMany,
} from './p2pdma.ts';

const tree = (name: string) =>
  loadTopologyFile(new URL(`./testdata/trees/${name}.yaml`, import.meta.url).pathname);

const noAcs = tree('switch-no-acs');
const acsAllowed = tree('switch-acs-allowed');
const acsNotAllowed = tree('switch-acs-not-allowed');
const rpAllowed = tree('root-ports-allowed');
const rpNotAllowed = tree('root-ports-not-allowed');
const amd = tree('amd-zen');
const hostBridges = tree('host-bridges');

describe('p2pdma', () => {
  // [tree, provider, client, map type, distance, rule]
  const cases = [
    ['switch-no-acs', noAcs, 'a', 'a', 'BUS_ADDR', 0, 2],
    ['switch-no-acs', noAcs, 'c0', 'c1', 'BUS_ADDR', 2, 3],
    ['switch-no-acs', noAcs, 'a', 'b', 'BUS_ADDR', 4, 3],
    ['switch-no-acs', noAcs, 'a', 'e', 'BUS_ADDR', 6, 3],
    ['switch-no-acs', noAcs, 'a', 'd', 'NOT_SUPPORTED', 6, 4],
    ['switch-acs-allowed', acsAllowed, 'a', 'b', 'THRU_HOST_BRIDGE', 4, 4],
    ['switch-acs-allowed', acsAllowed, 'b', 'a', 'THRU_HOST_BRIDGE', 4, 4],
    ['switch-acs-allowed', acsAllowed, 'b', 'c0', 'BUS_ADDR', 4, 3],
    ['switch-acs-allowed', acsAllowed, 'a', 'd', 'THRU_HOST_BRIDGE', 6, 4],
    ['switch-acs-not-allowed', acsNotAllowed, 'a', 'b', 'NOT_SUPPORTED', 4, 4],
    ['switch-acs-not-allowed', acsNotAllowed, 'b', 'c0', 'NOT_SUPPORTED', 4, 4],
    ['switch-acs-not-allowed', acsNotAllowed, 'c0', 'c1', 'BUS_ADDR', 2, 3],
    ['root-ports-allowed', rpAllowed, 'g00', 'g01', 'THRU_HOST_BRIDGE', 4, 4],
    ['root-ports-not-allowed', rpNotAllowed, 'g00', 'g01', 'NOT_SUPPORTED', 4, 4],
    ['amd-zen', amd, 'zen/g00', 'zen/g01', 'THRU_HOST_BRIDGE', 4, 4],
    ['amd-zen', amd, 'bulldozer/g00', 'bulldozer/g01', 'NOT_SUPPORTED', 4, 4],
    ['host-bridges', hostBridges, 'h0/g00', 'h0/g01', 'THRU_HOST_BRIDGE', 4, 4],
    ['host-bridges', hostBridges, 'h0/g00', 'h0/g10', 'NOT_SUPPORTED', 4, 4],
    ['host-bridges', hostBridges, 'h1/g00', 'h1/g10', 'THRU_HOST_BRIDGE', 4, 4],
  ] as const;
  for (const [name, topo, provider, client, type, distance, rule] of cases) {
    it(`p2pdma - rule ${rule}: ${name} ${provider} -> ${client} is ${type} at distance ${distance}`, () => {
      const d = calcMapTypeAndDist(topo, provider, client);
      expect([d.mapType, d.distance, d.rule]).toEqual([type, distance, rule]);
      expect(pciP2pdmaDistance(topo, provider, client)).toBe(type === 'NOT_SUPPORTED' ? -1 : distance);
    });
  }

  it('p2pdma - rule 3: ACS redirect forces THRU_HOST_BRIDGE under a common switch and names the bridge', () => {
    const d = calcMapTypeAndDist(acsAllowed, 'a', 'b');
    expect(d.commonUpstream).toBe('sw');
    expect(d.acsRedirects).toEqual(['0000:02:00.0']);
    expect(d.warnings).toContain(
      '0000:04:00.0: to disable ACS redirect for this path, add the kernel parameter: pci=disable_acs_redir=0000:02:00.0',
    );
  });

  it('p2pdma - rule 3: the common bridge counts on the provider side only, as the kernel walks it', () => {
    // Egress Control on the switch upstream port: provider a's walk checks it, so a -> b lists it...
    expect(calcMapTypeAndDist(acsNotAllowed, 'a', 'b').acsRedirects).toEqual([
      '0000:02:00.0',
      '0000:01:00.0',
    ]);
    // ...and functions below one downstream port never reach it.
    expect(calcMapTypeAndDist(acsNotAllowed, 'c0', 'c1').acsRedirects).toEqual([]);
  });

  it('p2pdma - rule 4: a host bridge that is not allow-listed refuses with the kernel warnings', () => {
    const d = calcMapTypeAndDist(rpNotAllowed, 'g00', 'g01');
    expect(d.reason).toBe('no common upstream bridge; host bridge not on the P2PDMA allow-list');
    expect(d.warnings).toEqual([
      'hb0: Host bridge not in P2PDMA whitelist: 1b36:0008',
      '0000:02:00.0: cannot be used for peer-to-peer DMA as the client and provider (0000:01:00.0) do not share an upstream bridge or whitelisted host bridge',
    ]);
  });

  it('p2pdma - rule 4: REQ_SAME_HOST_BRIDGE entries allow P2P within one host bridge only', () => {
    const h0 = hostBridges.hosts.get('h0')!;
    expect(hostBridgeWhitelist(h0, 'hb0', 'hb0')).toBe(true);
    expect(hostBridgeWhitelist(h0, 'hb0', 'hb1')).toBe(false);
    expect(hostBridgeWhitelist(hostBridges.hosts.get('h1')!, 'hb0', 'hb1')).toBe(true);
    expect(calcMapTypeAndDist(hostBridges, 'h0/g00', 'h0/g10').reason).toContain('REQ_SAME_HOST_BRIDGE');
  });

  it('p2pdma - rule 4: AMD Zen (family >= 0x17) supports P2P without an allow-list entry', () => {
    expect(cpuSupportsP2pdma(amd.hosts.get('zen')!)).toBe(true);
    expect(cpuSupportsP2pdma(amd.hosts.get('bulldozer')!)).toBe(false);
    expect(calcMapTypeAndDist(amd, 'zen/g00', 'zen/g01').reason).toContain('AMD Zen');
  });

  it('p2pdma - rule 1: a client that is not a PCI device gets -1', () => {
    const client = { kind: 'non-pci', name: 'platform-dma0' } as const;
    const d = calcMapTypeAndDist(noAcs, 'a', client);
    expect([d.mapType, d.distance, d.rule]).toEqual(['NOT_SUPPORTED', -1, 1]);
    expect(d.warnings).toEqual([
      'platform-dma0: cannot be used for peer-to-peer DMA as it is not a PCI device',
    ]);
    expect(pciP2pdmaDistance(noAcs, 'a', client)).toBe(-1);
  });

  it('p2pdma - devices in different hosts share no PCI hierarchy', () => {
    expect(calcMapTypeAndDist(amd, 'zen/g00', 'bulldozer/g00').mapType).toBe('NOT_SUPPORTED');
  });

  it('p2pdma - rule 5: distance_many sums, counts THRU_HOST_BRIDGE, and fails on one bad client', () => {
    expect(pciP2pdmaDistanceMany(acsAllowed, 'b', ['c0', 'a'])).toBe(8);
    expect(pciP2pdmaDistanceMany(noAcs, 'a', ['b', 'd'])).toBe(-1);
    expect(pciP2pdmaDistanceMany(noAcs, 'a', [])).toBe(-1);
  });

  it('p2pdma - rule 6: the map-type cache answers repeats and drops everything when the topology changes', () => {
    const cache = new P2pdmaMapCache();
    cache.get(noAcs, 'a', 'b');
    cache.get(noAcs, 'a', 'b');
    expect([cache.hits, cache.misses]).toEqual([1, 1]);
    // Same tree, host bridge swapped for an allow-listed one: a re-enumeration with a new hash.
    const moved = parseTopology(
      readFileSync(noAcs.file, 'utf8').replace('device: 0x0c00', 'device: 0x2020'),
      'moved.yaml',
    );
    expect(moved.hash).not.toBe(noAcs.hash);
    expect(cache.get(moved, 'a', 'd').mapType).toBe('THRU_HOST_BRIDGE');
    expect(cache.misses).toBe(2);
  });

  it('p2pdma - rule 7: find_many picks the minimal total distance, seeded among ties', () => {
    expect(pciP2pmemFindMany(noAcs, ['e', 'a', 'b'], ['c0'])).toBe('a');
    const pick = (seed: number) => pciP2pmemFindMany(noAcs, ['a', 'b', 'e'], ['c0'], new Rng(seed));
    const picks = new Set([1, 2, 3, 4, 5, 6, 7, 8].map(pick));
    expect(picks).toEqual(new Set(['a', 'b']));
    expect(pick(42)).toBe(pick(42));
    expect(pciP2pmemFindMany(noAcs, ['d'], ['a'])).toBeUndefined();
  });

  it('p2pdma - rule 8: BUS_ADDR uses the bus address, THRU_HOST_BRIDGE an MMIO IOVA, else EINVAL', () => {
    expect(p2pdmaAddressing('BUS_ADDR', 0x4000_0000n, 0x1000n)).toEqual({
      kind: 'bus-addr',
      busAddr: 0x4000_1000n,
    });
    expect(p2pdmaAddressing('THRU_HOST_BRIDGE', 0x4000_0000n)).toEqual({
      kind: 'iova',
      attrs: ['DMA_ATTR_MMIO'],
    });
    expect(p2pdmaAddressing('NOT_SUPPORTED', 0n)).toEqual({ kind: 'invalid', code: 'EINVAL' });
  });

  it('p2pdma - an unknown device name is a caller bug (ENODEV)', () => {
    expect(() => calcMapTypeAndDist(noAcs, 'a', 'nope')).toThrow(expect.objectContaining({ code: 'ENODEV' }));
  });
});
