/**
 * The GPU side of the RDMA bench (bench/rdma.ts): a host booted from a topology file with real
 * device workers, one GPU buffer object on gpu0 (source, filled by GPU fill jobs) and one on
 * gpu1 (destination), both PRIME-exported and registered as dma-buf MRs on mlx5_0, and a
 * loopback RC QP pair, so an RDMA WRITE goes GPU VRAM -> NIC -> GPU VRAM the way the driver
 * maps it for this topology. It measures nothing itself; it proves what it measures:
 *   - the P2PDMA map type each attachment got (trace p2pemu:gpu:prime_attach), cross-checked by
 *     the IOMMU mappings of VRAM made in the NIC's domain (none for BUS_ADDR, both buffers for
 *     THRU_HOST_BRIDGE) and by both buffers staying in VRAM; a route that got another type throws;
 *   - nothing moved, evicted, invalidated or faulted while it ran (`checkStable`);
 *   - the bytes arrived: GPU checksum jobs over the destination and the source (`verify`).
 * It also lends the raw baseline two VRAM runs of gpu0 and gpu1 outside the buffers.
 * Everything it starts is shut down before `withGpuRdmaRig` returns or throws.
 */
import { fileURLToPath } from 'node:url';
import { onTrace, type TracePoint } from '../common/trace.ts';
import type { Gpu } from '../nodes/kernel/gpu/gpu.ts';
import { PAGE_SIZE } from '../nodes/kernel/dma-buf/scatterlist.ts';
import { dmaBufFromFd } from '../nodes/kernel/dma-buf/dma-buf-file.ts';
import { describeChosen } from '../topology/negotiate.ts';
import { type Host, bootHostFromTopology } from '../nodes/host.ts';
import { gpuGemCreate, gpuGemInfo, gpuPrimeHandleToFd, gpuSubmit, gpuWait } from '../nodes/uapi/gpu.ts';
import type { Process } from '../nodes/uapi/process.ts';
import {
  type IbvContext,
  type IbvCq,
  type IbvMr,
  type IbvQp,
  type UserMem,
  ibvCloseDevice,
  ibvOpenDevice,
  ibvRegDmabufMr,
  mmapAnonymous,
} from '../nodes/uapi/verbs.ts';
import { ALL_ACCESS, rcPair } from '../nodes/uapi/verbs-rc.ts';
import type { PhysArenaDescriptor } from '../nodes/fabric/phys-arena.ts';
import { loadTopologyFile } from '../topology/load.ts';
import type { Topology } from '../topology/model.ts';
import { P2pdmaMapType } from '../topology/p2pdma.ts';

/** One way from gpu0's VRAM through mlx5_0 to gpu1's VRAM: a topology file and the map type it must give. */
export interface RdmaRoute {
  readonly id: string;
  /** Repository-relative topology file. */
  readonly file: string;
  readonly label: string;
  readonly expect: P2pdmaMapType;
}

export const RDMA_ROUTES = {
  busAddr: {
    id: 'p2p-bus-addr',
    file: 'topology/examples/single-host.yaml',
    label: 'P2P by PCI bus address: GPUs and NIC under one PCIe switch',
    expect: P2pdmaMapType.BUS_ADDR,
  },
  hostBridge: {
    id: 'host-bridge-iommu',
    file: 'topology/examples/phb-host.yaml',
    label:
      'through the host bridge: each on its own root port, the NIC reaches VRAM through its IOMMU domain (IOVA)',
    expect: P2pdmaMapType.THRU_HOST_BRIDGE,
  },
} as const satisfies Record<string, RdmaRoute>;

/** The topology of a route (files are resolved from the repository root, whatever the cwd). */
export function routeTopology(route: RdmaRoute): Topology {
  return loadTopologyFile(fileURLToPath(new URL(`../${route.file}`, import.meta.url)));
}

