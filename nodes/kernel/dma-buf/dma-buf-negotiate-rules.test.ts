// kernel-semantics §5.3 rule 7 at the dma-buf core: what an attach made without importer offers
// (the counterpart of the branch's legacy dma_buf_sgt_attach) does. The branch negotiates even
// there (an implicit SGT entry with DMA_SGT_NO_P2P) and records the SGT type in attach->map_type;
// the emulator negotiates only when the importer brings offers, so the attachment's mapType
// stays null and the legacy map path runs for the attaching device.
import { describe, expect, it, vi } from 'vitest';
import { onTrace } from '../../../common/trace.ts';
import { gpuExporterOffers, importerDmaAddrOffers } from '../../../topology/interconnects.ts';
import { loadTopologyFile } from '../../../topology/load.ts';
import {
  dmaBufAttach,
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufMapAttachmentUnlocked,
  dmaBufUnmapAttachmentUnlocked,
} from './dma-buf.ts';
import { probeDevice, probeExport } from './fixtures/probe-exporter.ts';
import { DmaDataDirection } from './scatterlist.ts';

const dgx = loadTopologyFile('topology/examples/dgx-like.yaml');

describe('dma-buf negotiation rules', () => {
  it('dma-buf-negotiate - rule 7: a static attach without offers does not negotiate: mapType stays null, matchMapping is not asked, no P2P, the attaching device is mapped', async () => {
    const p = probeExport({
      dynamic: true,
      mapping: { offers: gpuExporterOffers('gpu0'), ctx: { topology: dgx } },
    });
    const match = vi.spyOn(p.dmabuf.ops, 'matchMapping');
    const negotiations: unknown[] = [];
    const off = onTrace('dmabufNegotiate', (m) => negotiations.push(m));
    try {
      const a = await dmaBufAttach(p.dmabuf, probeDevice('nic0'));
      expect(a.mapType).toBeNull(); // the branch would record the SGT type here
      expect(a.peer2peer).toBe(false); // as DMA_SGT_NO_P2P: a static importer never gets P2P
      expect(match).not.toHaveBeenCalled();
      expect(negotiations).toHaveLength(0);
      const sgt = await dmaBufMapAttachmentUnlocked(a, DmaDataDirection.BIDIRECTIONAL);
      await dmaBufUnmapAttachmentUnlocked(a, sgt, DmaDataDirection.BIDIRECTIONAL);
      expect(p.calls.filter((c) => c.op === 'map').map((c) => c.dev)).toEqual(['nic0']);
      await dmaBufDetach(p.dmabuf, a);
      // The same exporter does negotiate once the importer brings offers: the null above is the
      // absence of offers, not an exporter that cannot negotiate.
      const b = await dmaBufDynamicAttach(p.dmabuf, probeDevice('nic0'), {
        allowPeer2peer: true,
        invalidateMappings: () => {},
        mappingOffers: importerDmaAddrOffers(dgx, 'nic0', { acceptsP2p: true }),
      });
      expect(b.mapType?.type).toBe('dma-addr');
      expect(match).toHaveBeenCalledTimes(1);
      expect(negotiations).toHaveLength(1);
      await dmaBufDetach(p.dmabuf, b);
    } finally {
      off();
      match.mockRestore();
    }
  });
});
