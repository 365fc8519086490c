/**
 * Load-time size checks for shared-memory layouts (SimBricks' SIMBRICKS_PROTO_MSG_SZCHECK).
 *
 * Every SAB structure in fabric/ declares its words as a named-offset table and calls
 * layoutCheck() once at module load. A layout edit that overlaps two fields or changes the
 * record size then fails on import, in the kernel and in every worker, instead of corrupting
 * shared memory at run time.
 */

/** Bytes per Int32 word: every layout in fabric/ is counted in 32-bit words. */
export const WORD_BYTES = 4;

/**
 * Assert that `fields` are distinct word offsets inside a record of `words` words and that the
 * record is exactly `bytes` bytes.
 * Called by: layout modules at load. Throws: Error (a programming error, not an errno).
 */
export function layoutCheck(
  name: string,
  fields: Readonly<Record<string, number>>,
  words: number,
  bytes: number,
): void {
  if (words * WORD_BYTES !== bytes) {
    throw new Error(`layout ${name}: ${words} words is ${words * WORD_BYTES} bytes, expected ${bytes}`);
  }
  const seen = new Map<number, string>();
  for (const [field, off] of Object.entries(fields)) {
    if (!Number.isInteger(off) || off < 0 || off >= words) {
      throw new Error(`layout ${name}: field ${field} at word ${off} is outside ${words} words`);
    }
    const other = seen.get(off);
    if (other !== undefined)
      throw new Error(`layout ${name}: fields ${other} and ${field} share word ${off}`);
    seen.set(off, field);
  }
}
