// Keeps docs/rules-coverage.md honest: every numbered rule of kernel-semantics §1 (1-33), §2
// (1-36) and §4 (1-14, PCIe TPH) and every §8 selftest/igt case has exactly one row; a row
// either cites tests that exist, or says n/a: or gap: with a reason; and a gap: row is accepted
// only if it is on GAP_ALLOW below.
// A renamed or deleted test makes "every cited test name occurs in a test file" fail.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const TABLE = join(ROOT, 'docs', 'rules-coverage.md');

/**
 * Rows allowed to say gap:, keyed `§1 rule N`, `§2 rule N`, `§4 rule N` or `§8 <case>`, each with
 * the reason it is not closed. Keep it short: a gap that a few lines of test can close gets the
 * test instead.
 */
const GAP_ALLOW: Record<string, string> = {};

/** The §8.1/§8.2 cases, as the first column of table (c) names them. */
const SECTION8_CASES: readonly string[] = [
  ...[
    'test_sanitycheck',
    'test_signaling',
    'test_add_callback',
    'test_late_add_callback',
    'test_rm_callback',
    'test_late_rm_callback',
    'test_status',
    'test_error',
    'test_wait',
    'test_wait_timeout',
    'test_stub',
    'test_race_signal_callback',
  ].map((c) => `st-dma-fence / ${c}`),
  ...[
    'sanitycheck',
    'find_seqno',
    'find_signaled',
    'find_out_of_order',
    'find_gap',
    'find_race',
    'signal_forward',
    'signal_backward',
    'wait_forward',
    'wait_backward',
    'wait_random',
  ].map((c) => `st-dma-fence-chain / ${c}`),
  ...[
    'sanitycheck',
    'unwrap_array',
    'unwrap_chain',
    'unwrap_chain_array',
    'unwrap_merge',
    'unwrap_merge_duplicate',
    'unwrap_merge_seqno',
    'unwrap_merge_order',
    'unwrap_merge_complex',
    'unwrap_merge_complex_seqno',
  ].map((c) => `st-dma-fence-unwrap / ${c}`),
  ...['sanitycheck', 'test_signaling', 'test_for_each', 'test_for_each_unlocked', 'test_get_fences'].map(
    (c) => `st-dma-resv / ${c}`,
  ),
  ...[
    'fail',
    'no_match_callback',
    'callback_returns',
    'exporter_priority',
    'importer_priority',
    'sgt_attach',
    'mock_attach',
  ].map((c) => `st-dma-mapping / ${c}`),
  'igt dmabuf / all-tests',
  ...[
    'export-basic',
    'export-before-signal',
    'export-multiwait',
    'export-wait-after-attach',
    'import-basic',
    'import-multiple-read-only',
    'import-multiple-read-write',
  ].map((c) => `igt dmabuf_sync_file / ${c}`),
  ...[
    'alloc_timeline',
    'alloc_fence',
    'alloc_fence_invalid_timeline',
    'timeline_closed',
    'timeline_closed_signaled',
    'alloc_merge_fence',
    'sync_busy',
    'sync_busy_fork',
    'sync_busy_fork_unixsocket',
    'sync_merge_invalid',
    'sync_merge',
    'sync_merge_same',
    'sync_multi_timeline_wait',
    'sync_multi_consumer',
    'sync_multi_consumer_producer',
    'sync_multi_producer_single_consumer',
    'sync_expired_merge',
    'sync_random_merge',
  ].map((c) => `igt sw_sync / ${c}`),
  ...['bad-*', 'create-signaled', 'test-valid-cycle'].map((c) => `igt syncobj_basic / ${c}`),
  ...[
    'wait matrix',
    'invalid waits and wait-zero-handles',
    'reset and signal',
    'reset-during-wait-for-submit',
    '*-snapshot',
    '*-complex',
    '*-delayed-signal',
    '*-interrupted',
  ].map((c) => `igt syncobj_wait / ${c}`),
  ...[
    'etime-*',
    '*-available-*',
    'host-signal-points',
    'host-signal-ordered',
    'device-signal-unordered',
    'device-submit-unordered',
    '32bits-limit',
    'signal-point-0 and signal-array',
    'transfer-timeline-point',
    'invalid-transfer-non-existent-point',
    'query errors',
  ].map((c) => `igt syncobj_timeline / ${c}`),
  ...[
    'fence attach and signal',
    'dmabuf-export',
    'dmabuf-mmap',
    'dmabuf-fence',
    'dmabuf-fence-before',
    'busy-fence',
  ].map((c) => `igt vgem_basic / ${c}`),
  'igt prime_vgem / cross-driver fencing',
];

