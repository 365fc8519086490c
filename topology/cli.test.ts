import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { makeTopoCommand, runTopo, type TopoOptions } from './cli.ts';
import { topologyJsonSchemaText } from './json-schema.ts';

function run(file: string | undefined, opts: TopoOptions = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const files = new Map<string, string>();
  const code = runTopo(file, opts, {
    stdout: (t) => out.push(t),
    stderr: (t) => err.push(t),
    writeFile: (p, t) => files.set(p, t),
  });
  return { code, stdout: out.join(''), stderr: err.join(''), files };
}

describe('topo cli', () => {
  it('topo cli - by default prints the topo -m matrix and writes ./<name>.svg', () => {
    const r = run('topology/examples/dgx-like.yaml');
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe(
      '\tGPU0\tGPU1\tGPU2\tGPU3\tGPU4\tGPU5\tGPU6\tGPU7\tNIC0\tNIC1\tNIC2\tNIC3\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID',
    );
    expect([...r.files.keys()]).toEqual(['dgx-like.svg']);
    expect(r.stderr).toBe('p2pemu topo: wrote dgx-like.svg\n');
  });

  it('topo cli - --p2p, --json and --svg select the views; --no-svg writes nothing', () => {
    const p2p = run('topology/examples/two-hosts.yaml', { p2p: true, host: 'h1' });
    expect(p2p.stdout.split('\n')[1]).toBe(' GPU0\tX\tOK\tOK\tOK\t');
    expect(p2p.files.size).toBe(0);
    const json = run('topology/examples/two-hosts.yaml', { json: true, svg: 'out/x.svg' });
    expect(JSON.parse(json.stdout).hosts).toHaveLength(2);
    expect([...json.files.keys()]).toEqual(['out/x.svg']);
    expect(run('topology/examples/single-host.yaml', { svg: false }).files.size).toBe(0);
  });

  it('topo cli - --from/--to prints the modelled transfer hop by hop', () => {
    const r = run('topology/examples/dgx-like.yaml', { from: 'gpu0', to: 'nic0', bytes: '1GiB' });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('gpu0 -> nic0, 1073741824 bytes, mode p2p-switch');
    expect(r.stdout).toContain('bottleneck  gpu0 link Gen5 x16 up: 57.21 GB/s (457.6 Gb/s)');
    expect(run('topology/examples/dgx-like.yaml', { from: 'gpu0' }).code).toBe(2);
    expect(run('topology/examples/dgx-like.yaml', { from: 'gpu0', to: 'nic0', bytes: 'lots' }).code).toBe(2);
  });

  it('topo cli - an invalid file prints one line naming the place and exits 2', () => {
    const r = run('topology/testdata/bad/cycle.yaml');
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'topology/testdata/bad/cycle.yaml:13:50: hosts[0].pcie[3].parent: expected a chain of parents ending at a host-bridge, got a cycle sw -> sw.d0 -> sw\n',
    );
    expect(r.files.size).toBe(0);
    expect(run('topology/testdata/missing.yaml').stderr).toMatch(
      /^p2pemu topo: ENOENT: cannot read topology file/,
    );
    expect(run(undefined).code).toBe(2);
    expect(run('topology/examples/dgx-like.yaml', { host: 'nope' }).code).toBe(2);
  });

  it('topo cli - --write-schema regenerates the JSON Schema', () => {
    const r = run(undefined, { writeSchema: 'schema.json' });
    expect(r.code).toBe(0);
    expect(r.files.get('schema.json')).toBe(topologyJsonSchemaText());
  });

  it('topo cli - help lists every flag', () => {
    const help = makeTopoCommand().helpInformation();
    for (const flag of [
      '--matrix',
      '--p2p',
      '--json',
      '--svg <path>',
      '--no-svg',
      '--host',
      '--pcie-only',
      '--from',
      '--to',
      '--bytes',
      '--op',
      '--write-schema',
    ]) {
      expect(help).toContain(flag);
    }
  });

  it('topo cli - the real binary exits 2 with no stack trace on a bad file', () => {
    const r = spawnSync(
      process.execPath,
      ['bin/p2pemu.js', 'topo', 'topology/testdata/bad/duplicate-bdf.yaml', '--no-svg'],
      {
        encoding: 'utf8',
        timeout: 15_000,
      },
    );
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(
      /^topology\/testdata\/bad\/duplicate-bdf\.yaml:27:39: hosts\[0\]\.devices\[1\]\.pcie\.bdf: /,
    );
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