/** What mapping the NIC actually got for the two GPU buffers. */
export interface RouteMapping {
  expected: P2pdmaMapType;
  /** Per attachment of the NIC to a GPU buffer: the exporter's P2PDMA decision (prime_attach trace). */
  attaches: { bo: string; dev: string; mapType: string }[];
  /** The interconnect negotiated on each attachment (attach.mapType); null: the exporter offers none. */
  negotiated: (string | null)[];
  /** Bytes of gpu0/gpu1 VRAM the registrations mapped into the NIC's IOMMU domain. */
  nicIommuVramBytes: number;
  /** Where the source and destination buffers lived after the run (both must stay in VRAM). */
  placement: [string, string];
}

export interface GpuRdmaRig {
  readonly route: RdmaRoute;
  readonly host: Host;
  readonly proc: Process;
  readonly ctx: IbvContext;
  /** The requester end of the loopback pair; WRITEs go from `src` to `dst`. */
  readonly qp: IbvQp;
  readonly cq: IbvCq;
  readonly src: IbvMr;
  readonly dst: IbvMr;
  /** Anonymous user memory (the source of IBV_SEND_INLINE WRITEs). */
  readonly user: UserMem;
  /**
   * Two VRAM runs of `bufBytes`, gpu0's and gpu1's, outside the buffers: the raw baselines; and
   * the host arena both VRAMs live in (null if either has its own SAB: the NIC then copies with `set`).
   */
  readonly raw: { src: Uint8Array; dst: Uint8Array; arena: PhysArenaDescriptor | null };
  readonly mapping: RouteMapping;
  /** Overwrite the destination's first `n` bytes with a pattern the source never has (a GPU fill job). */
  poison(n: number): Promise<void>;
  /** CRC-32 of the first `n` bytes of the destination by a gpu1 job; throws unless gpu0's job over the source says the same. */
  verify(n: number): Promise<number>;
  /** Throws if a buffer moved or was evicted, the NIC's MR was invalidated or faulted, or an IOMMU fault happened. */
  checkStable(): void;
}

export interface RigOptions {
  /** Size of each GPU buffer, bytes (a multiple of 1 MiB). */
  bufBytes: number;
  /** The NIC's busy-poll before it sleeps, microseconds. */
  nicSpinUs: number;
  /** Send queue depth of the RC pair. */
  depth: number;
}

const JOB_MS = 10_000;
const CHUNK = 1 << 20;
const POISON = 0xdead_beef;
// Every 1 MiB of the source gets its own pattern, so a WRITE landing at the wrong offset shows.
const chunkPattern = (i: number) => (Math.imul(i + 1, 0x9e37_79b9) ^ 0x5bd1_e995) >>> 0;

async function gpuJob(p: Process, gpu: string, args: Parameters<typeof gpuSubmit>[2]): Promise<number> {
  const { job } = await gpuSubmit(p, gpu, args);
  const r = await gpuWait(p, gpu, job, JOB_MS);
  if (r.status !== 0) throw new Error(`rdma bench: ${gpu} ${args.op} job failed with status ${r.status}`);
  return r.result;
}

/** Record the events of `points` until the returned function is called. */
function recordTraces(points: readonly TracePoint[]): {
  events: Map<TracePoint, unknown[]>;
  off: () => void;
} {
  const events = new Map<TracePoint, unknown[]>(points.map((p) => [p, []]));
  const offs = points.map((p) => onTrace(p, (m) => events.get(p)!.push(m)));
  return {
    events,
    off: () => {
      for (const f of offs) f();
    },
  };
}

function vramWindow(g: Gpu): [number, number] {
  return [g.vramPhys, g.vramPhys + g.vram.size];
}