type Section = 'a' | 'b' | 'c' | 'd';
const SECTION_NAME: Record<Section, string> = { a: '§1', b: '§2', c: '§8', d: '§4' };

interface Row {
  section: Section;
  /** Rule number (tables a, b) or case name (table c), as written. */
  key: string;
  coverage: string;
  line: number;
}

interface TestFile {
  path: string;
  text: string;
}

/** Rows of tables (a), (b), (c): the tables under the headings `## (a)`, `## (b)`, `## (c)`. */
function parseTable(md: string): { rows: Row[]; problems: string[] } {
  const rows: Row[] = [];
  const problems: string[] = [];
  let section: Section | null = null;
  let header = false;
  md.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    const heading = /^## \(([abcd])\)/.exec(line);
    if (heading) {
      section = heading[1] as Section;
      header = true;
      return;
    }
    if (line.startsWith('## ')) section = null;
    if (!section || !line.startsWith('|')) return;
    if (/^\|[\s|:-]+\|$/.test(line)) return; // separator
    if (header) {
      header = false; // the column titles
      return;
    }
    const cells = line.split('|').slice(1, -1);
    if (cells.length !== 3) {
      problems.push(`line ${i + 1}: ${cells.length} cells, expected 3 (is there a | in a cell?)`);
      return;
    }
    rows.push({ section, key: cells[0].trim(), coverage: cells[2].trim(), line: i + 1 });
  });
  return { rows, problems };
}

const rowId = (r: Row) => (r.section === 'c' ? `§8 ${r.key}` : `${SECTION_NAME[r.section]} rule ${r.key}`);

/** Rules 1..count of one section: each exactly once, nothing else. */
function checkRuleRows(rows: Row[], section: Section, count: number): string[] {
  const problems: string[] = [];
  const seen = new Map<number, number>();
  for (const r of rows.filter((x) => x.section === section)) {
    const n = Number(r.key);
    if (!Number.isInteger(n) || n < 1 || n > count) {
      problems.push(`line ${r.line}: "${r.key}" is not a rule number 1-${count}`);
      continue;
    }
    seen.set(n, (seen.get(n) ?? 0) + 1);
  }
  for (let n = 1; n <= count; n++) {
    const times = seen.get(n) ?? 0;
    if (times !== 1) problems.push(`${SECTION_NAME[section]} rule ${n}: ${times} rows, expected 1`);
  }
  return problems;
}

/** Every expected §8 case exactly once, and no row for a case not in the list. */
function checkCaseRows(rows: Row[], cases: readonly string[]): string[] {
  const problems: string[] = [];
  const keys = rows.filter((r) => r.section === 'c').map((r) => r.key);
  for (const c of cases) {
    const times = keys.filter((k) => k === c).length;
    if (times !== 1) problems.push(`§8 ${c}: ${times} rows, expected 1`);
  }
  for (const k of new Set(keys)) if (!cases.includes(k)) problems.push(`§8 "${k}" is not a known case`);
  return problems;
}

type Kind = 'tests' | 'n/a' | 'gap';
const kindOf = (r: Row): Kind =>
  r.coverage.startsWith('n/a:') ? 'n/a' : r.coverage.startsWith('gap:') ? 'gap' : 'tests';
