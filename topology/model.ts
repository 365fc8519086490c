/**
 * The validated, normalised topology the rest of p2pemu reads: what `load.ts` returns. Sizes are
 * bytes, rates bytes per second, durations nanoseconds; BDFs are full ("0000:03:00.0"); every
 * device function is an `endpoint` node in its host's PCIe tree. Objects are plain data, built
 * once and never mutated, so a topology can be shared by every query and cached by `hash`.
 *
 * Keys: ids are unique within a host; `key` ("h0/gpu0") is unique in the topology and is what
 * cross-host callers (timing, negotiation) pass around.
 */
import type { PCIE_GENS, PCIE_WIDTHS, TimingOverrides, TopologyFile, Tph } from './schema.ts';

export const PcieKind = {
  HOST_BRIDGE: 'host-bridge',
  ROOT_PORT: 'root-port',
  SWITCH_UPSTREAM: 'switch-upstream',
  SWITCH_DOWNSTREAM: 'switch-downstream',
  ENDPOINT: 'endpoint',
} as const;
export type PcieKind = (typeof PcieKind)[keyof typeof PcieKind];

export type PcieGen = (typeof PCIE_GENS)[number];
export type PcieWidth = (typeof PCIE_WIDTHS)[number];

export interface Acs {
  readonly rr: boolean;
  readonly cr: boolean;
  readonly ec: boolean;
}

export interface PcieLink {
  readonly gen: PcieGen;
  readonly width: PcieWidth;
}

/** Root-complex identity: what the kernel's P2PDMA host-bridge allow-list looks at. */
export interface HostBridgeInfo {
  readonly vendor: number;
  readonly device: number;
  readonly domain: number;
  readonly bus: number;
  readonly p2pBandwidth: number | undefined;
}

export interface PcieNode {
  readonly key: string;
  readonly id: string;
  readonly host: string;
  readonly kind: PcieKind;
  /** Parent node id; null only for host bridges. */
  readonly parent: string | null;
  /** Child ids in BDF order. */
  readonly children: readonly string[];
  /** Full BDF; null for host bridges (they are not PCI functions). */
  readonly bdf: string | null;
  /** The physical link to the parent; null for host bridges, root ports and switch downstream ports. */
  readonly link: PcieLink | null;
  readonly mps: number;
  readonly acs: Acs;
  readonly latencyNs: number | undefined;
  /** Id of the host bridge at the top of this node's tree. */
  readonly hostBridge: string;
  readonly numa: number;
  /** 0 for host bridges, 1 for root ports, ... */
  readonly depth: number;
  /** Endpoints only: the device this function belongs to, and which of its attachments it is. */
  readonly device: string | null;
  readonly pathIndex: number | null;
  /** Endpoints only: OS name (mlx5_0) if the file gave one. */
  readonly osName: string | null;
  readonly hb: HostBridgeInfo | null;
}

export interface Bar {
  readonly index: number;
  readonly size: number;
  readonly prefetchable: boolean;
}

export type TphCap = Tph;

interface DeviceBase {
  readonly key: string;
  readonly id: string;
  readonly host: string;
  readonly model: string | undefined;
  readonly vendor: number;
  readonly bars: readonly Bar[];
  /** Endpoint node ids, one per PCIe path, in file order (path 0 first). */
  readonly endpoints: readonly string[];
}

export interface GpuDevice extends DeviceBase {
  readonly kind: 'gpu';
  readonly vram: number;
  readonly p2p: boolean;
  readonly numaId: number | undefined;
}

export interface NicPort {
  readonly port: number;
  readonly rate: number;
  readonly mtu: number;
  readonly linkLayer: 'ethernet' | 'infiniband';
}

export interface NicDevice extends DeviceBase {
  readonly kind: 'nic';
  readonly driver: 'mlx5';
  readonly ports: readonly NicPort[];
  readonly tph: TphCap;
  readonly latencyNs: number | undefined;
}

export interface VfioDevice extends DeviceBase {
  readonly kind: 'vfio';
  readonly tph: TphCap;
}

export type Device = GpuDevice | NicDevice | VfioDevice;

export interface PrivateLink {
  readonly key: string;
  readonly id: string;
  readonly host: string;
  readonly kind: 'nvlink' | 'xgmi';
  readonly members: readonly string[];
  readonly links: number;
  readonly linkRate: number;
  readonly latencyNs: number | undefined;
}

export interface NumaNode {
  readonly id: number;
  readonly cpus: readonly number[];
  /** Canonical cpulist, as nvidia-smi prints CPU affinity. */
  readonly cpulist: string;
  readonly memory: number;
  readonly memoryBandwidth: number | undefined;
  readonly memoryLatencyNs: number | undefined;
}

export interface Host {
  readonly id: string;
  readonly hostname: string;
  readonly cpu: {
    readonly vendor: 'intel' | 'amd' | 'arm' | 'other';
    readonly family: number;
    readonly model?: number;
  };
  readonly smp: { readonly bandwidth: number; readonly latencyNs: number } | undefined;
  readonly numa: ReadonlyMap<number, NumaNode>;
  /** Every PCIe node including endpoints, by id. */
  readonly nodes: ReadonlyMap<string, PcieNode>;
  /** Host bridge ids in file order. */
  readonly hostBridges: readonly string[];
  readonly devices: ReadonlyMap<string, Device>;
  readonly privateLinks: readonly PrivateLink[];
}

export type CableEnd =
  | { readonly kind: 'port'; readonly host: string; readonly device: string; readonly port: number }
  | { readonly kind: 'switch'; readonly id: string };

export interface FabricSwitch {
  readonly id: string;
  readonly tier: 'leaf' | 'spine' | 'core' | 'switch';
  readonly latencyNs: number | undefined;
}

export interface FabricLink {
  /** "L<n>" in file order; names the link's two directed resources in the timing model. */
  readonly id: string;
  readonly a: CableEnd;
  readonly b: CableEnd;
  readonly rate: number;
  readonly latencyNs: number;
}

export interface Topology {
  readonly name: string;
  readonly description: string | undefined;
  /** File the topology came from (as given), or "<input>". */
  readonly file: string;
  /** sha256 of the canonical JSON of the validated file: equal for files that mean the same. */
  readonly hash: string;
  /** Hosts in file order. */
  readonly hosts: ReadonlyMap<string, Host>;
  readonly fabric: {
    readonly switches: ReadonlyMap<string, FabricSwitch>;
    readonly links: readonly FabricLink[];
  };
  readonly timing: TimingOverrides;
  /** The validated file, for JSON output and hashing. */
  readonly spec: TopologyFile;
}

/** "h0/nic0:1" — how a NIC port is named in cable ends and traces. */
export function portKey(host: string, device: string, port: number): string {
  return `${host}/${device}:${port}`;
}
