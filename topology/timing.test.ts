import { describe, expect, it } from 'vitest';
import { loadTopologyFile } from './load.ts';
import {
  flowRates,
  formatTwoClocks,
  maxMinShare,
  modelFlows,
  modelTransfer,
  pcieLinkFigures,
  pcieRawBytesPerSec,
  simulateFlows,
  twoClocks,
  wireGoodput,
} from './timing.ts';

const load = (p: string) => loadTopologyFile(`topology/${p}.yaml`);
const GiB = 2 ** 30;
const close = (x: number, y: number, rel = 1e-9) => expect(Math.abs(x - y) / y).toBeLessThan(rel);

describe('timing', () => {
  it('timing - Gen4 x16 at MPS 256: 16 GT/s x 16 lanes x 128/130 = 31.51 GB/s raw, 256/282 of it is payload', () => {
    const f = pcieLinkFigures({ gen: 4, width: 16 }, 256);
    close(f.rawBytesPerSec, (16e9 * 16 * 128) / 130 / 8);
    expect(f.tlpOverhead).toBe(26); // STP 4 + sequence 2 + 4DW header 16 + LCRC 4
    close(f.goodputBytesPerSec, 28.602727768685e9);
  });

  it('timing - Gen5 x16 doubles Gen4: 57.21 GB/s of payload at MPS 256, 59.97 GB/s at MPS 512', () => {
    close(pcieLinkFigures({ gen: 5, width: 16 }, 256).goodputBytesPerSec, 57.20545553737e9);
    close(
      pcieLinkFigures({ gen: 5, width: 16 }, 512).goodputBytesPerSec,
      ((32e9 * 16 * 128) / 130 / 8) * (512 / 538),
    );
  });

  it('timing - Gen1/2 pay 8b/10b and 2-byte framing; Gen6 runs FLIT mode with 236 TLP bytes per 256', () => {
    close(pcieRawBytesPerSec({ gen: 1, width: 1 }), 250e6);
    expect(pcieLinkFigures({ gen: 2, width: 4 }, 128).tlpOverhead).toBe(24);
    close(pcieLinkFigures({ gen: 6, width: 16 }, 256).goodputBytesPerSec, 128e9 * (236 / 256) * (256 / 272));
  });

  it('timing - read completions carry a 3DW header, so reads are a little cheaper per TLP than writes', () => {
    const r = pcieLinkFigures({ gen: 4, width: 16 }, 256, 'read');
    expect(r.tlpOverhead).toBe(22);
    expect(r.goodputBytesPerSec).toBeGreaterThan(
      pcieLinkFigures({ gen: 4, width: 16 }, 256).goodputBytesPerSec,
    );
  });

  it('timing - a 400 Gb/s port carries 392.15 Gb/s of RoCEv2 payload at MTU 4096, 397.48 Gb/s on InfiniBand', () => {
    close(wireGoodput(50e9, 4096, 'ethernet') * 8, 400e9 * (4096 / 4178));
    close(wireGoodput(50e9, 4096, 'infiniband') * 8, 400e9 * (4096 / 4122));
  });

  it('timing - GPU to NIC under one Gen5 switch: bottleneck is a Gen5 x16 link, latency two links and one switch', () => {
    const m = modelTransfer(load('examples/dgx-like'), 'gpu0', 'nic0', GiB);
    if (!m.ok) throw new Error(m.reason);
    expect(m.path.mode).toBe('p2p-switch');
    expect(m.latencyNs).toBe(20 + 110 + 20);
    close(m.rate, 57.20545553737e9);
    close(m.durationNs, 150 + (GiB / 57.20545553737e9) * 1e9);
  });

  it('timing - GPU to NIC on Gen4 takes twice as long as on Gen5', () => {
    const g4 = modelTransfer(load('examples/single-host'), 'gpu0', 'nic0', GiB);
    const g5 = modelTransfer(load('examples/dgx-like'), 'gpu0', 'nic0', GiB);
    if (!g4.ok || !g5.ok) throw new Error('unreachable');
    close(g4.durationNs / g5.durationNs, 2, 1e-3);
  });

  it('timing - NVLink carries GPU to GPU unless asked for PCIe, which then crosses the SMP link', () => {
    const dgx = load('examples/dgx-like');
    const nv = modelTransfer(dgx, 'gpu0', 'gpu5', GiB);
    const pcie = modelTransfer(dgx, 'gpu0', 'gpu5', GiB, { via: 'pcie' });
    if (!nv.ok || !pcie.ok) throw new Error('unreachable');
    expect(nv.path.mode).toBe('private-link');
    close(nv.rate, 18 * 25e9);
    expect(pcie.path.mode).toBe('p2p-host-bridge');
    expect(pcie.path.hops.map((h) => h.label)).toContain('SMP link numa0 -> numa1');
  });

  it('timing - ACS redirect sends P2P up and back down the switch upstream link', () => {
    const m = modelTransfer(load('testdata/trees/switch-acs-allowed'), 'a', 'b', GiB);
    if (!m.ok) throw new Error(m.reason);
    const res = m.path.uses.map((u) => u.resource);
    expect(res).toEqual(expect.arrayContaining(['pcie:h0/sw:up', 'pcie:h0/sw:down']));
    expect(m.path.notes[0]).toContain('ACS redirect at 0000:02:00.0');
  });

  it('timing - without a P2P path the copy bounces through system memory, loading it twice', () => {
    const m = modelTransfer(load('testdata/trees/root-ports-not-allowed'), 'g00', 'g01', GiB);
    if (!m.ok) throw new Error(m.reason);
    expect(m.path.mode).toBe('bounce');
    expect(m.path.uses.filter((u) => u.resource === 'mem:h0/numa0')).toHaveLength(2);
  });

  it('timing - host to host goes GPU, NIC, fabric, NIC, GPU and crosses the spine between rails', () => {
    const ls = load('examples/leaf-spine');
    const same = modelTransfer(ls, 'h0/gpu0', 'h3/gpu0', GiB);
    const cross = modelTransfer(ls, 'h0/gpu0', 'h3/gpu0', GiB, { srcNic: 'nic0', dstNic: 'nic1' });
    if (!same.ok || !cross.ok) throw new Error('unreachable');
    expect(same.path.mode).toBe('network');
    expect(same.path.hops.some((h) => h.label.startsWith('fabric switch spine'))).toBe(false);
    expect(cross.path.hops.filter((h) => h.label.startsWith('fabric switch')).map((h) => h.label)).toEqual([
      'fabric switch leaf0',
      'fabric switch spine0',
      'fabric switch leaf1',
    ]);
    expect(cross.latencyNs - same.latencyNs).toBe(600 + 500 + 2 * 50);
  });

  it('timing - a multipath NIC is entered through the path closest to the GPU', () => {
    const m = modelTransfer(load('examples/two-hosts'), 'h0/gpu1', 'h1/gpu1', GiB);
    if (!m.ok) throw new Error(m.reason);
    expect(m.path.hops.map((h) => h.label)).toEqual(
      expect.arrayContaining(['NIC h0/nic0.1', 'NIC h1/nic0.1']),
    );
  });

  it('timing - unreachable hosts are a value, not an exception', () => {
    const t = load('testdata/trees/amd-zen');
    const m = modelTransfer(t, 'zen/g00', 'bulldozer/g00', 1);
    expect(m).toMatchObject({ ok: false, reason: 'no cabled NIC on host zen' });
  });

  it('timing - max-min sharing: the bottleneck link is split, the rest goes to whoever can use it', () => {
    const caps = new Map([
      ['L1', 1],
      ['L2', 2],
    ]);
    const rates = maxMinShare(
      [
        { id: 'f1', uses: [{ resource: 'L1', cost: 1 }] },
        {
          id: 'f2',
          uses: [
            { resource: 'L1', cost: 1 },
            { resource: 'L2', cost: 1 },
          ],
        },
        { id: 'f3', uses: [{ resource: 'L2', cost: 1 }] },
        { id: 'f4', uses: [{ resource: 'L2', cost: 1 }], demand: 0.25 },
        { id: 'free', uses: [{ resource: 'unlisted', cost: 1 }] },
      ],
      caps,
    );
    expect(Object.fromEntries(rates)).toEqual({ f1: 0.5, f2: 0.5, f3: 1.25, f4: 0.25, free: Infinity });
  });

  it('timing - max-min sharing charges header overhead: a cost-2 flow gets half the bytes', () => {
    const rates = maxMinShare([{ id: 'a', uses: [{ resource: 'L', cost: 2 }] }], new Map([['L', 10]]));
    expect(rates.get('a')).toBe(5);
  });

  it('timing - the fluid simulation re-shares when a flow finishes', () => {
    const caps = new Map([['L', 1e9]]);
    const use = [{ resource: 'L', cost: 1 }];
    const done = simulateFlows(
      [
        { id: 'big', uses: use, bytes: 1e9 },
        { id: 'small', uses: use, bytes: 0.5e9, latencyNs: 100 },
        { id: 'late', uses: use, bytes: 0.25e9, startNs: 2e9 },
      ],
      caps,
    );
    close(done.get('small')!.finishNs, 1e9 + 100);
    close(done.get('big')!.finishNs, 1.5e9);
    close(done.get('late')!.durationNs, 0.25e9);
  });

  it('timing - concurrent transfers from two GPUs of one switch share its upstream link', () => {
    const dgx = load('examples/dgx-like');
    const [a, b] = flowRates(dgx, [
      { src: 'gpu0', dst: 'dgx0/numa0' },
      { src: 'gpu1', dst: 'dgx0/numa0' },
    ]);
    close(a, 57.20545553737e9 / 2);
    close(b, a);
    const [m] = modelFlows(dgx, [
      { src: 'gpu0', dst: 'dgx0/numa0', bytes: GiB },
      { src: 'gpu1', dst: 'dgx0/numa0', bytes: GiB },
    ]);
    if (!m.ok) throw new Error(m.reason);
    close(m.rate, a);
  });

  it('timing - the two clocks are reported side by side, never merged', () => {
    const m = modelTransfer(load('examples/dgx-like'), 'gpu0', 'nic0', GiB);
    const t = twoClocks(GiB, 2e9, m);
    expect(t.measured.ns).toBe(2e9);
    expect('ns' in t.modelled && t.modelled.ns).toBeLessThan(2e7);
    expect(formatTwoClocks(t)).toMatch(
      /^measured 2\.000 s \(0\.54 GB\/s .*\) \| modelled 18\.770 ms \(57\.21 GB\/s/,
    );
  });
});