const citedNames = (r: Row) => [...r.coverage.matchAll(/`([^`]+)`/g)].map((m) => m[1]);

/** Each row cites at least one test, or gives an n/a:/gap: reason of some substance. */
function checkRowForms(rows: Row[]): string[] {
  const problems: string[] = [];
  for (const r of rows) {
    const kind = kindOf(r);
    if (kind === 'tests' && citedNames(r).length === 0)
      problems.push(`${rowId(r)} (line ${r.line}): no test cited and no n/a: or gap:`);
    if (kind !== 'tests' && r.coverage.slice(4).trim().length < 30)
      problems.push(`${rowId(r)} (line ${r.line}): ${kind} needs a reason`);
  }
  return problems;
}

/** Every name cited in a tests or gap row occurs verbatim in some test file. */
function checkCitations(rows: Row[], files: readonly TestFile[]): string[] {
  const problems: string[] = [];
  for (const r of rows) {
    if (kindOf(r) === 'n/a') continue;
    for (const name of citedNames(r)) {
      if (name.trim().length < 10) problems.push(`${rowId(r)}: "${name}" is too short to identify a test`);
      else if (!files.some((f) => f.text.includes(name)))
        problems.push(`${rowId(r)}: "${name}" is in no *.test.ts file (renamed or removed?)`);
    }
  }
  return problems;
}

/** gap: rows are exactly the allow-listed ones. */
function checkGaps(rows: Row[], allow: Record<string, string>): string[] {
  const problems: string[] = [];
  const gaps = rows.filter((r) => kindOf(r) === 'gap').map(rowId);
  for (const g of gaps) if (!(g in allow)) problems.push(`${g} is gap: but not on GAP_ALLOW`);
  for (const [k, why] of Object.entries(allow)) {
    if (!gaps.includes(k)) problems.push(`GAP_ALLOW has ${k}, which is not a gap: row`);
    if (why.trim().length < 30) problems.push(`GAP_ALLOW ${k} needs a reason`);
  }
  return problems;
}

function testFiles(dir: string, out: TestFile[] = []): TestFile[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules' && e.name !== 'dist' && !e.name.startsWith('.')) testFiles(path, out);
    } else if (e.name.endsWith('.test.ts') && path !== SELF) {
      out.push({ path: relative(ROOT, path), text: readFileSync(path, 'utf8') });
    }
  }
  return out;
}

const md = readFileSync(TABLE, 'utf8');
const { rows, problems: parseProblems } = parseTable(md);
const files = testFiles(ROOT);

describe('rules-coverage', () => {
  it('rules-coverage - the table parses: four tables of three columns', () => {
    expect(parseProblems).toEqual([]);
    expect(new Set(rows.map((r) => r.section))).toEqual(new Set(['a', 'b', 'c', 'd']));
    expect(files.length).toBeGreaterThan(10); // the test files were found
  });

  it('rules-coverage - every §1 rule has exactly one row', () => {
    expect(checkRuleRows(rows, 'a', 33)).toEqual([]);
  });

  it('rules-coverage - every §2 rule has exactly one row', () => {
    expect(checkRuleRows(rows, 'b', 36)).toEqual([]);
  });

  it('rules-coverage - every §4 (PCIe TPH) rule has exactly one row', () => {
    expect(checkRuleRows(rows, 'd', 14)).toEqual([]);
  });

  it('rules-coverage - every §8 selftest and igt case has exactly one row', () => {
    expect(checkCaseRows(rows, SECTION8_CASES)).toEqual([]);
  });

  it('rules-coverage - every row cites a test or gives an n/a or gap reason', () => {
    expect(checkRowForms(rows)).toEqual([]);
  });

  it('rules-coverage - every cited test name occurs in a test file', () => {
    expect(checkCitations(rows, files)).toEqual([]);
  });

  it('rules-coverage - gap rows are exactly the allow-listed ones', () => {
    expect(checkGaps(rows, GAP_ALLOW)).toEqual([]);
  });

  it('rules-coverage - the checks catch a renamed test, a missing or doubled rule, and an unlisted gap', () => {
    // A test renamed in its file: the row citing the old name no longer checks out.
    const cited = rows.find((r) => r.section === 'a' && r.key === '28')!;
    const name = citedNames(cited)[0];
    const renamed = files.map((f) => ({ ...f, text: f.text.split(name).join(name.replace(' - ', ' -- ')) }));
    expect(checkCitations([cited], renamed)).toEqual([
      `§1 rule 28: "${name}" is in no *.test.ts file (renamed or removed?)`,
    ]);
    // Rule 3 dropped, rule 4 twice, an uncovered row, an unlisted gap.
    const doctored = md
      .replace(/^\| 3 \|.*\n/m, '')
      .replace(/^(\| 4 \|.*\n)/m, '$1$1')
      .replace(/^\| 5 \| ([^|]*) \|.*$/m, '| 5 | $1 | nothing here |')
      .replace(/^\| 6 \| ([^|]*) \|.*$/m, '| 6 | $1 | gap: nobody has written the dynamic attach test yet |');
    const d = parseTable(doctored).rows;
    expect(checkRuleRows(d, 'a', 33)).toEqual([
      '§1 rule 3: 0 rows, expected 1',
      '§1 rule 4: 2 rows, expected 1',
    ]);
    expect(checkRowForms(d)).toContain(
      `§1 rule 5 (line ${d.find((r) => r.key === '5' && r.section === 'a')!.line}): no test cited and no n/a: or gap:`,
    );
    expect(checkGaps(d, GAP_ALLOW)).toEqual(['§1 rule 6 is gap: but not on GAP_ALLOW']);
    expect(checkCaseRows(d, [...SECTION8_CASES, 'st-dma-fence / test_new_case'])).toEqual([
      '§8 st-dma-fence / test_new_case: 0 rows, expected 1',
    ]);
  });
});
