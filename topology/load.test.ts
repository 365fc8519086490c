import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EmuError } from '../common/errno.ts';
import { TopologyError } from './errors.ts';
import { loadTopologyFile, parseTopology } from './load.ts';
import { formatCpuList, parseCpuList, parseDuration, parseRate, parseSize } from './units.ts';

const BAD_DIR = 'topology/testdata/bad';
const EXAMPLES = ['single-host', 'dgx-like', 'two-hosts', 'leaf-spine', 'phb-host'];

// [fixture, line, column, field path, start of "expected ..."]
const BAD: [string, number, number, string, string][] = [
  ['bad-bdf', 21, 39, 'hosts[0].devices[0].pcie.bdf', 'expected a PCI address [domain:]bus:device.function'],
  ['bad-cable-end', 34, 12, 'fabric.links[0].a', 'expected a cable end: a fabric switch id or host/nic:port'],
  ['bad-rate', 26, 36, 'hosts[0].devices[1].ports[0].rate', 'expected a rate'],
  ['bad-size', 20, 17, 'hosts[0].devices[0].vram', 'expected a size'],
  ['cpus-overlap', 9, 24, 'hosts[0].numa[1].cpus', 'expected CPUs not listed by another NUMA node'],
  ['cycle', 13, 50, 'hosts[0].pcie[3].parent', 'expected a chain of parents ending at a host-bridge'],
  ['dangling-fabric-link', 34, 26, 'fabric.links[0].b', 'expected a fabric switch id or host/nic:port'],
  ['dangling-parent', 13, 50, 'hosts[0].pcie[3].parent', 'expected the id of a PCIe bridge in host h0'],
  ['duplicate-bdf', 27, 39, 'hosts[0].devices[1].pcie.bdf', 'expected a BDF unique in host h0'],
  ['duplicate-id', 12, 15, 'hosts[0].pcie[2].id', 'expected a PCIe node id unique in host h0'],
  ['duplicate-yaml-key', 4, 1, '', 'expected valid YAML (Map keys must be unique)'],
  ['empty', 1, 1, '', 'expected a mapping with version, name and hosts'],
  ['fabric-port-missing', 34, 12, 'fabric.links[0].a', 'expected a port of h0/nic0 (1)'],
  ['gen-out-of-range', 13, 82, 'hosts[0].pcie[3].link.gen', 'expected one of 1, 2, 3, 4, 5, 6'],
  ['host-bridge-numa', 10, 45, 'hosts[0].pcie[0].numa', 'expected a NUMA node id of host h0'],
  ['missing-hosts', 2, 1, 'hosts', 'expected a list'],
  ['mps-invalid', 21, 82, 'hosts[0].devices[0].pcie.mps', 'expected one of 128, 256, 512, 1024, 2048, 4096'],
  ['negative-memory', 8, 37, 'hosts[0].numa[0].memory', 'expected a size'],
  ['not-a-mapping', 2, 1, '', 'expected a mapping with version, name and hosts'],
  ['port-cabled-twice', 35, 12, 'fabric.links[1].a', 'expected each NIC port on one cable'],
  ['private-link-member', 30, 80, 'hosts[0].privateLinks[0].members[1]', 'expected a GPU'],
  ['root-port-wrong-bus', 12, 55, 'hosts[0].pcie[2].bdf', 'expected bus 00 (root bus of hb0)'],
  [
    'two-devices-one-link',
    27,
    27,
    'hosts[0].devices[1].pcie.parent',
    'expected one device (functions of one bus:device)',
  ],
  ['unknown-device-kind', 19, 17, 'hosts[0].devices[0].kind', 'expected one of "gpu", "nic", "vfio"'],
  ['unknown-field', 21, 11, 'hosts[0].devices[0].colour', 'expected only known fields here'],
  ['unknown-pcie-kind', 15, 28, 'hosts[0].pcie[5].kind', 'expected one of "host-bridge", "root-port"'],
  [
    'width-out-of-range',
    21,
    71,
    'hosts[0].devices[0].pcie.link.width',
    'expected one of 1, 2, 4, 8, 12, 16, 32',
  ],
  [
    'wrong-parent-kind',
    17,
    61,
    'hosts[0].devices[0].pcie.parent',
    'expected a root-port or switch-downstream as parent',
  ],
  ['wrong-type', 8, 15, 'hosts[0].numa[0].id', 'expected a number'],
  ['wrong-version', 2, 10, 'version', 'expected 1'],
  ['yaml-syntax', 13, 7, '', 'expected valid YAML'],
];

