/**
 * Small statistics and machine description shared by micro-benchmarks. Wall-clock figures of
 * this machine only: the modelled-hardware clock is reported elsewhere, never mixed in.
 */
import os from 'node:os';
import { readFileSync } from 'node:fs';

/** Value at quantile q (0..1) of `sorted` (ascending), nearest-rank. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

/** Median of an unsorted list (copies it). */
export function median(values: ArrayLike<number>): number {
  return quantile(Float64Array.from(values).sort(), 0.5);
}

/** One line describing where the numbers came from: cores, CPU, whether virtualised, load. */
export function machineLine(): string {
  const cpus = os.cpus();
  const model = cpus[0]?.model.trim() ?? 'unknown cpu';
  let virt = '';
  try {
    // The hypervisor CPU flag: the cores are likely shared with other guests.
    if (/^flags\s*:.*\bhypervisor\b/m.test(readFileSync('/proc/cpuinfo', 'utf8')))
      virt = ', virtualised (shared)';
  } catch {
    // not Linux: say nothing rather than guess
  }
  const load = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  return `machine: ${cpus.length} cores (${model})${virt}, load ${load}; node ${process.version} ${process.platform}-${process.arch}`;
}
