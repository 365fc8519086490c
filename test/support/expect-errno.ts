/**
 * Test helper: run `p` (a promise or a function) and assert it fails with an EmuError of `code`.
 * Returns the error so the caller can check the message names the argument or object.
 */
import { expect } from 'vitest';
import { EmuError } from '../../common/errno.ts';

export async function expectCode(p: Promise<unknown> | (() => unknown), code: string): Promise<EmuError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(EmuError);
    expect((e as EmuError).code).toBe(code);
    return e as EmuError;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

/** Synchronous form: `fn` must throw an EmuError of `code` whose message matches `text`. */
export function expectErr(fn: () => unknown, code: string, text: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(EmuError);
    expect((e as EmuError).code).toBe(code);
    expect((e as EmuError).message).toMatch(text);
    return;
  }
  throw new Error(`expected ${code} matching ${text}`);
}
