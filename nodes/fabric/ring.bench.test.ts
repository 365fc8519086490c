import { describe, expect, it } from 'vitest';
import { formatRingBench, runRingBench } from './ring.bench.ts';

describe('ring-bench', () => {
  it('ring-bench - moves every message across a worker and reports positive rates', async () => {
    // Small counts: this checks the bench runs and its checksums hold, it measures nothing.
    const rows = await runRingBench({ messages: 20_000, batches: [8], slots: 64 });
    expect(rows.map((r) => r.batch)).toEqual([8]);
    for (const r of rows) {
      expect(r.sameThreadMps).toBeGreaterThan(0);
      expect(r.crossThreadMps).toBeGreaterThan(0);
    }
    expect(formatRingBench(rows)).toMatch(/^batch/);
  });
});
