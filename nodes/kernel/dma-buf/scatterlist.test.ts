import { describe, expect, it } from 'vitest';
import { sgTableCreate, sgTableImporterCopy, sgTableWalk } from './scatterlist.ts';

describe('scatterlist', () => {
  it('scatterlist - bus-address entries keep their flag through create, the importer copy and the walk', () => {
    const t = sgTableCreate(
      [
        { dmaAddress: 0x10000, dmaLength: 0x2000, bus: true },
        { dmaAddress: 0x40000, dmaLength: 0x1000 },
      ],
      [],
      'test',
    );
    expect(t.entries.map((e) => e.bus === true)).toEqual([true, false]);
    expect(sgTableImporterCopy(t).entries[0].bus).toBe(true);
    const seen: Array<[number, number, number, boolean]> = [];
    expect(sgTableWalk(t, 0x1000, 0x1800, (a, at, n, bus) => (seen.push([a, at, n, bus]), 0))).toBe(0);
    expect(seen).toEqual([
      [0x11000, 0, 0x1000, true],
      [0x40000, 0x1000, 0x800, false],
    ]);
  });

  it('scatterlist - a walk outside the table is EINVAL and a non-zero status stops it', () => {
    const t = sgTableCreate([{ dmaAddress: 0x1000, dmaLength: 0x1000 }], [], 'test');
    expect(() => sgTableWalk(t, 0, 0x2000, () => 0)).toThrow(/EINVAL: sgTableWalk/);
    expect(sgTableWalk(t, 0, 0x1000, () => -14)).toBe(-14);
  });
});
