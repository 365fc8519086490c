/**
 * Topology file schema (zod 4). This is the single definition of the file format: the loader
 * validates with it, `json-schema.ts` exports it for editors, docs/topology.md describes it.
 *
 * Shape: hosts (CPU, NUMA nodes, the PCIe bridges as the kernel sees them, devices that attach
 * to those bridges, private GPU links) and a fabric (switches and cables between NIC ports and
 * switches). Devices carry their PCIe attachment(s) so a multipath NIC is one device with two
 * endpoints. Cross-references (parents, link ends, members) are checked in load.ts, where the
 * whole file is known.
 *
 * Custom messages start with "expected ": load.ts uses them verbatim, and words zod's own
 * issues itself for the rest.
 */
import { z } from 'zod';
import { CPULIST_RE, DURATION_RE, parseDuration, parseRate, parseSize, RATE_RE, SIZE_RE } from './units.ts';

const ID_RE = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
/** [domain:]bus:device.function, as lspci prints it. */
export const BDF_RE = /^(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[01][0-9a-fA-F]\.[0-7]$/;
/** A fabric cable end: "host/nic:port" or a fabric switch id. */
export const PORT_REF_RE = /^([A-Za-z_][A-Za-z0-9_.-]*)\/([A-Za-z_][A-Za-z0-9_.-]*):(\d+)$/;

const ID_MSG = 'expected an identifier (a letter or _, then letters, digits, _ . -)';
export const Id = z.string({ error: ID_MSG }).regex(ID_RE, { error: ID_MSG });

const SIZE_MSG = 'expected a size: a byte count or a string such as 80GiB or 64MiB';
const Size = z
  .union(
    [z.number().int().nonnegative({ error: SIZE_MSG }), z.string().regex(SIZE_RE, { error: SIZE_MSG })],
    {
      error: SIZE_MSG,
    },
  )
  .transform((v) => parseSize(v)!);

const RATE_MSG = 'expected a rate: bytes per second or a string such as 400Gb/s or 25GB/s';
const Rate = z
  .union([z.number().positive({ error: RATE_MSG }), z.string().regex(RATE_RE, { error: RATE_MSG })], {
    error: RATE_MSG,
  })
  .transform((v) => parseRate(v)!);

const DURATION_MSG = 'expected a duration: nanoseconds or a string such as 110ns or 1.5us';
const Duration = z
  .union(
    [z.number().nonnegative({ error: DURATION_MSG }), z.string().regex(DURATION_RE, { error: DURATION_MSG })],
    { error: DURATION_MSG },
  )
  .transform((v) => parseDuration(v)!);

const HEX16_MSG = 'expected a 16-bit PCI id such as 0x8086';
const Hex16 = z
  .union(
    [
      z.number().int({ error: HEX16_MSG }).min(0, { error: HEX16_MSG }).max(0xffff, { error: HEX16_MSG }),
      z.string().regex(/^0x[0-9a-fA-F]{1,4}$/, { error: HEX16_MSG }),
    ],
    { error: HEX16_MSG },
  )
  .transform((v) => (typeof v === 'number' ? v : Number.parseInt(v, 16)));

const CPUS_MSG = 'expected a cpulist such as 0-55,112-167';
const CpuList = z
  .union(
    [z.number().int().nonnegative({ error: CPUS_MSG }), z.string().regex(CPULIST_RE, { error: CPUS_MSG })],
    {
      error: CPUS_MSG,
    },
  )
  .transform((v) => String(v));

const BDF_MSG = 'expected a PCI address [domain:]bus:device.function such as 0000:03:00.0';
const Bdf = z.string({ error: BDF_MSG }).regex(BDF_RE, { error: BDF_MSG });

/** PCIe generations 1..6 and the link widths the spec defines. */
export const PCIE_GENS = [1, 2, 3, 4, 5, 6] as const;
export const PCIE_WIDTHS = [1, 2, 4, 8, 12, 16, 32] as const;
export const PCIE_MPS = [128, 256, 512, 1024, 2048, 4096] as const;

const Link = z
  .strictObject({
    gen: z.literal(PCIE_GENS).describe('PCIe generation of the trained link'),
    width: z.literal(PCIE_WIDTHS).describe('lanes of the trained link'),
  })
  .describe('the trained link to the parent port');

const Mps = z.literal(PCIE_MPS).describe('Max Payload Size in bytes (default 256)');

/**
 * ACS control. `true` is what Linux enables by default on downstream ports (RR and CR);
 * the object names the three bits the kernel's pci_bridge_has_acs_redir() tests.
 */
const Acs = z
  .union([
    z.boolean(),
    z.strictObject({
      rr: z.boolean().default(false).describe('P2P Request Redirect'),
      cr: z.boolean().default(false).describe('P2P Completion Redirect'),
      ec: z.boolean().default(false).describe('P2P Egress Control'),
    }),
  ])
  .transform((v) => (typeof v === 'boolean' ? { rr: v, cr: v, ec: false } : v));

const common = {
  id: Id,
  latency: Duration.optional().describe('traversal latency override'),
};

const HostBridge = z.strictObject({
  ...common,
  kind: z.literal('host-bridge'),
  numa: z.number().int().nonnegative().describe('NUMA node this root complex belongs to'),
  domain: z.number().int().min(0).max(0xffff).default(0),
  bus: z.number().int().min(0).max(255).default(0).describe('root bus number'),
  vendor: Hex16.describe('vendor id of the first device on the root bus (what the P2PDMA allow-list checks)'),
  device: Hex16.describe('device id of the first device on the root bus'),
  p2pBandwidth: Rate.optional().describe('peer-to-peer throughput limit of the root complex'),
});

const RootPort = z.strictObject({
  ...common,
  kind: z.literal('root-port'),
  parent: Id,
  bdf: Bdf,
  mps: Mps.optional(),
  acs: Acs.optional(),
});

const SwitchUpstream = z.strictObject({
  ...common,
  kind: z.literal('switch-upstream'),
  parent: Id,
  bdf: Bdf,
  link: Link,
  mps: Mps.optional(),
  acs: Acs.optional(),
});

const SwitchDownstream = z.strictObject({
  ...common,
  kind: z.literal('switch-downstream'),
  parent: Id,
  bdf: Bdf,
  mps: Mps.optional(),
  acs: Acs.optional(),
});

export const PcieNodeSchema = z.discriminatedUnion('kind', [
  HostBridge,
  RootPort,
  SwitchUpstream,
  SwitchDownstream,
]);

/** Where a device function plugs into the tree. A multipath NIC lists two. */
const PcieAttach = z.strictObject({
  id: Id.optional().describe('endpoint id (default: the device id, or <device>.<n> for several)'),
  parent: Id.describe('root port or switch downstream port'),
  bdf: Bdf,
  link: Link,
  mps: Mps.optional(),
  acs: Acs.optional(),
  name: z.string().optional().describe('OS name of this function (NIC legend, e.g. mlx5_0)'),
});
const PcieAttachments = z
  .union([PcieAttach, z.array(PcieAttach).min(1)])
  .transform((v) => (Array.isArray(v) ? v : [v]));

const Bar = z.strictObject({
  index: z.number().int().min(0).max(5),
  size: Size,
  prefetchable: z.boolean().default(false),
});

const TPH_MODES = ['no-st', 'interrupt-vector', 'device-specific'] as const;
/** PCIe TPH requester capability; `true` means all modes, ST table in MSI-X, 64 entries. */
const Tph = z
  .union([
    z.boolean(),
    z.strictObject({
      modes: z.array(z.enum(TPH_MODES)).min(1),
      stTable: z.enum(['none', 'capability', 'msix']).default('msix'),
      stSize: z.number().int().min(0).max(2048).default(64),
      extendedSt: z.boolean().default(false),
    }),
  ])
  .transform((v) =>
    typeof v === 'boolean'
      ? v
        ? { supported: true, modes: [...TPH_MODES], stTable: 'msix' as const, stSize: 64, extendedSt: false }
        : { supported: false, modes: [], stTable: 'none' as const, stSize: 0, extendedSt: false }
      : { supported: true, ...v },
  );

const Gpu = z.strictObject({
  id: Id,
  kind: z.literal('gpu'),
  model: z.string().optional(),
  vendor: Hex16.default(0x10de),
  vram: Size,
  bars: z.array(Bar).default([]),
  p2p: z.boolean().default(true).describe('false: the GPU driver refuses P2P (GNS in topo -p2p)'),
  numaId: z.number().int().nonnegative().optional().describe('GPU memory NUMA id (GPU NUMA ID column)'),
  pcie: PcieAttachments,
});

const NicPort = z.strictObject({
  port: z.number().int().min(1).max(8),
  rate: Rate.describe('wire data rate, e.g. 400Gb/s'),
  mtu: z.literal([256, 512, 1024, 2048, 4096]).default(4096).describe('RDMA path MTU'),
  linkLayer: z.enum(['ethernet', 'infiniband']).default('ethernet'),
});

const Nic = z.strictObject({
  id: Id,
  kind: z.literal('nic'),
  model: z.string().optional(),
  vendor: Hex16.default(0x15b3),
  driver: z.literal('mlx5').default('mlx5'),
  ports: z.array(NicPort).min(1),
  tph: Tph.prefault(false),
  bars: z.array(Bar).default([]),
  latency: Duration.optional().describe('NIC processing latency per traversal'),
  pcie: PcieAttachments,
});

const Vfio = z.strictObject({
  id: Id,
  kind: z.literal('vfio'),
  model: z.string().optional(),
  vendor: Hex16.default(0x1af4),
  bars: z.array(Bar).min(1),
  tph: Tph.prefault(false),
  pcie: PcieAttachments,
});

export const DeviceSchema = z.discriminatedUnion('kind', [Gpu, Nic, Vfio]);

const PrivateLink = z.strictObject({
  id: Id,
  kind: z.enum(['nvlink', 'xgmi']),
  members: z.array(Id).min(2),
  links: z.number().int().min(1).max(64).describe('bonded links per member (NV# in topo -m)'),
  linkRate: Rate.describe('per link, per direction'),
  latency: Duration.optional(),
});

const Numa = z.strictObject({
  id: z.number().int().min(0).max(1023),
  cpus: CpuList,
  memory: Size,
  memoryBandwidth: Rate.optional(),
  memoryLatency: Duration.optional(),
});

const Host = z.strictObject({
  id: Id,
  hostname: z.string().optional(),
  cpu: z.strictObject({
    vendor: z.enum(['intel', 'amd', 'arm', 'other']),
    family: z.number().int().nonnegative().describe('x86 family (AMD Zen is >= 0x17)'),
    model: z.number().int().nonnegative().optional(),
    name: z.string().optional(),
  }),
  smp: z
    .strictObject({ bandwidth: Rate, latency: Duration })
    .optional()
    .describe('inter-socket link (UPI / xGMI) per direction'),
  numa: z.array(Numa).min(1),
  pcie: z.array(PcieNodeSchema).min(1),
  devices: z.array(DeviceSchema).default([]),
  privateLinks: z.array(PrivateLink).default([]),
});

const PORT_REF_MSG = 'expected a cable end: a fabric switch id or host/nic:port such as h0/nic0:1';
const CableEnd = z
  .string({ error: PORT_REF_MSG })
  .regex(/^(?:[A-Za-z_][A-Za-z0-9_.-]*|[A-Za-z_][A-Za-z0-9_.-]*\/[A-Za-z_][A-Za-z0-9_.-]*:\d+)$/, {
    error: PORT_REF_MSG,
  });

const Fabric = z.strictObject({
  switches: z
    .array(
      z.strictObject({
        id: Id,
        tier: z.enum(['leaf', 'spine', 'core', 'switch']).default('switch'),
        latency: Duration.optional(),
      }),
    )
    .default([]),
  links: z
    .array(
      z.strictObject({
        a: CableEnd,
        b: CableEnd,
        rate: Rate,
        latency: Duration.default(10),
      }),
    )
    .default([]),
});

/** Overrides of the timing model's default per-hop parameters (see docs/timing-model.md). */
const TimingOverrides = z.strictObject({
  pcieLinkLatency: Duration.optional(),
  switchLatency: Duration.optional(),
  rootComplexLatency: Duration.optional(),
  hostBridgeMeshLatency: Duration.optional(),
  memoryLatency: Duration.optional(),
  nicLatency: Duration.optional(),
  fabricSwitchLatency: Duration.optional(),
  privateLinkLatency: Duration.optional(),
  smpBandwidth: Rate.optional(),
  smpLatency: Duration.optional(),
  memoryBandwidth: Rate.optional(),
});

export const TopologyFileSchema = z
  .strictObject({
    $schema: z.string().optional(),
    version: z.literal(1),
    name: Id,
    description: z.string().optional(),
    hosts: z.array(Host).min(1),
    fabric: Fabric.default({ switches: [], links: [] }),
    timing: TimingOverrides.default({}),
  })
  .describe('p2pemu topology file');

export type TopologyFile = z.output<typeof TopologyFileSchema>;
export type TopologyFileInput = z.input<typeof TopologyFileSchema>;
export type HostSpec = TopologyFile['hosts'][number];
export type PcieNodeSpec = HostSpec['pcie'][number];
export type DeviceSpec = HostSpec['devices'][number];
export type PcieAttachSpec = DeviceSpec['pcie'][number];
export type NicPortSpec = Extract<DeviceSpec, { kind: 'nic' }>['ports'][number];
export type PrivateLinkSpec = HostSpec['privateLinks'][number];
export type FabricSpec = TopologyFile['fabric'];
export type TimingOverrides = TopologyFile['timing'];
export type Tph = Extract<DeviceSpec, { kind: 'nic' }>['tph'];
