// Interconnect negotiation. "rule N" = kernel-semantics.md §5.3 rule N; KUnit = st-dma-mapping.c cases.
import { describe, expect, it } from 'vitest';
import { gpuExporterOffers, importerDmaAddrOffers, reduceExporterOffers } from './interconnects.ts';
import { loadTopologyFile, parseTopology } from './load.ts';
import {
  type Chosen,
  describeChosen,
  formatNegotiationTrace,
  type MappingType,
  type NegotiationResult,
  negotiate,
  type Offer,
} from './negotiate.ts';

const load = (p: string) => loadTopologyFile(`topology/${p}.yaml`);
const dgx = load('examples/dgx-like');
const twoHosts = load('examples/two-hosts');
const noP2p = load('testdata/trees/root-ports-not-allowed');

function chosen(r: NegotiationResult): Chosen {
  if (!r.ok)
    throw new Error(`negotiation failed: ${r.error.message}\n${formatNegotiationTrace(r.trace).join('\n')}`);
  return r.chosen;
}

/** Mock types as the KUnit test builds them: A and B match anything of their type; C asks its callback. */
function mockTypes(cFn: (exp: Offer, imp: Offer) => ReturnType<NonNullable<MappingType['match']>>) {
  const finished: string[] = [];
  const finish = (name: string) => (e: Offer, i: Offer, d: Readonly<Record<string, unknown>>) => {
    finished.push(`${name} ${e.label} ${i.label}`);
    return d;
  };
  const types = new Map<string, MappingType>([
    ['A', { name: 'A', finish: finish('A') }],
    ['B', { name: 'B', finish: finish('B') }],
    ['C', { name: 'C', match: cFn, finish: finish('C') }],
  ]);
  return { types, finished };
}
const o = (type: string, label: string): Offer => ({ type, label });

// A Xeon E5 host (8086:3c00, REQ_SAME_HOST_BRIDGE) whose NIC has a path on each root complex.
const REQ_SAME = parseTopology(`version: 1
name: multipath
hosts:
  - id: h0
    cpu: {vendor: intel, family: 6, model: 62}
    numa: [{id: 0, cpus: 0-15, memory: 64GiB}]
    pcie:
      - {id: hb0, kind: host-bridge, numa: 0, bus: 0x00, vendor: 0x8086, device: 0x3c00}
      - {id: rp0, kind: root-port, parent: hb0, bdf: 00:01.0}
      - {id: rp1, kind: root-port, parent: hb0, bdf: 00:02.0}
      - {id: hb1, kind: host-bridge, numa: 0, bus: 0x80, vendor: 0x8086, device: 0x3c00}
      - {id: rp2, kind: root-port, parent: hb1, bdf: 80:01.0}
    devices:
      - {id: gpu0, kind: gpu, vram: 16GiB, pcie: {parent: rp0, bdf: 01:00.0, link: {gen: 3, width: 16}}}
      - id: nic0
        kind: nic
        ports: [{port: 1, rate: 100Gb/s}]
        pcie:
          - {parent: rp2, bdf: 81:00.0, link: {gen: 3, width: 8}, name: mlx5_0}
          - {parent: rp1, bdf: 02:00.0, link: {gen: 3, width: 8}, name: mlx5_1}
`);

