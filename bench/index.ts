/**
 * Benchmark registry: `p2pemu bench <name>` (npm run bench -- <name>). Each entry is a module
 * loaded only when asked for, exporting `description`, `run(opts)` and `format(result)`.
 * Benchmarks are experiments, not tests: they report, they do not assert.
 */
import { err } from '../common/errno.ts';

export interface BenchOpts {
  /** Iterations per round (each bench documents its default). */
  iterations?: number;
  /** Print the result as JSON instead of the table. */
  json?: boolean;
  /** Where lines go (default console.log). */
  out?: (text: string) => void;
}

interface BenchModule {
  description: string;
  run(opts: { iterations?: number }): Promise<unknown>;
  format(result: never): string;
}

const registry: Record<string, () => Promise<BenchModule>> = {
  dma: () => import('./dma-bandwidth.ts') as Promise<BenchModule>,
  fence: () => import('./fence-latency.ts') as Promise<BenchModule>,
  rdma: () => import('./rdma.ts') as Promise<BenchModule>,
};

/** Registered bench names, sorted. */
export function benchNames(): string[] {
  return Object.keys(registry).sort();
}

/** One line per bench: name and description. Loads every bench module. */
export async function benchList(): Promise<string> {
  const lines: string[] = [];
  for (const name of benchNames()) lines.push(`  ${name.padEnd(10)} ${(await registry[name]()).description}`);
  return lines.join('\n');
}

/**
 * Run bench `name` and print its table (or JSON). Returns the result object.
 * Called by: the CLI (`bench` subcommand). Throws: EINVAL for an unknown name (the message
 * lists the known ones) or a bad iteration count.
 */
export async function runBench(name: string, opts: BenchOpts = {}): Promise<unknown> {
  const load = Object.hasOwn(registry, name) ? registry[name] : undefined;
  if (!load) throw err('EINVAL', `runBench: unknown bench "${name}"; known: ${benchNames().join(', ')}`);
  if (opts.iterations !== undefined && !(Number.isSafeInteger(opts.iterations) && opts.iterations > 0)) {
    throw err('EINVAL', `runBench: opts.iterations ${opts.iterations} must be a positive integer`);
  }
  const mod = await load();
  const result = await mod.run({ iterations: opts.iterations });
  const out = opts.out ?? ((t: string) => console.log(t));
  out(opts.json ? JSON.stringify(result, null, 2) : mod.format(result as never));
  return result;
}
