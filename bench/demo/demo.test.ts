import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { withDeadline } from '../../common/deadline.ts';
import { runDemo } from './demo.ts';

describe('demo', () => {
  it('demo - the README main job passes every self-check and tells the invalidate / re-map story', async () => {
    let text = '';
    const out = new Writable({
      write(chunk, _enc, cb) {
        text += String(chunk);
        cb();
      },
    });
    const code = await withDeadline(runDemo({ out, size: 64 * 1024 }), 15_000, 'demo');
    expect(text).not.toMatch(/FAIL/);
    expect(code).toBe(0);
    for (const needle of [
      'invalidate_mappings on dmabuf mock-exporter',
      'wait-kernel-fence',
      'pinned on map',
      'refused: EBUSY',
      'DMAR: [DMA Write]',
      'dma-buf: release dmabuf mock-exporter',
      'p2pdma map type gpu->NIC: BUS_ADDR; buffers now in vram / vram',
      'p2pdma map type gpu->NIC: NOT_SUPPORTED; buffers now in system / system',
      'every device worker exited at shutdown',
    ]) {
      expect(text).toContain(needle);
    }
  });
});
