/**
 * Topology loading: YAML text -> validated, normalised `Topology` with a stable content hash.
 *
 * Three stages, each reporting its first problem as a TopologyError that names file, line,
 * column and field path: YAML syntax (the yaml package's own errors), the zod schema (types,
 * ranges, unknown fields and kinds), then whole-file rules in build.ts (duplicate ids and BDFs,
 * dangling references, cycles, parent kinds). Only `loadTopologyFile` touches the file system.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isMap, LineCounter, type Node, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { err } from '../common/errno.ts';
import { buildTopology } from './build.ts';
import { describeValue, type PathSegment, TopologyError } from './errors.ts';
import type { Topology } from './model.ts';
import { TopologyFileSchema } from './schema.ts';

/** Read and load a topology file. Throws TopologyError for content, EmuError ENOENT/EIO for the file. */
export function loadTopologyFile(file: string): Topology {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'ENOENT' : 'EIO';
    throw err(code, `cannot read topology file ${file}: ${(e as Error).message}`, { cause: e });
  }
  return parseTopology(text, file);
}

/** Parse and validate topology YAML. `file` only names the source in errors. */
export function parseTopology(text: string, file = '<input>'): Topology {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number, path: PathSegment[]) => {
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, column: col, path };
  };
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    throw new TopologyError(at(e.pos[0], []), `expected valid YAML (${e.message.split('\n')[0]})`);
  }
  const locate = (path: PathSegment[], key?: string) => {
    const p = filePath(doc, path);
    return at(offsetOf(doc, p, key), p);
  };
  const data: unknown = doc.toJS({ maxAliasCount: 1000 });
  if (!data || typeof data !== 'object' || Array.isArray(data)) {
    throw new TopologyError(
      locate([]),
      'expected a mapping with version, name and hosts',
      describeValue(data),
    );
  }

  const parsed = TopologyFileSchema.safeParse(data);
  if (!parsed.success) {
    const issue = firstIssue(parsed.error.issues.map(unwrapUnion), (p) => offsetOf(doc, p));
    const path = issue.path as PathSegment[];
    if (issue.code === 'unrecognized_keys') {
      const key = issue.keys[0];
      const where = locate(path, key);
      throw new TopologyError(
        { ...where, path: [...where.path, key] },
        'expected only known fields here',
        `"${key}"`,
      );
    }
    const value = valueAt(data, path);
    throw new TopologyError(locate(path), expectedText(issue), describeValue(value));
  }

  const fail = (path: PathSegment[], expected: string, got?: string): never => {
    throw new TopologyError(locate(path), expected, got);
  };
  const hash = createHash('sha256').update(canonicalJson(parsed.data)).digest('hex');
  return buildTopology(parsed.data, { file, hash, fail });
}

/** The issue that comes first in the file, so the report points at the earliest problem. */
function firstIssue(issues: z.core.$ZodIssue[], offset: (p: PathSegment[]) => number): z.core.$ZodIssue {
  let best = issues[0];
  let bestAt = offset(best.path as PathSegment[]);
  for (const i of issues.slice(1)) {
    const o = offset(i.path as PathSegment[]);
    if (o < bestAt) [best, bestAt] = [i, o];
  }
  return best;
}

/**
 * A failed union (say "one object or a list of them") reports every branch. When exactly one
 * branch got past the type check, its own first issue says what is wrong, at a precise path.
 */
function unwrapUnion(issue: z.core.$ZodIssue): z.core.$ZodIssue {
  if (issue.code !== 'invalid_union' || issue.message.startsWith('expected ') || !issue.errors?.length)
    return issue;
  const typeOnly = (errs: z.core.$ZodIssue[]) =>
    errs.every((e) => e.code === 'invalid_type' && e.path.length === 0);
  const real = issue.errors.filter((errs) => errs.length > 0 && !typeOnly(errs));
  if (real.length !== 1) return issue;
  const inner = real[0][0];
  return unwrapUnion({ ...inner, path: [...issue.path, ...inner.path] } as z.core.$ZodIssue);
}

const TYPE_WORDS: Record<string, string> = {
  object: 'a mapping',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
};

/** What the field should have been, in words, from a zod issue. */
function expectedText(issue: z.core.$ZodIssue): string {
  if (issue.message.startsWith('expected ')) return issue.message;
  const list = (vs: readonly unknown[]) => vs.map((v) => JSON.stringify(v)).join(', ');
  switch (issue.code) {
    case 'invalid_type':
      return `expected ${TYPE_WORDS[issue.expected] ?? issue.expected}`;
    case 'invalid_value':
      return issue.values.length === 1
        ? `expected ${list(issue.values)}`
        : `expected one of ${list(issue.values)}`;
    case 'invalid_union': {
      const u = issue as { note?: string; options?: unknown[] };
      if (u.options) return `expected one of ${list(u.options)}`;
      return 'expected a value matching one of the allowed forms';
    }
    case 'too_small': {
      const op = issue.inclusive ? '>=' : '>';
      if (issue.origin === 'array') return `expected at least ${issue.minimum} item(s)`;
      if (issue.origin === 'string') return `expected at least ${issue.minimum} character(s)`;
      return `expected a number ${op} ${issue.minimum}`;
    }
    case 'too_big': {
      const op = issue.inclusive ? '<=' : '<';
      if (issue.origin === 'array') return `expected at most ${issue.maximum} item(s)`;
      return `expected a number ${op} ${issue.maximum}`;
    }
    default:
      return `expected a valid value (${issue.message})`;
  }
}

/** Start offset of the YAML node at `path` (or of `key` in the mapping there), else the nearest ancestor. */
function offsetOf(doc: Document, path: PathSegment[], key?: string): number {
  for (let n = path.length; n >= 0; n--) {
    const node = (n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true)) as Node | null | undefined;
    if (!node?.range) continue;
    if (key !== undefined && n === path.length && isMap(node)) {
      const pair = node.items.find((p) => (p.key as { value?: unknown })?.value === key);
      const k = pair?.key as Node | undefined;
      if (k?.range) return k.range[0];
    }
    return node.range[0];
  }
  return 0;
}

/**
 * The path as written in the file: the schema accepts one object where a list is allowed
 * (`pcie: {...}`) and works on `pcie[0]`; drop such indexes so the path names what the user wrote.
 */
function filePath(doc: Document, path: PathSegment[]): PathSegment[] {
  const out: PathSegment[] = [];
  for (const seg of path) {
    if (typeof seg === 'number' && seg === 0) {
      const node = out.length === 0 ? doc.contents : doc.getIn(out, true);
      if (isMap(node)) continue;
    }
    out.push(seg);
  }
  return out;
}

function valueAt(data: unknown, path: readonly PathSegment[]): unknown {
  let v: unknown = data;
  for (const seg of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string | number, unknown>)[seg];
  }
  return v;
}

/** JSON with object keys sorted: two files that mean the same thing hash the same. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(v, (_k, val: unknown) => {
    if (val && typeof val === 'object' && !Array.isArray(val)) {
      const o = val as Record<string, unknown>;
      return Object.fromEntries(
        Object.keys(o)
          .sort()
          .map((k) => [k, o[k]]),
      );
    }
    return val;
  });
}