/** Check the mapping against the route; throws a message saying what the route got instead. */
function checkMapping(route: RdmaRoute, m: RouteMapping, bufBytes: number): void {
  const got = [...new Set(m.attaches.map((a) => a.mapType))];
  const problems: string[] = [];
  if (m.attaches.length !== 2 || got.length !== 1 || got[0] !== route.expect)
    problems.push(
      `the NIC's attachments to the GPU buffers got ${got.join(', ') || 'no P2PDMA decision'} (${m.attaches.length} attaches)`,
    );
  if (route.expect === P2pdmaMapType.BUS_ADDR && m.nicIommuVramBytes !== 0)
    problems.push(`${m.nicIommuVramBytes} bytes of VRAM were mapped through the NIC's IOMMU`);
  if (route.expect === P2pdmaMapType.THRU_HOST_BRIDGE && m.nicIommuVramBytes < 2 * bufBytes)
    problems.push(
      `only ${m.nicIommuVramBytes} of ${2 * bufBytes} bytes of VRAM were mapped through the NIC's IOMMU`,
    );
  if (m.placement.some((p) => p !== 'vram'))
    problems.push(`the buffers live in ${m.placement.join(' / ')}, not VRAM`);
  if (problems.length > 0)
    throw new Error(
      `rdma bench: route ${route.id} (${route.file}) expected ${route.expect}, but ${problems.join('; ')}: refusing to report a figure for the wrong path`,
    );
}

/**
 * Boot the route's host, build the rig, run `fn` on it, and shut everything down (contexts
 * closed, baseline pages freed, every device worker joined) whether `fn` returned or threw.
 */
