// The bench registry's contract with the CLI (the benches themselves are experiments, not tests).
import { describe, expect, it } from 'vitest';
import { EmuError } from '../common/errno.ts';
import { benchNames, runBench } from './index.ts';

async function rejection(p: Promise<unknown>): Promise<EmuError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(EmuError);
    return e as EmuError;
  }
  throw new Error('expected a rejection');
}

describe('bench registry', () => {
  it('bench - the fence bench is registered', () => {
    expect(benchNames()).toContain('fence');
  });

  it('bench - an unknown name is EINVAL and the message lists the known benches', async () => {
    const e = await rejection(runBench('nope'));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toMatch(/unknown bench "nope"; known: .*fence/);
  });

  it('bench - iterations must be a positive integer', async () => {
    for (const iterations of [0, -1, 1.5, Number.NaN]) {
      const e = await rejection(runBench('fence', { iterations }));
      expect(e.message).toMatch(/opts\.iterations/);
    }
  });
});
