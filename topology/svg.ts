/**
 * A picture of the topology: one panel per host with its PCIe trees (host bridges on top,
 * endpoints at the bottom, link generation and width on each link, ACS-redirecting ports in
 * red), NVLink groups as a bar under their GPUs, and the fabric below (switches by tier, cables
 * with their rates). Deterministic output (same topology, same bytes), no dependencies.
 */
import type { Host, PcieNode, Topology } from './model.ts';
import { portKey } from './model.ts';
import { hasAcsRedirect } from './pcie-tree.ts';
import { formatSize } from './units.ts';

const BOX_W = 128;
const BOX_H = 40;
const GAP_X = 14;
const LEVEL_H = 78;
const PAD = 20;
const HEADER_H = 46;
const HOST_GAP = 30;
const FABRIC_ROW_H = 90;

const COLORS: Record<string, string> = {
  'host-bridge': '#d9d9d9',
  'root-port': '#eeeeee',
  'switch-upstream': '#fff2cc',
  'switch-downstream': '#fff2cc',
  gpu: '#d5e8d4',
  nic: '#dae8fc',
  vfio: '#ffe6cc',
};

const esc = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const fmt = (n: number) => (Math.round(n * 10) / 10).toString();

interface Placed {
  x: number;
  y: number;
}

/** Tidy layout: leaves take consecutive slots, a parent is centred over its children. */
function layoutHost(host: Host): { pos: Map<string, Placed>; width: number; height: number } {
  const pos = new Map<string, Placed>();
  let slot = 0;
  let maxDepth = 0;
  const place = (n: PcieNode): number => {
    maxDepth = Math.max(maxDepth, n.depth);
    const xs = n.children.map((c) => place(host.nodes.get(c)!));
    const x = xs.length > 0 ? (xs[0] + xs[xs.length - 1]) / 2 : slot++ * (BOX_W + GAP_X);
    pos.set(n.id, { x, y: n.depth * LEVEL_H });
    return x;
  };
  for (const hb of host.hostBridges) {
    place(host.nodes.get(hb)!);
    slot++; // a blank slot between root complexes
  }
  const width = Math.max(1, slot - 1) * (BOX_W + GAP_X) - GAP_X;
  const multipath = [...host.devices.values()].some((d) => d.endpoints.length > 1);
  const nvl = host.privateLinks.length > 0 ? 40 : multipath ? 20 : 0;
  return { pos, width: Math.max(width, 2 * BOX_W), height: maxDepth * LEVEL_H + BOX_H + nvl };
}

function nodeBox(host: Host, n: PcieNode, x: number, y: number, out: string[]) {
  const dev = n.device ? host.devices.get(n.device) : undefined;
  const fill = COLORS[dev?.kind ?? n.kind];
  const acs = hasAcsRedirect(n);
  const stroke = acs ? ' stroke="#c00000" stroke-width="2" stroke-dasharray="5 3"' : ' stroke="#555"';
  let title = n.id;
  let sub = n.bdf ?? '';
  if (n.hb) {
    title = `${n.id} ${n.hb.vendor.toString(16).padStart(4, '0')}:${n.hb.device.toString(16).padStart(4, '0')}`;
    sub = `NUMA ${n.numa}, bus ${n.hb.bus.toString(16).padStart(2, '0')}`;
  } else if (dev) {
    const extra =
      dev.kind === 'gpu'
        ? ` ${formatSize(dev.vram)}`
        : dev.kind === 'nic'
          ? ` ${dev.ports.map((p) => `${(p.rate * 8) / 1e9}G`).join('/')}`
          : '';
    title = `${n.id}${n.osName ? ` (${n.osName})` : ''}`;
    sub = `${n.bdf} ${dev.kind}${extra}`;
  }
  out.push(`<g id="${esc(n.key)}"><title>${esc(`${n.key} ${n.kind}${acs ? ' ACS redirect' : ''}`)}</title>`);
  out.push(
    `<rect x="${fmt(x)}" y="${fmt(y)}" width="${BOX_W}" height="${BOX_H}" rx="4" fill="${fill}"${stroke}/>`,
  );
  out.push(`<text x="${fmt(x + BOX_W / 2)}" y="${fmt(y + 16)}" class="t">${esc(title)}</text>`);
  out.push(`<text x="${fmt(x + BOX_W / 2)}" y="${fmt(y + 31)}" class="s">${esc(sub)}</text>`);
  if (acs) out.push(`<text x="${fmt(x + BOX_W - 4)}" y="${fmt(y - 3)}" class="acs">ACS</text>`);
  out.push('</g>');
}