export async function withGpuRdmaRig<T>(
  route: RdmaRoute,
  opts: RigOptions,
  fn: (rig: GpuRdmaRig) => Promise<T>,
): Promise<T> {
  const { bufBytes } = opts;
  const host = await bootHostFromTopology(routeTopology(route), {
    ramBytes: 32 << 20,
    // the two buffers and the baseline's two runs fit without eviction (a power of two: BARs)
    deviceMemoryCap: 2 ** Math.ceil(Math.log2(2 * bufBytes + CHUNK)),
    nic: { spinUs: opts.nicSpinUs, queueDepth: 16 },
  });
  let ctx: IbvContext | null = null;
  const freeRaw: (() => void)[] = [];
  // Anything of these during the run means the data path changed under the measurement.
  const unstable = recordTraces(['gpuMove', 'gpuEvict', 'rdmaInvalidate', 'rdmaPageFault', 'iommuFault']);
  try {
    const gpu0 = host.gpus.get('gpu0');
    const gpu1 = host.gpus.get('gpu1');
    const nic = [...host.nics.values()].find((n) => n.name === 'mlx5_0');
    if (!gpu0 || !gpu1 || !nic) throw new Error(`rdma bench: ${route.file} needs gpu0, gpu1 and mlx5_0`);
    for (const g of [gpu0, gpu1]) await g.host.ready(JOB_MS);
    const p = host.spawn('rdma-bench');

    const srcBo = await gpuGemCreate(p, 'gpu0', { size: bufBytes });
    const dstBo = await gpuGemCreate(p, 'gpu1', { size: bufBytes });
    const fills: Promise<number>[] = [];
    for (let off = 0, i = 0; off < bufBytes; off += CHUNK, i++)
      fills.push(
        gpuJob(p, 'gpu0', {
          op: 'fill',
          handle: srcBo,
          offset: off,
          length: CHUNK,
          pattern: chunkPattern(i),
        }),
      );
    fills.push(gpuJob(p, 'gpu1', { op: 'fill', handle: dstBo, length: bufBytes, pattern: POISON }));
    await Promise.all(fills);
    const srcFd = gpuPrimeHandleToFd(p, 'gpu0', srcBo);
    const dstFd = gpuPrimeHandleToFd(p, 'gpu1', dstBo);

    ctx = ibvOpenDevice(p, 'mlx5_0');
    const [a] = await rcPair(ctx, ctx, { depth: opts.depth, timeout: 20, retryCnt: 7 });
    // Registration is where the exporter decides the route and the NIC maps it: watch it.
    const reg = recordTraces(['gpuPrimeAttach', 'iommuMap']);
    let src: IbvMr;
    let dst: IbvMr;
    try {
      src = await ibvRegDmabufMr(a.pd, 0, bufBytes, 0x1000_0000, srcFd, ALL_ACCESS);
      dst = await ibvRegDmabufMr(a.pd, 0, bufBytes, 0x2000_0000, dstFd, ALL_ACCESS);
    } finally {
      reg.off();
    }
    const nicDomain = host.kernel.domainOf(nic.dev.name).id;
    const vram = [vramWindow(gpu0), vramWindow(gpu1)];
    let nicIommuVramBytes = 0;
    for (const m of reg.events.get('iommuMap') as { domain: number; paddr: number; size: number }[]) {
      if (m.domain === nicDomain && vram.some(([lo, hi]) => m.paddr >= lo && m.paddr < hi))
        nicIommuVramBytes += m.size;
    }
    const attaches = (reg.events.get('gpuPrimeAttach') as { bo: string; dev: string; mapType: string }[])
      .filter((e) => e.dev === nic.dev.name)
      .map(({ bo, dev, mapType }) => ({ bo, dev, mapType: String(mapType) }));
    const negotiated = [srcFd, dstFd].flatMap((fd) =>
      dmaBufFromFd(p.fdt, fd, 'rdma bench')
        .attachments.filter((x) => x.dev === nic.dev)
        .map((x) => (x.mapType === null ? null : describeChosen(x.mapType))),
    );
    const placement = () =>
      [gpuGemInfo(p, 'gpu0', srcBo).placement, gpuGemInfo(p, 'gpu1', dstBo).placement] as [string, string];
    const mapping: RouteMapping = {
      expected: route.expect,
      attaches,
      negotiated,
      nicIommuVramBytes,
      placement: placement(),
    };
    checkMapping(route, mapping, bufBytes);

    const pages = bufBytes / PAGE_SIZE;
    const run0 = gpu0.vramAlloc.allocContigPages(pages);
    freeRaw.push(() => gpu0.vramAlloc.freeContigRange(run0.pfn, run0.count));
    const run1 = gpu1.vramAlloc.allocContigPages(pages);
    freeRaw.push(() => gpu1.vramAlloc.freeContigRange(run1.pfn, run1.count));
    const raw = {
      src: gpu0.vram.bytes.subarray(run0.pfn * PAGE_SIZE, (run0.pfn + pages) * PAGE_SIZE),
      dst: gpu1.vram.bytes.subarray(run1.pfn * PAGE_SIZE, (run1.pfn + pages) * PAGE_SIZE),
      arena: gpu0.vram.arena !== null && gpu0.vram.arena === gpu1.vram.arena ? gpu0.vram.arena : null,
    };
    raw.src.fill(0x5a);

    const rig: GpuRdmaRig = {
      route,
      host,
      proc: p,
      ctx,
      qp: a.qp,
      cq: a.cq,
      src: src!,
      dst: dst!,
      user: mmapAnonymous(p, 4096),
      raw,
      mapping,
      poison: async (n) => {
        await gpuJob(p, 'gpu1', { op: 'fill', handle: dstBo, length: n, pattern: POISON });
      },
      verify: async (n) => {
        const [want, got] = await Promise.all([
          gpuJob(p, 'gpu0', { op: 'checksum', handle: srcBo, length: n }),
          gpuJob(p, 'gpu1', { op: 'checksum', handle: dstBo, length: n }),
        ]);
        if (want !== got)
          throw new Error(
            `rdma bench: route ${route.id}: gpu1's checksum of the first ${n} bytes is 0x${got.toString(16)}, gpu0's source says 0x${want.toString(16)}: the data did not arrive`,
          );
        return got;
      },
      checkStable: () => {
        const seen = [...unstable.events].filter(([, v]) => v.length > 0);
        if (seen.length > 0)
          throw new Error(
            `rdma bench: route ${route.id}: the data path changed during the run (${seen.map(([k, v]) => `${v.length} ${k}: ${JSON.stringify(v[0])}`).join('; ')})`,
          );
        mapping.placement = placement();
        checkMapping(route, mapping, bufBytes);
      },
    };
    const out = await fn(rig);
    rig.checkStable();
    return out;
  } finally {
    // Teardown invalidates the MRs on purpose: stop watching first.
    unstable.off();
    try {
      if (ctx) await ibvCloseDevice(ctx);
      for (const f of freeRaw) f();
    } finally {
      await host.shutdown();
    }
  }
}
