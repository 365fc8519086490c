/**
 * `p2pemu` command line: one binary, subcommands. Each subcommand imports its module lazily so
 * `p2pemu topo` does not load the kernel, and `p2pemu demo` does not load the topology tools.
 */
import { Command } from 'commander';

const program = new Command();
program.name('p2pemu').description('Emulator of Linux dma-buf buffer sharing across PCIe devices and hosts');

program
  .command('demo')
  .description(
    'single-host dma-buf demo: export, dynamic + static importers, move, invalidate, re-map, fences',
  )
  .action(async () => {
    const { runDemo } = await import('../bench/demo/demo.ts');
    process.exitCode = await runDemo({ out: process.stdout });
  });

program
  .command('bench [name]')
  .description('run a micro-benchmark (emulator against raw baselines); without a name, list them')
  .option('--iterations <n>', 'size of a run: iterations per round (fence), ms per row (rdma, dma)', (v) =>
    Number(v),
  )
  .option('--json', 'print the result as JSON')
  .action(async (name: string | undefined, opts: { iterations?: number; json?: boolean }) => {
    const { benchList, runBench } = await import('../bench/index.ts');
    if (name === undefined) {
      console.log(`benchmarks (npm run bench -- <name>):\n${await benchList()}`);
      return;
    }
    try {
      await runBench(name, { iterations: opts.iterations, json: opts.json });
    } catch (e) {
      // Usage errors (unknown name, bad --iterations) exit 2, like commander's own.
      if ((e as { code?: string }).code !== 'EINVAL') throw e;
      console.error(`p2pemu bench: ${(e as Error).message}`);
      process.exitCode = 2;
    }
  });

const { makeTopoCommand } = await import('../topology/cli.ts');
program.addCommand(makeTopoCommand());
await program.parseAsync(process.argv);