/** Render the whole topology as a standalone SVG document. */
export function renderSvg(topo: Topology): string {
  const body: string[] = [];
  const nicAnchor = new Map<string, Placed>();
  let x0 = PAD;
  let hostsBottom = 0;
  for (const host of topo.hosts.values()) {
    const { pos, width, height } = layoutHost(host);
    const w = width + 2 * PAD;
    const h = height + HEADER_H + PAD;
    const top = PAD;
    body.push(`<g id="host-${esc(host.id)}">`);
    body.push(
      `<rect x="${x0}" y="${top}" width="${fmt(w)}" height="${fmt(h)}" rx="8" fill="#fafafa" stroke="#333"/>`,
    );
    const numa = [...host.numa.values()]
      .map((n) => `NUMA${n.id}: CPUs ${n.cpulist}, ${formatSize(n.memory)}`)
      .join('  |  ');
    body.push(
      `<text x="${x0 + 10}" y="${top + 18}" class="h">${esc(`${host.id} (${host.hostname}) ${host.cpu.vendor} family 0x${host.cpu.family.toString(16)}`)}</text>`,
    );
    body.push(`<text x="${x0 + 10}" y="${top + 35}" class="sl">${esc(numa)}</text>`);
    const ox = x0 + PAD;
    const oy = top + HEADER_H;
    const abs = (id: string) => ({ x: ox + pos.get(id)!.x, y: oy + pos.get(id)!.y });
    for (const n of host.nodes.values()) {
      if (n.parent === null) continue;
      const a = abs(n.parent);
      const b = abs(n.id);
      const [x1, y1, x2, y2] = [a.x + BOX_W / 2, a.y + BOX_H, b.x + BOX_W / 2, b.y];
      const dashed = n.link ? '' : ' stroke-dasharray="2 2"';
      body.push(
        `<line x1="${fmt(x1)}" y1="${fmt(y1)}" x2="${fmt(x2)}" y2="${fmt(y2)}" stroke="#555"${dashed}/>`,
      );
      if (n.link)
        body.push(
          `<text x="${fmt((x1 + x2) / 2 + 4)}" y="${fmt((y1 + y2) / 2 + 4)}" class="l">Gen${n.link.gen} x${n.link.width}</text>`,
        );
    }
    for (const n of host.nodes.values()) {
      const p = abs(n.id);
      nodeBox(host, n, p.x, p.y, body);
      const dev = n.device ? host.devices.get(n.device) : undefined;
      if (dev?.kind === 'nic' && n.pathIndex === 0)
        for (const port of dev.ports)
          nicAnchor.set(portKey(host.id, dev.id, port.port), { x: p.x + BOX_W / 2, y: p.y + BOX_H });
    }
    // A multipath device: one dashed arc joining its functions.
    for (const dev of host.devices.values()) {
      if (dev.endpoints.length < 2) continue;
      const ps = dev.endpoints.map((ep) => abs(ep));
      const y = Math.max(...ps.map((p) => p.y)) + BOX_H + 12;
      const pts = ps.map((p) => `${fmt(p.x + BOX_W / 2)},${fmt(p.y + BOX_H)}`);
      const d = `M ${pts[0]} L ${pts[0].split(',')[0]},${fmt(y)} L ${pts[pts.length - 1].split(',')[0]},${fmt(y)} L ${pts[pts.length - 1]}`;
      body.push(`<path d="${d}" fill="none" stroke="#6c8ebf" stroke-width="1.5" stroke-dasharray="6 3"/>`);
      body.push(
        `<text x="${fmt(ps[0].x + BOX_W / 2 + 4)}" y="${fmt(y - 3)}" class="l">${esc(`${dev.id}: ${dev.endpoints.length} PCIe paths`)}</text>`,
      );
    }
    for (const l of host.privateLinks) {
      const xs = l.members.flatMap((m) => host.devices.get(m)!.endpoints.slice(0, 1)).map((ep) => abs(ep));
      const y = Math.max(...xs.map((p) => p.y)) + BOX_H + 22;
      const [lo, hi] = [Math.min(...xs.map((p) => p.x)), Math.max(...xs.map((p) => p.x)) + BOX_W];
      body.push(
        `<g id="${esc(l.key)}"><rect x="${fmt(lo)}" y="${fmt(y)}" width="${fmt(hi - lo)}" height="6" fill="#9673a6"/>`,
      );
      for (const p of xs)
        body.push(
          `<line x1="${fmt(p.x + BOX_W / 2)}" y1="${fmt(p.y + BOX_H)}" x2="${fmt(p.x + BOX_W / 2)}" y2="${fmt(y)}" stroke="#9673a6" stroke-width="2"/>`,
        );
      body.push(
        `<text x="${fmt(lo)}" y="${fmt(y + 18)}" class="sl">${esc(`${l.kind} ${l.id}: NV${l.links}, ${(l.links * l.linkRate) / 1e9} GB/s per GPU per direction`)}</text></g>`,
      );
    }
    body.push('</g>');
    x0 += w + HOST_GAP;
    hostsBottom = Math.max(hostsBottom, top + h);
  }
  const totalW = Math.max(x0 - HOST_GAP + PAD, 400);
  const fabricH = renderFabric(topo, totalW, hostsBottom, nicAnchor, body);
  const totalH = hostsBottom + fabricH + PAD + 24;
  body.push(
    `<text x="${PAD}" y="${fmt(totalH - 10)}" class="sl">${esc(`${topo.name} - ${topo.hash.slice(0, 12)} - red dashed: ACS redirect; dotted: inside a switch or root complex`)}</text>`,
  );
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${fmt(totalW)}" height="${fmt(totalH)}" viewBox="0 0 ${fmt(totalW)} ${fmt(totalH)}" font-family="sans-serif">`,
    `<title>${esc(`p2pemu topology ${topo.name}`)}</title>`,
    '<style>.t{font-size:11px;font-weight:bold;text-anchor:middle}.s{font-size:9px;text-anchor:middle}.sl{font-size:9px;text-anchor:start}.l{font-size:9px;fill:#1f4e79}.h{font-size:13px;font-weight:bold}.acs{font-size:9px;fill:#c00000;text-anchor:end;font-weight:bold}</style>',
    `<rect width="100%" height="100%" fill="white"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

const TIERS = ['switch', 'leaf', 'spine', 'core'] as const;

function renderFabric(
  topo: Topology,
  width: number,
  top: number,
  anchors: Map<string, Placed>,
  out: string[],
): number {
  const { switches, links } = topo.fabric;
  if (links.length === 0) return 0;
  const rows = TIERS.map((t) => [...switches.values()].filter((s) => s.tier === t)).filter(
    (r) => r.length > 0,
  );
  const at = new Map<string, Placed>(anchors);
  rows.forEach((row, i) => {
    const y = top + 60 + i * FABRIC_ROW_H;
    row.forEach((s, j) => {
      at.set(s.id, { x: ((j + 1) * width) / (row.length + 1), y });
    });
  });
  out.push('<g id="fabric">');
  for (const l of links) {
    const a = at.get(l.a.kind === 'port' ? portKey(l.a.host, l.a.device, l.a.port) : l.a.id)!;
    const b = at.get(l.b.kind === 'port' ? portKey(l.b.host, l.b.device, l.b.port) : l.b.id)!;
    const [x1, y1, x2, y2] = [a.x, a.y, b.x, b.y];
    out.push(
      `<line id="${l.id}" x1="${fmt(x1)}" y1="${fmt(y1)}" x2="${fmt(x2)}" y2="${fmt(y2)}" stroke="#2f5597" stroke-width="1.5"/>`,
    );
    out.push(
      `<text x="${fmt((x1 + x2) / 2 + 3)}" y="${fmt((y1 + y2) / 2)}" class="l">${(l.rate * 8) / 1e9}G</text>`,
    );
  }
  for (const s of switches.values()) {
    const p = at.get(s.id);
    if (!p) continue;
    out.push(
      `<g id="switch-${esc(s.id)}"><rect x="${fmt(p.x - 50)}" y="${fmt(p.y - 14)}" width="100" height="28" rx="14" fill="#f8cecc" stroke="#b85450"/>`,
    );
    out.push(`<text x="${fmt(p.x)}" y="${fmt(p.y + 4)}" class="t">${esc(`${s.id} (${s.tier})`)}</text></g>`);
  }
  out.push('</g>');
  return 60 + (rows.length - 1) * FABRIC_ROW_H + 34;
}
