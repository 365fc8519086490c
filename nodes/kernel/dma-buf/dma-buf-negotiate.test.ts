// Interconnect negotiation at attach (kernel-semantics §5): the exporter's matchMapping list
// against the importer's mappingOffers, on the repository's example topologies.
import { describe, expect, it } from 'vitest';
import { onTrace } from '../../../common/trace.ts';
import { gpuExporterOffers, importerDmaAddrOffers } from '../../../topology/interconnects.ts';
import { loadTopologyFile } from '../../../topology/load.ts';
import { dmaBufDynamicAttach } from './dma-buf.ts';
import { probeDevice, probeExport } from './fixtures/probe-exporter.ts';

const dgx = loadTopologyFile('topology/examples/dgx-like.yaml');
const twoHosts = loadTopologyFile('topology/examples/two-hosts.yaml');
const ops = (offers: ReturnType<typeof importerDmaAddrOffers>) => ({
  allowPeer2peer: true,
  invalidateMappings: () => {},
  mappingOffers: offers,
});

describe('dma-buf negotiation', () => {
  it('dma-buf-negotiate - a P2P-capable NIC under the GPU switch gets the P2P dma-addr; it is recorded and traced', async () => {
    const p = probeExport({
      dynamic: true,
      mapping: { offers: gpuExporterOffers('gpu0'), ctx: { topology: dgx } },
    });
    const seen: Array<Record<string, unknown>> = [];
    const off = onTrace('dmabufNegotiate', (m) => seen.push(m as Record<string, unknown>));
    try {
      const a = await dmaBufDynamicAttach(
        p.dmabuf,
        probeDevice('nic0'),
        ops(importerDmaAddrOffers(dgx, 'nic0', { acceptsP2p: true })),
      );
      expect(a.mapType?.type).toBe('dma-addr');
      expect(a.mapType?.bounce).toBe(false);
      expect(a.peer2peer).toBe(true);
    } finally {
      off();
    }
    expect(seen).toHaveLength(1);
    expect(String(seen[0].chosen)).toMatch(/dma-addr/);
    expect((seen[0].trace as string[]).some((l) => l.endsWith('chosen'))).toBe(true);
  });

  it('dma-buf-negotiate - an importer that refuses P2P falls back to the system-memory bounce and loses peer2peer', async () => {
    const p = probeExport({
      dynamic: true,
      mapping: { offers: gpuExporterOffers('gpu0'), ctx: { topology: dgx } },
    });
    const a = await dmaBufDynamicAttach(
      p.dmabuf,
      probeDevice('nic0'),
      ops(importerDmaAddrOffers(dgx, 'nic0', { acceptsP2p: false })),
    );
    expect(a.mapType?.bounce).toBe(true);
    expect(a.mapType?.placement).toBe('system');
    expect(a.peer2peer).toBe(false);
  });

  it('dma-buf-negotiate - nothing matching fails the attach with EINVAL and leaves no attachment', async () => {
    const p = probeExport({
      dynamic: true,
      mapping: { offers: [{ type: 'vram-private', device: 'gpu0' }], ctx: { topology: dgx } },
    });
    await expect(
      dmaBufDynamicAttach(
        p.dmabuf,
        probeDevice('nic0'),
        ops(importerDmaAddrOffers(dgx, 'nic0', { acceptsP2p: true })),
      ),
    ).rejects.toMatchObject({
      code: 'EINVAL',
      message: expect.stringMatching(/no interconnect for attachment of nic0/),
    });
    expect(p.dmabuf.attachments).toHaveLength(0);
    expect(p.calls.map((c) => c.op)).toEqual(['attach', 'detach']);
  });

  it('dma-buf-negotiate - a multipath NIC under best-quality gets the path on the exporter socket', async () => {
    const p = probeExport({
      dynamic: true,
      mapping: { offers: gpuExporterOffers('h0/gpu1'), ctx: { topology: twoHosts, policy: 'best-quality' } },
    });
    const imp = importerDmaAddrOffers(twoHosts, 'h0/nic0', { acceptsP2p: true });
    expect(imp).toHaveLength(2);
    const a = await dmaBufDynamicAttach(p.dmabuf, probeDevice('nic0'), ops(imp));
    expect(a.mapType?.data.dmaDevice).toBe('h0/nic0.1');
    expect(a.mapType?.policy).toBe('best-quality');
  });

  it('dma-buf-negotiate - without importer offers no negotiation happens (mapType stays null)', async () => {
    const p = probeExport({
      dynamic: true,
      mapping: { offers: gpuExporterOffers('gpu0'), ctx: { topology: dgx } },
    });
    const a = await dmaBufDynamicAttach(p.dmabuf, probeDevice('nic0'), {
      allowPeer2peer: true,
      invalidateMappings: () => {},
    });
    expect(a.mapType).toBeNull();
  });
});
