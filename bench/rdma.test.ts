// The RDMA bench's shape on a tiny budget: both routes booted, measured and shut down, every
// figure present and positive. Timing goals are the bench's to report, never asserted here.
import { describe, expect, it } from 'vitest';
import { liveWorkers } from '../common/worker.ts';
import { format, run } from './rdma.ts';

describe('bench rdma', () => {
  it('bench - rdma runs on GPU buffers over both routes and reports every figure', {
    timeout: 60_000,
  }, async () => {
    const r = await run({ iterations: 20 });
    expect(
      r.routes.map((x) => [x.id, x.mapping.expected, [...new Set(x.mapping.attaches.map((a) => a.mapType))]]),
    ).toEqual([
      ['p2p-bus-addr', 'BUS_ADDR', ['BUS_ADDR']],
      ['host-bridge-iommu', 'THRU_HOST_BRIDGE', ['THRU_HOST_BRIDGE']],
    ]);
    for (const route of r.routes) {
      expect(route.mapping.placement).toEqual(['vram', 'vram']);
      expect(route.bandwidth.map((b) => b.size)).toEqual([64 << 10, 1 << 20, 16 << 20]);
      for (const b of route.bandwidth) {
        expect(b.rawGBps).toBeGreaterThan(0);
        expect(b.rdmaGBps).toBeGreaterThan(0);
        // the row's ratio is the median of its paired rounds' ratios
        expect(b.rounds.length % 2).toBe(1);
        const ratios = b.rounds.map(([raw, rdma]) => rdma / raw).sort((x, y) => x - y);
        expect(b.ratio).toBe(ratios[ratios.length >> 1]);
        expect([b.ratioMin, b.ratioMax]).toEqual([ratios[0], ratios.at(-1)]);
        expect(b.copyKind).toBe('memory.copy');
        expect(b.copyGBps).toBeGreaterThan(0);
        expect(b.workerCopyGBps).toBeGreaterThan(0);
        expect(b.ratioToWorker).toBeGreaterThan(0);
      }
    }
    expect(r.routes[0].mapping.nicIommuVramBytes).toBe(0);
    expect(r.routes[1].mapping.nicIommuVramBytes).toBeGreaterThanOrEqual(2 * (16 << 20));
    expect(r.latency.writeUs).toBeGreaterThan(0);
    expect(r.latency.inlineUs).toBeGreaterThan(0);
    expect(r.latency.pingPongRttUs).toBeGreaterThan(0);
    // the latency ratio is the median of per-round ratios, each against that round's ping-pong
    const lr = r.latency.rounds.map(([pp, w]) => w / pp).sort((x, y) => x - y);
    expect(lr.length % 2).toBe(1);
    expect(r.latency.writeRatio).toBe(lr[lr.length >> 1]);
    // perftest's LAT columns cover every WRITE sample of the rounds
    const t = r.latency.writeStats;
    expect(t.iterations).toBe(r.latency.writeSamples);
    expect(t.min).toBeLessThanOrEqual(t.typical);
    expect(t.typical).toBeLessThanOrEqual(t.p99);
    expect(t.p99).toBeLessThanOrEqual(t.p999);
    expect(t.p999).toBeLessThanOrEqual(t.max);
    for (const rt of r.routes) for (const b of rt.bandwidth) expect(b.wrs).toBeGreaterThan(0);
    expect(format(r)).toMatch(
      /#bytes +#iterations +BW peak\[Gb\/sec\] +BW average\[Gb\/sec\] +MsgRate\[Mpps\]/,
    );
    expect(r.msgRate.perSec).toBeGreaterThan(0);
    expect(r.modelled.map((m) => m.route)).toEqual(['p2p-bus-addr', 'host-bridge-iommu']);
    for (const m of r.modelled) {
      expect(m.model.GBps).toBeGreaterThan(0);
      expect(m.model.latencyNs).toBeGreaterThan(0);
      expect(m.model.legs.map((l) => l.mode)).toEqual(
        m.route === 'p2p-bus-addr' ? ['p2p-switch', 'p2p-switch'] : ['p2p-host-bridge', 'p2p-host-bridge'],
      );
    }
    const text = format(r);
    expect(text).toContain('MODELLED HARDWARE');
    expect(text).toMatch(/\b(met|MISSED)\b/);
    expect(liveWorkers()).toHaveLength(0);
  });
});
