import { describe, expect, it } from 'vitest';
import { runDmaBench } from './dma.bench.ts';

describe('dma-bench', () => {
  it('dma-bench - reports positive bandwidths for each requested size', () => {
    const rows = runDmaBench([16 << 10, 64 << 10], 2);
    expect(rows.map((r) => r.size)).toEqual([16 << 10, 64 << 10]);
    for (const r of rows) {
      for (const v of [r.rawGBps, r.iommuContigGBps, r.iommuScatteredGBps]) expect(v).toBeGreaterThan(0);
    }
  });
});
