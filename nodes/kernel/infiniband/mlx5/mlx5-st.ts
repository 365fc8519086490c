/**
 * mlx5 steering-tag table management (drivers/net/ethernet/mellanox/mlx5/core/lib/st.c;
 * kernel-semantics §4.3 rules 6-7, §4.5 rule 14).
 *
 * DOC: TPH on the HCA
 * A probe with a TPH capability (Mlx5Options.tph) enables TPH in device-specific mode (the mkey
 * picks its ST entry) through the PCI TPH core (nodes/kernel/pci/tph.ts). As st.c does, the HCA
 * keeps TPH only if its ST table sits in the capability with at least two entries: entry 0 is
 * MLX5_MKC_PCIE_TPH_NO_STEERING_TAG_INDEX ("no steering tag"), so an MSI-X located table (what
 * `tph: true` in a topology means) leaves TPH off. Indices usable by mkeys are 1 .. min(table size
 * - 1, 255) (the mkey field is 8 bits). The requester type the TPH core settled on (the HCA's
 * extended-ST capability lowered to its completer's support) gives the tag width the HCA asks
 * exporters for: 8 bits for TPH_ONLY, 16 for EXT_TPH.
 *
 * Indices are shared: an identical tag already in the table gets its refcount raised; a new tag
 * takes the lowest free index and is written with pcie_tph_set_st_entry. The last dealloc of an
 * index frees its tracking entry (the 2026 fix of the mlx5_st_dealloc_index leak).
 *
 * Thread: kernel. Synchronous, so registrations in flight cannot interleave inside it.
 */
import { err } from '../../../../common/errno.ts';
import { trace } from '../../../../common/trace.ts';
import {
  hcaStBase,
  MLX5_MKC_PCIE_TPH_NO_STEERING_TAG_INDEX,
  MLX5_ST_ENTRIES,
  Mlx5Ctl,
} from '../../../fabric/mlx5-layout.ts';
import type { Device } from '../../device.ts';
import {
  type PciTphCap,
  type PciTphMirror,
  PciTphReqType,
  PciTphStMode,
  pciTphInit,
  pciTphRelease,
  pcieDisableTph,
  pcieEnableTph,
  pcieTphGetReqType,
  pcieTphGetStTableSize,
  pcieTphSetStEntry,
} from '../../pci/tph.ts';

/** Largest mkey ST index (pcie_tph_steering_tag_index is 8 bits). */
export const MLX5_ST_INDEX_MAX = 0xff;

/** struct mlx5_st: the tags this HCA wrote into its ST table, by index. */
export class Mlx5St {
  readonly dev: Device;
  /** Highest usable index (min(table size - 1, 255)). */
  readonly max: number;
  /** Tag width get_tph is asked for: the enabled requester type's. */
  readonly stWidth: 8 | 16;
  /** index -> {tag, refs}; index 0 is never here. */
  readonly entries = new Map<number, { tag: number; refs: number }>();

  constructor(dev: Device, max: number, stWidth: 8 | 16) {
    this.dev = dev;
    this.max = max;
    this.stWidth = stWidth;
  }
}

/**
 * mlx5_st_create: give the HCA's function its TPH state and, with a capability that supports
 * device-specific mode and a capability-located ST table of two entries or more, enable TPH.
 * Returns null when TPH stays off (no capability, mode, table or completer: probe goes on).
 * `mirror` shows the function's TPH config writes to the device (mlx5HcaTphMirror).
 * Called by: mlx5Probe. Throws: pciTphInit's EINVAL for a malformed capability.
 */
export function mlx5StCreate(
  kernel: object,
  dev: Device,
  cap: PciTphCap | null,
  completer: PciTphReqType | undefined,
  mirror?: PciTphMirror,
): Mlx5St | null {
  pciTphInit(kernel, dev, { cap, completer, mirror });
  if (!cap) return null;
  try {
    pcieEnableTph(dev, PciTphStMode.DS);
  } catch (e) {
    trace('rdmaStIndex', () => ({ dev: dev.name, tph: 'off', error: String(e) }));
    return null;
  }
  const size = pcieTphGetStTableSize(dev);
  if (size < 2) {
    // st.c: "we need a reserved entry for non TPH cases"
    pcieDisableTph(dev);
    trace('rdmaStIndex', () => ({ dev: dev.name, tph: 'off', error: `ST table size ${size}` }));
    return null;
  }
  const width = pcieTphGetReqType(dev) === PciTphReqType.EXT_TPH ? 16 : 8;
  return new Mlx5St(dev, Math.min(size - 1, MLX5_ST_INDEX_MAX), width);
}

/**
 * The HCA's view of its TPH config space (fabric/mlx5-layout.ts DOC: TPH stamping): ST entries
 * below MLX5_ST_ENTRIES and the requester enable, stored with Atomics.store into the HCA context
 * `hca`. An ST entry is written before the mkey naming it publishes STATE, so a device that
 * loaded STATE reads the entry.
 */
export function mlx5HcaTphMirror(hca: Int32Array): PciTphMirror {
  return {
    reqEn: (type) => Atomics.store(hca, Mlx5Ctl.TPH_REQ_EN, type),
    stEntry: (index, tag) => {
      if (index < MLX5_ST_ENTRIES) Atomics.store(hca, hcaStBase(index), tag);
    },
  };
}

/** mlx5_st_destroy: TPH off and the function's TPH state dropped (driver remove). */
export function mlx5StDestroy(dev: Device): void {
  pciTphRelease(dev);
}

/**
 * mlx5_st_alloc_index for a raw tag (the tag an exporter's get_tph returned): share the index of
 * an identical tag (refcount), else write it into the lowest free index >= 1.
 * Throws: EINVAL (TPH not enabled on the HCA: no ST table); ENOSPC (every index in use);
 * pcie_tph_set_st_entry's errors (a failed write also turned TPH off on the function).
 */
export function mlx5StAllocIndex(st: Mlx5St | null, dev: Device, tag: number): number {
  const fn = 'mlx5_st_alloc_index';
  if (!st) throw err('EINVAL', `${fn}: TPH is not enabled on ${dev.name}`);
  for (const [index, e] of st.entries) {
    if (e.tag === tag) {
      e.refs++;
      trace('rdmaStIndex', () => ({ dev: dev.name, alloc: index, tag, refs: e.refs }));
      return index;
    }
  }
  let index = MLX5_MKC_PCIE_TPH_NO_STEERING_TAG_INDEX + 1;
  while (index <= st.max && st.entries.has(index)) index++;
  if (index > st.max) throw err('ENOSPC', `${fn}: the ST table of ${dev.name} is full (${st.max} indices)`);
  pcieTphSetStEntry(dev, index, tag);
  st.entries.set(index, { tag, refs: 1 });
  trace('rdmaStIndex', () => ({ dev: dev.name, alloc: index, tag, refs: 1 }));
  return index;
}

/**
 * mlx5_st_dealloc_index: drop one reference of `index`; the last one frees the entry (the table
 * entry itself keeps its stale tag, as in st.c: no mkey points at it any more).
 * Throws: EINVAL (index not allocated: a double free).
 */
export function mlx5StDeallocIndex(st: Mlx5St | null, dev: Device, index: number): void {
  const e = st?.entries.get(index);
  if (!st || !e) throw err('EINVAL', `mlx5_st_dealloc_index: index ${index} of ${dev.name} is not allocated`);
  e.refs--;
  if (e.refs === 0) st.entries.delete(index);
  trace('rdmaStIndex', () => ({ dev: dev.name, dealloc: index, refs: e.refs }));
}
