/**
 * Units used in topology files: sizes ("80GiB"), rates ("400Gb/s", "25GB/s"), durations ("110ns").
 * Everything is normalised to bytes, bytes per second and nanoseconds, so the timing model never
 * mixes bits and bytes. The regular expressions are shared with the zod schema so the JSON Schema
 * editors see is the same rule the loader applies.
 */

export const SIZE_RE = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|kB|KB|MB|GB|TB)$/;
export const RATE_RE =
  /^(\d+(?:\.\d+)?)\s*(b\/s|kb\/s|Mb\/s|Gb\/s|Tb\/s|Mbps|Gbps|Tbps|B\/s|kB\/s|MB\/s|GB\/s|TB\/s)$/;
export const DURATION_RE = /^(\d+(?:\.\d+)?)\s*(ps|ns|us|µs|ms|s)$/;
/** Linux cpulist syntax: "0-55,112-167" or "7". */
export const CPULIST_RE = /^\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*$/;

const SIZE_UNITS: Record<string, number> = {
  B: 1,
  KiB: 2 ** 10,
  MiB: 2 ** 20,
  GiB: 2 ** 30,
  TiB: 2 ** 40,
  kB: 1e3,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
};

// Rates: bits for b/s and *bps, bytes for B/s; result is bytes per second.
const RATE_UNITS: Record<string, number> = {
  'b/s': 1 / 8,
  'kb/s': 1e3 / 8,
  'Mb/s': 1e6 / 8,
  'Gb/s': 1e9 / 8,
  'Tb/s': 1e12 / 8,
  Mbps: 1e6 / 8,
  Gbps: 1e9 / 8,
  Tbps: 1e12 / 8,
  'B/s': 1,
  'kB/s': 1e3,
  'MB/s': 1e6,
  'GB/s': 1e9,
  'TB/s': 1e12,
};

const DURATION_UNITS: Record<string, number> = { ps: 1e-3, ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9 };

/** Bytes for a size string or a plain byte count; undefined when malformed. */
export function parseSize(v: number | string): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v : undefined;
  const m = SIZE_RE.exec(v.trim());
  return m ? Math.round(Number(m[1]) * SIZE_UNITS[m[2]]) : undefined;
}

/** Bytes per second for a rate string (bits or bytes) or a plain bytes-per-second number. */
export function parseRate(v: number | string): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v > 0 ? v : undefined;
  const m = RATE_RE.exec(v.trim());
  return m ? Number(m[1]) * RATE_UNITS[m[2]] : undefined;
}

/** Nanoseconds for a duration string or a plain number of nanoseconds. */
export function parseDuration(v: number | string): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v : undefined;
  const m = DURATION_RE.exec(v.trim());
  return m ? Number(m[1]) * DURATION_UNITS[m[2]] : undefined;
}

/** Expand a cpulist into sorted CPU numbers (ranges must be ascending). */
export function parseCpuList(v: number | string): number[] | undefined {
  const s = String(v).trim();
  if (!CPULIST_RE.test(s)) return undefined;
  const out: number[] = [];
  for (const part of s.split(',')) {
    const [lo, hi = lo] = part.split('-').map(Number);
    if (hi < lo) return undefined;
    for (let c = lo; c <= hi; c++) out.push(c);
  }
  return out.sort((a, b) => a - b);
}

/** Render CPU numbers back as the canonical cpulist nvidia-smi prints ("0-55,112-167"). */
export function formatCpuList(cpus: readonly number[]): string {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** "28.60 GB/s (228.8 Gb/s)": both units, because PCIe people think in GB/s and NIC people in Gb/s. */
export function formatRate(bytesPerSec: number): string {
  if (!Number.isFinite(bytesPerSec)) return 'unlimited';
  return `${(bytesPerSec / 1e9).toFixed(2)} GB/s (${((bytesPerSec * 8) / 1e9).toFixed(1)} Gb/s)`;
}

export function formatDuration(ns: number): string {
  if (ns < 1e3) return `${ns.toFixed(0)} ns`;
  if (ns < 1e6) return `${(ns / 1e3).toFixed(2)} us`;
  if (ns < 1e9) return `${(ns / 1e6).toFixed(3)} ms`;
  return `${(ns / 1e9).toFixed(3)} s`;
}

export function formatSize(bytes: number): string {
  for (const [unit, n] of [
    ['TiB', 2 ** 40],
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 2 ** 10],
  ] as const) {
    if (bytes >= n && bytes % (n / 1024) === 0) return `${+(bytes / n).toFixed(3)}${unit}`;
  }
  return `${bytes}B`;
}
