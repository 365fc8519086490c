/**
 * DMA routing-point bandwidth: a device's dmaWrite through an IOMMU paging domain against a raw
 * `TypedArray.prototype.set` of the same size into the same SharedArrayBuffer, in one run. Two
 * emulator figures: physically contiguous pages (one run per transfer) and scattered pages (one
 * run per 4 KiB page, the worst case an sg table can give). Wall clock of this machine; the
 * modelled PCIe figures are `p2pemu topo --from/--to`.
 */
import { type DmaBenchResult, runDmaBench } from '../nodes/fabric/dma.bench.ts';

export const description = 'dmaWrite through the IOMMU vs raw TypedArray.set, 64 KiB / 1 MiB / 16 MiB';

export async function run(opts: { iterations?: number }): Promise<DmaBenchResult[]> {
  // iterations here is the time budget per measurement in ms (default 200).
  return runDmaBench(undefined, opts.iterations ?? 200);
}

const kib = (n: number) => (n >= 1 << 20 ? `${n >> 20} MiB` : `${n >> 10} KiB`);

export function format(rows: DmaBenchResult[]): string {
  const lines = [
    'DMA bandwidth through the routing point, GB/s (10^9 B/s), wall clock of this machine',
    `machine: node ${process.version}, ${process.platform}-${process.arch}`,
    '',
    'size      raw set   dmaWrite contiguous  ratio   dmaWrite scattered  ratio',
  ];
  for (const r of rows) {
    lines.push(
      `${kib(r.size).padEnd(8)}  ${r.rawGBps.toFixed(1).padStart(7)}   ${r.iommuContigGBps.toFixed(1).padStart(19)}  ${(r.iommuContigGBps / r.rawGBps).toFixed(2).padStart(5)}x  ${r.iommuScatteredGBps.toFixed(1).padStart(18)}  ${(r.iommuScatteredGBps / r.rawGBps).toFixed(2).padStart(5)}x`,
    );
  }
  return lines.join('\n');
}
