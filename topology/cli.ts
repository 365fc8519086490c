/**
 * `p2pemu topo FILE`: the nvidia-smi-style view of a topology file. Prints the `topo -m` matrix
 * (default), the `-p2p` matrix, JSON, or a modelled transfer, and writes an SVG picture.
 * `runTopo` does the work with injected output so tests run it in-process; the commander
 * wrapper only maps its return value to the exit code. A bad file prints one line and exits 2.
 */
import { writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { EmuError } from '../common/errno.ts';
import { topologyJsonSchemaText } from './json-schema.ts';
import { loadTopologyFile } from './load.ts';
import { renderSvg } from './svg.ts';
import { formatTransferModel, modelTransfer } from './timing.ts';
import { renderP2pMatrix, renderTopoMatrix, topoJson } from './topo-matrix.ts';
import { parseSize } from './units.ts';

export interface TopoOptions {
  readonly matrix?: boolean;
  readonly p2p?: boolean;
  readonly json?: boolean;
  /** Path to write the SVG to; false (--no-svg) never writes one. */
  readonly svg?: string | boolean;
  readonly host?: string;
  readonly pcieOnly?: boolean;
  readonly from?: string;
  readonly to?: string;
  readonly bytes?: string;
  readonly op?: 'write' | 'read';
  readonly writeSchema?: string | boolean;
}

export interface TopoIo {
  stdout(text: string): void;
  stderr(text: string): void;
  writeFile(path: string, text: string): void;
}

const realIo: TopoIo = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  writeFile: (p, t) => writeFileSync(p, t),
};

export const SCHEMA_FILE = fileURLToPath(new URL('./topology.schema.json', import.meta.url));

/** Run the command; returns the exit code (0 ok, 2 bad input). */
export function runTopo(file: string | undefined, opts: TopoOptions, io: TopoIo = realIo): number {
  const fail = (msg: string) => {
    io.stderr(`${msg}\n`);
    return 2;
  };
  try {
    if (opts.writeSchema) {
      const out = typeof opts.writeSchema === 'string' ? opts.writeSchema : SCHEMA_FILE;
      io.writeFile(out, topologyJsonSchemaText());
      io.stderr(`p2pemu topo: wrote ${out}\n`);
      if (!file) return 0;
    }
    if (!file) return fail('p2pemu topo: missing topology FILE (see p2pemu topo --help)');
    const topo = loadTopologyFile(file);
    if (opts.host !== undefined && !topo.hosts.has(opts.host)) {
      return fail(
        `p2pemu topo: no host "${opts.host}" in ${file} (hosts: ${[...topo.hosts.keys()].join(', ')})`,
      );
    }
    if ((opts.from === undefined) !== (opts.to === undefined))
      return fail('p2pemu topo: --from and --to go together');
    const explicit = opts.matrix || opts.p2p || opts.json || opts.from !== undefined;
    const view = { host: opts.host, pcieOnly: opts.pcieOnly };
    if (opts.json) {
      io.stdout(`${JSON.stringify(topoJson(topo, view), null, 2)}\n`);
    } else {
      if (opts.matrix || !explicit) io.stdout(renderTopoMatrix(topo, view));
      if (opts.p2p) io.stdout(renderP2pMatrix(topo, view));
      if (opts.from !== undefined && opts.to !== undefined) {
        const bytes = parseSize(opts.bytes ?? '1GiB');
        if (bytes === undefined)
          return fail(`p2pemu topo: --bytes: expected a size such as 1GiB, got "${opts.bytes}"`);
        const m = modelTransfer(topo, opts.from, opts.to, bytes, {
          op: opts.op,
          via: opts.pcieOnly ? 'pcie' : 'auto',
        });
        io.stdout(`${formatTransferModel(m)}\n`);
      }
    }
    const svgPath =
      typeof opts.svg === 'string'
        ? opts.svg
        : opts.svg !== false && !explicit
          ? `${topo.name || basename(file)}.svg`
          : undefined;
    if (svgPath) {
      io.writeFile(svgPath, renderSvg(topo));
      io.stderr(`p2pemu topo: wrote ${svgPath}\n`);
    }
    return 0;
  } catch (e) {
    // TopologyError and the loader's file errors are EmuErrors: one line, no stack.
    if (e instanceof EmuError)
      return fail(e.name === 'TopologyError' ? e.message : `p2pemu topo: ${e.message}`);
    throw e;
  }
}

export function makeTopoCommand(): Command {
  return new Command('topo')
    .description('Show a topology file the way nvidia-smi topo does, model transfers, and draw it as SVG')
    .argument('[file]', 'topology YAML file (see topology/examples/)')
    .option(
      '-m, --matrix',
      'print the `nvidia-smi topo -m` matrix (the default when no other view is asked for)',
    )
    .option('--p2p', 'print the `nvidia-smi topo -p2p` matrix (OK, CNS, GNS, TNS, NS), GPUs and NICs')
    .option('--json', 'print matrices and P2PDMA decisions as JSON instead of text')
    .option('--svg <path>', 'write the SVG picture to <path> (default view: ./<topology name>.svg)')
    .option('--no-svg', 'do not write the SVG picture')
    .option('--host <id>', 'only this host')
    .option('--pcie-only', 'ignore NVLink: classify and route over PCIe only')
    .option(
      '--from <device>',
      'model a transfer from this device, endpoint or memory (h0/gpu0, h0/nic0.1, h0/numa0)',
    )
    .option('--to <device>', 'destination of the modelled transfer')
    .option('--bytes <size>', 'size of the modelled transfer', '1GiB')
    .addOption(
      new Option('--op <op>', 'PCIe data TLPs of device-to-device legs')
        .choices(['write', 'read'])
        .default('write'),
    )
    .option(
      '--write-schema [path]',
      'regenerate the JSON Schema for editors (default topology/topology.schema.json)',
    )
    .addHelpText(
      'after',
      '\nExit status: 0 on success, 2 when the file is invalid (one line: file:line:column: field: expected ..., got ...).\n' +
        'Examples:\n  p2pemu topo topology/examples/dgx-like.yaml\n  p2pemu topo topology/examples/two-hosts.yaml --p2p --no-svg\n' +
        '  p2pemu topo topology/examples/dgx-like.yaml --from gpu0 --to nic0 --bytes 1GiB',
    )
    .action((file: string | undefined, opts: TopoOptions) => {
      process.exitCode = runTopo(file, opts);
    });
}
