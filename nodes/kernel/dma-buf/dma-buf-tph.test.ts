// dma_buf_get_tph, the dma-buf core side of the 2026 TPH series (kernel-semantics §4.4 v3,
// §4.5 rule 12): width check before the exporter is asked, EOPNOTSUPP without the op, the
// exporter's namespaces never converted, an exporter answer that does not fit refused.
import { describe, expect, it } from 'vitest';
import { expectErr } from '../../../test/support/expect-errno.ts';
import { dmaBufExport, dmaBufPut } from './dma-buf.ts';
import type { DmaBufOps, DmaBufStWidth, DmaBufTph } from './dma-buf-ops.ts';
import { dmaBufGetTph } from './dma-buf-tph.ts';
import { PAGE_SIZE, sgTableCreate } from './scatterlist.ts';
import { err } from '../../../common/errno.ts';

function exporter(getTph?: (w: DmaBufStWidth) => DmaBufTph) {
  const asked: number[] = [];
  const ops: DmaBufOps = {
    mapDmaBuf: () => sgTableCreate([], [], 't'),
    unmapDmaBuf: () => {},
    release: () => {},
    ...(getTph && {
      getTph: (_d, w) => {
        asked.push(w);
        return getTph(w);
      },
    }),
  };
  return { dmabuf: dmaBufExport({ expName: 'tph-exp', ops, size: PAGE_SIZE, priv: {} }), asked };
}

describe('dma-buf get_tph', () => {
  it('dma-buf - get_tph returns the tag of the asked width and never converts between 8 and 16 bits', () => {
    // an exporter with an 8-bit tag only
    const { dmabuf, asked } = exporter((w) => {
      if (w !== 8) throw err('EOPNOTSUPP', `no ${w}-bit tag`);
      return { steeringTag: 0x2a, ph: 2 };
    });
    expect(dmaBufGetTph(dmabuf, 8)).toEqual({ steeringTag: 0x2a, ph: 2 });
    expectErr(() => dmaBufGetTph(dmabuf, 16), 'EOPNOTSUPP', /no 16-bit tag/);
    expect(asked).toEqual([8, 16]);
  });

  it('dma-buf - get_tph checks the width before asking the exporter and is EOPNOTSUPP without the op', () => {
    const { dmabuf, asked } = exporter(() => ({ steeringTag: 1, ph: 0 }));
    for (const w of [0, 12, 32, '8' as never])
      expectErr(() => dmaBufGetTph(dmabuf, w), 'EINVAL', /stWidth .* must be 8 or 16/);
    expect(asked).toEqual([]);
    const bare = exporter().dmabuf;
    expectErr(
      () => dmaBufGetTph(bare, 8),
      'EOPNOTSUPP',
      /exporter tph-exp of dmabuf tph-exp:\d+ has no get_tph/,
    );
    expectErr(() => dmaBufGetTph({} as never, 8), 'EINVAL', /dmabuf is not a dma-buf/);
    dmaBufPut(bare);
    expectErr(() => dmaBufGetTph(bare, 8), 'EBADF', /was released/);
  });

  it('dma-buf - get_tph refuses an exporter answer wider than the asked width or a PH wider than 2 bits', () => {
    const wide = exporter(() => ({ steeringTag: 0x100, ph: 0 })).dmabuf;
    expectErr(() => dmaBufGetTph(wide, 8), 'EIO', /returned steering tag 256 for a 8-bit request/);
    expect(dmaBufGetTph(wide, 16)).toEqual({ steeringTag: 0x100, ph: 0 });
    const ph = exporter(() => ({ steeringTag: 1, ph: 4 })).dmabuf;
    expectErr(() => dmaBufGetTph(ph, 8), 'EIO', /returned ph 4/);
  });
});
