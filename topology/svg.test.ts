import { describe, expect, it } from 'vitest';
import { loadTopologyFile, parseTopology } from './load.ts';
import { renderSvg } from './svg.ts';

const load = (p: string) => loadTopologyFile(`topology/${p}.yaml`);

/** Every opened element is closed in order: enough to catch broken markup without an XML parser. */
function balanced(svg: string): boolean {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    const [, close, name, self] = m;
    if (self) continue;
    if (!close) stack.push(name);
    else if (stack.pop() !== name) return false;
  }
  return stack.length === 0;
}

describe('topology svg', () => {
  it('topology svg - the DGX-like host draws every node, link width, and the NVLink bar', () => {
    const svg = renderSvg(load('examples/dgx-like'));
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(balanced(svg)).toBe(true);
    for (const id of ['dgx0/hb0', 'dgx0/sw3.d2', 'dgx0/gpu7', 'dgx0/nic3', 'dgx0/nvme0'])
      expect(svg).toContain(`id="${id}"`);
    expect(svg).toContain('>Gen5 x16<');
    expect(svg).toContain('nvlink nvl0: NV18, 450 GB/s per GPU per direction');
  });

  it('topology svg - ACS-redirecting ports are marked and the fabric is drawn with cable rates', () => {
    const svg = renderSvg(load('examples/two-hosts'));
    expect(svg.match(/class="acs">ACS</g)).toHaveLength(2);
    expect(svg).toContain('id="switch-tor0"');
    expect(svg).toContain('>400G<');
    expect(svg).toContain('nic0: 2 PCIe paths');
    const ls = renderSvg(load('examples/leaf-spine'));
    expect(ls.match(/<line id="L\d+"/g)).toHaveLength(12);
    expect(ls).toContain('spine1 (spine)');
  });

  it('topology svg - output is deterministic and escapes text', () => {
    const t = load('examples/single-host');
    expect(renderSvg(t)).toBe(renderSvg(load('examples/single-host')));
    const odd = parseTopology(
      `version: 1
name: odd
hosts:
  - id: h0
    hostname: "a<b & c"
    cpu: {vendor: other, family: 0}
    numa: [{id: 0, cpus: 0, memory: 1GiB}]
    pcie: [{id: hb0, kind: host-bridge, numa: 0, vendor: 0x1234, device: 0x5678}]
`,
      'odd.yaml',
    );
    const svg = renderSvg(odd);
    expect(svg).toContain('a&lt;b &amp; c');
    expect(balanced(svg)).toBe(true);
  });

  it('svg - left-aligned labels use a left-aligned class (a CSS text-anchor would override the attribute and clip them)', () => {
    for (const name of ['dgx-like', 'leaf-spine']) {
      const svg = renderSvg(load(`examples/${name}`));
      expect(svg).not.toMatch(/class="s" text-anchor="start"/);
      expect(svg).toMatch(/<text x="\d+" y="\d+" class="sl">nvlink|<text x="\d+" y="\d+" class="sl">/);
    }
  });
});