function loadError(file: string): TopologyError {
  try {
    loadTopologyFile(file);
  } catch (e) {
    if (e instanceof TopologyError) return e;
    throw e;
  }
  throw new Error(`${file} loaded without error`);
}

describe('topology load', () => {
  for (const [name, line, column, path, expected] of BAD) {
    it(`topology load - ${name}.yaml is refused with its place named`, () => {
      const file = `${BAD_DIR}/${name}.yaml`;
      const e = loadError(file);
      expect({ file: e.file, line: e.line, column: e.column, path: e.path }).toEqual({
        file,
        line,
        column,
        path,
      });
      expect(e.expected.startsWith(expected)).toBe(true);
      expect(e.message).toBe(
        `${file}:${line}:${column}: ${path || '(document)'}: ${e.expected}${e.got === undefined ? '' : `, got ${e.got}`}`,
      );
      expect(e.message).not.toContain('\n');
      expect(e).toBeInstanceOf(EmuError);
      expect(e.code).toBe('EINVAL');
    });
  }

  it('topology load - every malformed fixture is in the table and says what is wrong on line 1', () => {
    const files = readdirSync(BAD_DIR).filter((f) => f.endsWith('.yaml'));
    expect(files.map((f) => f.replace(/\.yaml$/, '')).sort()).toEqual(BAD.map((b) => b[0]).sort());
    expect(files.length).toBeGreaterThanOrEqual(20);
    for (const f of files) expect(readFileSync(`${BAD_DIR}/${f}`, 'utf8')).toMatch(/^# \S.*\n/);
  });

  for (const name of EXAMPLES) {
    it(`topology load - example ${name} loads`, () => {
      const t = loadTopologyFile(`topology/examples/${name}.yaml`);
      expect(t.name).toBe(name);
      expect(t.hash).toMatch(/^[0-9a-f]{64}$/);
    });
  }

  it('topology load - the hash ignores comments, layout and key order but not content', () => {
    const text = readFileSync('topology/examples/single-host.yaml', 'utf8');
    const a = parseTopology(text, 'a.yaml');
    const reordered = text
      .replace(/^#.*\n/gm, '')
      .replace('version: 1\nname: single-host\n', 'name: single-host\nversion: 1\n')
      .replace(
        '{id: rp0, kind: root-port, parent: hb0, bdf: 00:02.0}',
        '{kind: root-port, bdf: 00:02.0, id: rp0, parent: hb0}',
      );
    expect(reordered).not.toBe(text);
    expect(parseTopology(reordered, 'b.yaml').hash).toBe(a.hash);
    expect(parseTopology(text.replace('memory: 256GiB', 'memory: 512GiB'), 'c.yaml').hash).not.toBe(a.hash);
  });

  it('topology load - normalises BDFs, defaults and multipath endpoints', () => {
    const t = loadTopologyFile('topology/examples/two-hosts.yaml');
    const h0 = t.hosts.get('h0')!;
    expect(h0.devices.get('nic0')!.endpoints).toEqual(['nic0.0', 'nic0.1']);
    const ep = h0.nodes.get('nic0.1')!;
    expect([ep.bdf, ep.hostBridge, ep.numa, ep.mps, ep.osName]).toEqual([
      '0000:82:00.0',
      'hb1',
      1,
      256,
      'mlx5_1',
    ]);
    expect(t.hosts.get('h1')!.nodes.get('sw0.d0')!.acs).toEqual({ rr: true, cr: true, ec: false });
    expect(h0.nodes.get('hb0')!.children).toEqual(['rp0', 'rp1']);
  });

  it('topology load - a missing file is ENOENT, not a stack of YAML errors', () => {
    expect(() => loadTopologyFile('topology/testdata/nope.yaml')).toThrow(
      expect.objectContaining({ code: 'ENOENT' }),
    );
  });

  it('topology units - sizes, rates, durations and cpulists parse and print', () => {
    expect(parseSize('80GiB')).toBe(80 * 2 ** 30);
    expect(parseSize('1.5 MB')).toBe(1_500_000);
    expect(parseRate('400Gb/s')).toBe(50e9);
    expect(parseRate('25GB/s')).toBe(25e9);
    expect(parseDuration('1.5us')).toBe(1500);
    expect(parseCpuList('0-3,8')).toEqual([0, 1, 2, 3, 8]);
    expect(parseCpuList('3-1')).toBeUndefined();
    expect(formatCpuList([0, 1, 2, 3, 8, 9])).toBe('0-3,8-9');
  });
});
