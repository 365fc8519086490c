/**
 * TopologyError: one problem in a topology file, with where it is and what was expected. It is an
 * EmuError (code EINVAL) so generic callers branch on `code`; the CLI branches on the class to
 * print only `message` and exit 2. The message is one line:
 *
 *   topology/examples/x.yaml:12:9: hosts[0].pcie[3].link.width: expected one of 1, 2, 4, 8, 12, 16, 32, got 3
 */
import { EmuError } from '../common/errno.ts';

export type PathSegment = string | number;

export class TopologyError extends EmuError {
  override name = 'TopologyError';
  readonly file: string;
  readonly line: number;
  readonly column: number;
  /** Field path in the file, e.g. "hosts[0].pcie[3].link.width"; "" for the whole document. */
  readonly path: string;
  readonly expected: string;
  readonly got: string | undefined;

  constructor(
    where: { file: string; line: number; column: number; path: PathSegment[] },
    expected: string,
    got?: string,
  ) {
    const path = formatPath(where.path);
    const text = `${where.file}:${where.line}:${where.column}: ${path || '(document)'}: ${expected}${got === undefined ? '' : `, got ${got}`}`;
    super('EINVAL', text);
    // The errno prefix EmuError adds would be noise in front of a file position.
    this.message = text;
    this.file = where.file;
    this.line = where.line;
    this.column = where.column;
    this.path = path;
    this.expected = expected;
    this.got = got;
  }
}

/** ["hosts", 0, "pcie", 3, "link"] -> "hosts[0].pcie[3].link" */
export function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out ? `.${seg}` : seg;
  }
  return out;
}

/** A short rendering of a file value for "got ...". */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing (the field is missing)';
  if (v === null) return 'null';
  if (Array.isArray(v)) return `a list of ${v.length}`;
  if (typeof v === 'object') return 'a mapping';
  const s = JSON.stringify(v);
  return s.length > 48 ? `${s.slice(0, 45)}...` : s;
}
