/**
 * Boot one emulated host: its kernel (memory, IOMMU, heaps), the devices its topology slice
 * lists (GPUs, mlx5 NICs, VFIO devices, each a worker), and the processes userspace runs.
 *
 * Device memory is capped for emulation: a 40 GiB VRAM or a 64 GiB BAR cannot be a
 * SharedArrayBuffer on a test machine. The topology keeps the real sizes (the timing model and
 * `p2pemu topo` use them); the emulated regions use min(real, cap), and `capped` says which.
 */
import { err } from '../common/errno.ts';
import type { Topology, TphCap } from '../topology/model.ts';
import { type Gpu, gpuProbe, gpuRemove } from './kernel/gpu/gpu.ts';
import { type Mlx5Dev, type Mlx5Options, mlx5Probe, mlx5Remove } from './kernel/infiniband/mlx5/mlx5-ib.ts';
import { HostKernel, type HostKernelOptions } from './kernel/kernel.ts';
import { type PciTphCap, PciTphLoc, PciTphStMode } from './kernel/pci/tph.ts';
import type { VfioPciCoreDevice } from './kernel/vfio/vfio-pci-core.ts';
import { vfioPciProbe, vfioPciRemove } from './kernel/vfio/vfio-pci.ts';
import { Process, processExit } from './uapi/process.ts';

export interface Host {
  readonly kernel: HostKernel;
  /** Devices booted from the topology, by topology id. */
  readonly gpus: ReadonlyMap<string, Gpu>;
  readonly nics: ReadonlyMap<string, Mlx5Dev>;
  readonly vfio: ReadonlyMap<string, VfioPciCoreDevice>;
  /** Device memories emulated smaller than the topology says: "gpu0 VRAM 40 GiB -> 64 MiB". */
  readonly capped: readonly string[];
  /** Start a userspace process on this host. */
  spawn(name: string): Process;
  /**
   * Exit every process (closing its fds and driver state), remove every device (their workers
   * exit), then stop the kernel. Idempotent.
   */
  shutdown(): Promise<void>;
}

export interface TopologyBootOptions extends HostKernelOptions {
  /** Boot the devices of this host of the topology (default: the first host). */
  hostId?: string;
  /** Cap on each emulated device memory (VRAM, BAR), bytes; default 64 MiB. */
  deviceMemoryCap?: number;
  /**
   * Probe options for every mlx5 NIC (e.g. a longer `spinUs` for benchmarks); default: the
   * driver's defaults. `pciId` and `tph` (the TPH Requester capability) always come from the
   * topology; `tphCompleter` (the root port's TPH completer support, default EXT_TPH) from here.
   */
  nic?: Omit<Mlx5Options, 'pciId' | 'tph'>;
}

const MiB = 1 << 20;

const TPH_MODE: Record<TphCap['modes'][number], PciTphStMode> = {
  'no-st': PciTphStMode.NS,
  'interrupt-vector': PciTphStMode.IV,
  'device-specific': PciTphStMode.DS,
};
const TPH_LOC: Record<TphCap['stTable'], PciTphLoc> = {
  none: PciTphLoc.NONE,
  capability: PciTphLoc.CAP,
  msix: PciTphLoc.MSIX,
};

/** A topology device's `tph` as the PCI TPH core's capability; null when it has none. */
function pciTphCapOf(t: TphCap): PciTphCap | null {
  if (!t.supported) return null;
  return {
    modes: t.modes.map((m) => TPH_MODE[m]),
    extSt: t.extendedSt,
    stTable: TPH_LOC[t.stTable],
    stSize: t.stSize,
  };
}

function human(n: number): string {
  return n >= 1 << 30 ? `${n / (1 << 30)} GiB` : `${n / MiB} MiB`;
}

/** Boot a host with its kernel only; tests and the single-host demo add devices themselves. */
export function bootHost(opts: HostKernelOptions = {}): Host {
  const kernel = new HostKernel(opts);
  const procs: Process[] = [];
  const gpus = new Map<string, Gpu>();
  const nics = new Map<string, Mlx5Dev>();
  const vfio = new Map<string, VfioPciCoreDevice>();
  let down = false;
  return {
    kernel,
    gpus,
    nics,
    vfio,
    capped: [],
    spawn(name) {
      const p = new Process(kernel, name);
      procs.push(p);
      return p;
    },
    async shutdown() {
      if (down) return;
      down = true;
      for (const p of procs) await processExit(p);
      for (const v of vfio.values()) await vfioPciRemove(v);
      for (const n of nics.values()) await mlx5Remove(n);
      for (const g of gpus.values()) await gpuRemove(g);
      kernel.close();
    },
  };
}

/**
 * Boot a host of `topo`: the kernel, then every GPU, mlx5 NIC and VFIO device of that host,
 * each probed with its topology key as its PCI identity, so P2PDMA decisions follow the PCIe
 * tree. Throws: EINVAL naming hostId when the topology has no such host; probe errors (the
 * devices probed so far are removed first).
 */
export async function bootHostFromTopology(topo: Topology, opts: TopologyBootOptions = {}): Promise<Host> {
  const h = opts.hostId ? topo.hosts.get(opts.hostId) : topo.hosts.values().next().value;
  if (!h)
    throw err(
      'EINVAL',
      `bootHostFromTopology: topology ${topo.name} has no host ${JSON.stringify(opts.hostId ?? '(first)')}`,
    );
  const host = bootHost({ name: h.id, ...opts });
  const gpus = host.gpus as Map<string, Gpu>;
  const nics = host.nics as Map<string, Mlx5Dev>;
  const vfio = host.vfio as Map<string, VfioPciCoreDevice>;
  const capped = host.capped as string[];
  const cap = opts.deviceMemoryCap ?? 64 * MiB;
  const emulatedSize = (what: string, size: number) => {
    const n = Math.min(size, cap);
    if (n < size) capped.push(`${what} ${human(size)} -> ${human(n)}`);
    return n;
  };
  try {
    for (const d of h.devices.values()) {
      if (d.kind === 'gpu') {
        const vramBytes = emulatedSize(`${d.id} VRAM`, d.vram);
        gpus.set(d.id, gpuProbe(host.kernel, d.id, { vramBytes, pciId: d.key, topology: topo }));
      } else if (d.kind === 'nic') {
        const name = h.nodes.get(d.endpoints[0])?.osName ?? d.id;
        nics.set(
          d.id,
          await mlx5Probe(host.kernel, name, { ...opts.nic, pciId: d.key, tph: pciTphCapOf(d.tph) }),
        );
      } else {
        const bars = Array.from({ length: 6 }, (_, i) => {
          const b = d.bars.find((x) => x.index === i);
          return b ? { size: emulatedSize(`${d.id} BAR${i}`, b.size) } : null;
        });
        vfio.set(d.id, vfioPciProbe(host.kernel, d.id, { bars, pciId: d.key, topology: topo }));
      }
    }
  } catch (e) {
    await host.shutdown();
    throw e;
  }
  return host;
}