describe('negotiate', () => {
  it('negotiate - KUnit fail: different types never match and nothing matching is EINVAL (rules 2, 6)', () => {
    const { types, finished } = mockTypes(() => ({ ok: true }));
    const r = negotiate([o('A', 'e0')], [o('B', 'i0')], { types });
    expect(r.ok).toBe(false);
    if (!r.ok) expect([r.error.code, r.trace]).toEqual(['EINVAL', []]);
    expect(finished).toEqual([]);
  });

  it('negotiate - KUnit fail: an empty exporter or importer list is EINVAL (rule 6)', () => {
    const { types } = mockTypes(() => ({ ok: true }));
    for (const [e, i] of [
      [[], [o('A', 'i0')]],
      [[o('A', 'e0')], []],
    ] as const) {
      const r = negotiate(e, i, { types });
      expect(!r.ok && r.error.code).toBe('EINVAL');
    }
  });

  it('negotiate - KUnit no-match-callback: a type without match() takes any same-type entry (rule 3)', () => {
    const { types, finished } = mockTypes(() => ({ ok: true }));
    const c = chosen(negotiate([o('B', 'e0'), o('A', 'e1')], [o('A', 'i0')], { types }));
    expect([c.type, c.exporterIndex, c.importerIndex]).toEqual(['A', 1, 0]);
    expect(finished).toEqual(['A e1 i0']);
  });

  it('negotiate - KUnit callback returns: EOPNOTSUPP skips the pair, any other error aborts (rule 4)', () => {
    const skip = mockTypes((e) =>
      e.label === 'e0' ? { ok: false, code: 'EOPNOTSUPP', reason: 'no' } : { ok: true },
    );
    const c = chosen(negotiate([o('C', 'e0'), o('C', 'e1')], [o('C', 'i0')], { types: skip.types }));
    expect(c.exporterIndex).toBe(1);
    expect(skip.finished).toEqual(['C e1 i0']);

    const abort = mockTypes((e) =>
      e.label === 'e0' ? { ok: false, code: 'EIO', reason: 'device on fire' } : { ok: true },
    );
    const r = negotiate([o('C', 'e0'), o('C', 'e1')], [o('C', 'i0')], { types: abort.types });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe('EIO');
      expect(r.trace.map((s) => s.outcome)).toEqual(['error']);
    }
    expect(abort.finished).toEqual([]);
  });

  it('negotiate - KUnit exporter priority: the exporter list order wins under exporter-order (rule 1)', () => {
    const { types, finished } = mockTypes(() => ({ ok: true }));
    const c = chosen(negotiate([o('A', 'e0'), o('B', 'e1')], [o('B', 'i0'), o('A', 'i1')], { types }));
    expect([c.type, c.exporterIndex, c.importerIndex, c.policy]).toEqual(['A', 0, 1, 'exporter-order']);
    expect(finished).toEqual(['A e0 i1']); // rule 5: finish exactly once, for the winner
  });

  it('negotiate - KUnit importer priority: importer order breaks ties within one exporter entry (rule 1)', () => {
    const { types } = mockTypes(() => ({ ok: true }));
    const c = chosen(negotiate([o('A', 'e0')], [o('A', 'i0'), o('A', 'i1')], { types }));
    expect(c.importerIndex).toBe(0);
  });

  it('negotiate - importer-order policy: the importer list order wins', () => {
    const { types, finished } = mockTypes(() => ({ ok: true }));
    const c = chosen(
      negotiate([o('A', 'e0'), o('B', 'e1')], [o('B', 'i0'), o('A', 'i1')], {
        types,
        policy: 'importer-order',
      }),
    );
    expect([c.type, c.exporterIndex, c.importerIndex]).toEqual(['B', 1, 0]);
    expect(finished).toEqual(['B e1 i0']);
  });

  it('negotiate - KUnit sgt attach: a plain SGT exporter gives the attaching device, no P2P (rule 7)', () => {
    const c = chosen(
      negotiate(
        [{ type: 'dma-addr', p2p: false }],
        [{ type: 'dma-addr', device: 'dgx0/nic0', acceptsP2p: false }],
        {
          topology: dgx,
        },
      ),
    );
    expect(c.data).toEqual({ dmaDevice: 'dgx0/nic0', p2p: false });
    expect([c.placement, c.bounce]).toEqual(['system', true]);
  });

  it('negotiate - KUnit mock attach: a private-only importer gets the private type from {private, SGT} (rule 8)', () => {
    const c = chosen(
      negotiate(
        [
          { type: 'iova-private', domain: 'iommufd:7' },
          { type: 'dma-addr', p2p: false },
        ],
        [{ type: 'iova-private', domain: 'iommufd:7' }],
      ),
    );
    expect([c.type, c.data.domain, c.placement]).toEqual(['iova-private', 'iommufd:7', 'device']);
  });

  it('negotiate - scenario 2: P2P NOT_SUPPORTED skips to plain SGT and the exporter bounces through memory', () => {
    const r = negotiate(
      [{ type: 'vram-private', device: 'g00' }, ...gpuExporterOffers('g00')],
      [{ type: 'dma-addr', device: 'g01', acceptsP2p: true }],
      { topology: noP2p },
    );
    const c = chosen(r);
    expect([c.exporterIndex, c.bounce, c.placement]).toEqual([2, true, 'system']);
    expect(formatNegotiationTrace(r.trace)).toEqual([
      'exporter#1 x importer#0 dma-addr: skip EOPNOTSUPP: P2PDMA g00 -> g01: no common upstream bridge; host bridge not on the P2PDMA allow-list',
      'exporter#2 x importer#0 dma-addr: match',
      'exporter#2 x importer#0 dma-addr: chosen',
    ]);
  });

  it('negotiate - scenario 3: a multipath NIC offers one entry per path and gets the one P2P can reach', () => {
    const imp = importerDmaAddrOffers(REQ_SAME, 'nic0', { acceptsP2p: true });
    expect(imp.map((i) => i.label)).toEqual(['mlx5_0', 'mlx5_1']);
    const c = chosen(negotiate(gpuExporterOffers('gpu0'), imp, { topology: REQ_SAME }));
    expect([c.importerIndex, c.data.dmaDevice, c.data.mapType, c.bounce]).toEqual([
      1,
      'h0/nic0.1',
      'THRU_HOST_BRIDGE',
      false,
    ]);
  });

  it('negotiate - best-quality picks the multipath path the timing model says is closer', () => {
    const imp = importerDmaAddrOffers(twoHosts, 'h0/nic0', { acceptsP2p: true });
    const exp = gpuExporterOffers('h0/gpu1');
    const first = chosen(negotiate(exp, imp, { topology: twoHosts }));
    const best = chosen(negotiate(exp, imp, { topology: twoHosts, policy: 'best-quality' }));
    expect(first.data.dmaDevice).toBe('h0/nic0.0'); // exporter order takes the first path, across the SMP link
    expect(best.data.dmaDevice).toBe('h0/nic0.1'); // same socket as gpu1
    expect(best.quality!.latencyNs).toBeLessThan(
      chosen(negotiate(exp, [imp[0]], { topology: twoHosts, policy: 'best-quality' })).quality!.latencyNs,
    );
  });

  it('negotiate - each policy on NVLink-connected GPUs: P2P first by exporter, VRAM by importer and by quality', () => {
    const exp = gpuExporterOffers('gpu0', { privateLink: false });
    exp.push({ type: 'vram-private', device: 'gpu0' });
    const imp: Offer[] = [
      { type: 'vram-private', device: 'gpu5' },
      { type: 'dma-addr', device: 'gpu5', acceptsP2p: true },
    ];
    const by = (policy: 'exporter-order' | 'importer-order' | 'best-quality') =>
      chosen(negotiate(exp, imp, { topology: dgx, policy }));
    expect(by('exporter-order').type).toBe('dma-addr');
    expect(by('importer-order').type).toBe('vram-private');
    const best = by('best-quality');
    expect(best.type).toBe('vram-private');
    expect(best.quality!.bandwidth).toBe(450e9);
    expect(best.data.link).toBe('dgx0/nvl0');
  });

  it('negotiate - best-quality never prefers the system-memory bounce over a working P2P path', () => {
    const c = chosen(
      negotiate(gpuExporterOffers('gpu0'), importerDmaAddrOffers(dgx, 'nic3', { acceptsP2p: true }), {
        topology: dgx,
        policy: 'best-quality',
      }),
    );
    expect(c.bounce).toBe(false);
  });

  it('negotiate - an importer that refuses P2P skips the P2P entry (EOPNOTSUPP) and lands in system memory', () => {
    const r = negotiate(
      gpuExporterOffers('gpu0'),
      importerDmaAddrOffers(dgx, 'nic0', { acceptsP2p: false }),
      { topology: dgx },
    );
    expect(chosen(r).bounce).toBe(true);
    expect(r.trace[0]).toMatchObject({
      outcome: 'skip',
      code: 'EOPNOTSUPP',
      reason: 'importer dgx0/nic0 does not accept P2P',
    });
  });

  it('negotiate - a revoked BAR aborts with ENODEV even when a later entry would match', () => {
    const r = negotiate(
      [
        { type: 'pci-bar', provider: 'nvme0', bar: 0, revoked: true },
        { type: 'phys-addr', ranges: 1 },
      ],
      [{ type: 'pci-bar', device: 'nic0' }, { type: 'phys-addr' }],
      { topology: dgx },
    );
    expect(!r.ok && r.error.code).toBe('ENODEV');
  });

  it('negotiate - phys-addr wants exactly one range; a PCI BAR slice needs a reachable importer', () => {
    const r = negotiate(
      [
        { type: 'phys-addr', ranges: 3 },
        { type: 'pci-bar', provider: 'nvme0', bar: 0 },
      ],
      [{ type: 'phys-addr' }, { type: 'pci-bar', device: 'nic0' }],
      { topology: dgx },
    );
    const c = chosen(r);
    expect([c.type, c.data.addressing]).toEqual(['pci-bar', 'iova']);
    expect(r.trace[0]).toMatchObject({
      outcome: 'skip',
      reason: 'phys-addr needs exactly one range, exporter has 3',
    });
  });

  it('negotiate - no P2P match and no system entry is EINVAL with every skip in the trace', () => {
    const r = negotiate(
      [{ type: 'dma-addr', p2p: true, provider: 'g00' }],
      [{ type: 'dma-addr', device: 'g01', acceptsP2p: true }],
      {
        topology: noP2p,
      },
    );
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.message).toBe(
        'EINVAL: negotiate: no compatible interconnect between exporter and importer',
      );
      expect(r.trace.map((s) => s.outcome)).toEqual(['skip']);
    }
  });

  it('negotiate - broken contracts throw: unknown types, missing fields, P2P without a topology, bad policy', () => {
    expect(() => negotiate([{ type: 'nvlink-magic' }], [{ type: 'dma-addr' }])).toThrow(
      /not a registered mapping type/,
    );
    expect(() =>
      negotiate([{ type: 'dma-addr', p2p: true }], [{ type: 'dma-addr', device: 'x', acceptsP2p: true }]),
    ).toThrow(/dma-addr offer needs provider/);
    expect(() =>
      negotiate(
        [{ type: 'dma-addr', p2p: true, provider: 'a' }],
        [{ type: 'dma-addr', device: 'b', acceptsP2p: true }],
      ),
    ).toThrow(/needs context.topology/);
    // biome-ignore lint/suspicious/noExplicitAny: deliberately wrong policy
    expect(() => negotiate([], [], { policy: 'random' as any })).toThrow(/unknown policy/);
  });

  it('negotiate - Christian König model: after a system-memory attachment the exporter offers only system memory', () => {
    const first = chosen(
      negotiate(gpuExporterOffers('gpu0'), importerDmaAddrOffers(dgx, 'nic0', { acceptsP2p: false }), {
        topology: dgx,
      }),
    );
    const reduced = reduceExporterOffers(gpuExporterOffers('gpu0'), [first]);
    const second = chosen(
      negotiate(reduced, importerDmaAddrOffers(dgx, 'nic1', { acceptsP2p: true }), { topology: dgx }),
    );
    expect(second.bounce).toBe(true);
    expect(reduceExporterOffers(gpuExporterOffers('gpu0'), [])).toHaveLength(2);
  });

  it('negotiate - the chosen interconnect reads as one trace line', () => {
    const c = chosen(
      negotiate(gpuExporterOffers('gpu0'), importerDmaAddrOffers(dgx, 'nic0', { acceptsP2p: true }), {
        topology: dgx,
      }),
    );
    expect(describeChosen(c)).toBe(
      'dma-addr for dgx0/nic0 (peer-to-peer BUS_ADDR) exporter#0 P2P from gpu0 x importer#0 mlx5_0, exporter-order',
    );
  });
});
