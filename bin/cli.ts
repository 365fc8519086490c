/**
 * `p2pemu` command line: one binary, subcommands. Each subcommand imports its module lazily so
 * `p2pemu topo` does not load the kernel, and `p2pemu demo` does not load the topology tools.
 */
import { Command } from 'commander';

const program = new Command();
program.name('p2pemu').description('Emulator of Linux dma-buf buffer sharing across PCIe devices and hosts');

await program.parseAsync(process.argv);
