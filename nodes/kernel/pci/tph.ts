/**
 * PCIe TPH (TLP Processing Hints) requester support of a PCI function: a model of
 * drivers/pci/tph.c (kernel-semantics §4.2 rules 1-5, §4.5 rules 9-11 and 14).
 *
 * DOC: what a function has (rule 9)
 * A driver that finds a TPH Requester capability calls pciTphInit() at probe with:
 *  - the capability: supported ST modes (No-ST, Interrupt-Vector, Device-Specific), whether it can
 *    send extended (16-bit) steering tags, and where its ST table lives (none, right after the
 *    capability with `stSize` 16-bit entries, or in the MSI-X table with one tag per vector);
 *  - the completer support of what its TPH requests reach: the root port's DEVCAP2 "TPH Completer
 *    Supported" (for P2P, the later 2026 revision says the target endpoint's; the caller decides
 *    which one it passes);
 *  - the root port's firmware (_DSM rev 7 function 0xF), which hands out per-CPU steering tags.
 * The state then holds the control register (mode, requester enable), the cached mode / requester
 * type / enabled flags, and the ST table contents.
 *
 * DOC: the root port _DSM stand-in (pcieTphGetCpuSt)
 * There is no ACPI here. Unless the caller passes its own `dsm`, CPU UID `cpu` (0 <= cpu < cpus,
 * default 8 CPUs) answers, deterministically:
 *   volatile memory:   8-bit vm_st  = 0x20 + cpu, 16-bit vm_xst = 0x1000 + cpu, both valid;
 *   persistent memory: 8-bit pm_st  = 0x40 + cpu, 16-bit pm_xst = 0x2000 + cpu, valid on even CPUs.
 * A CPU UID the table does not know fails the _DSM (tag 0, EINVAL). The 8-bit and 16-bit values
 * differ on purpose: they are distinct namespaces (§4.1).
 *
 * Not modelled: save/restore across resets (no device here resets with TPH on), the PH-ignored
 * bits of the _DSM answer, the TLPs themselves (no device stamps hints; docs/tph.md).
 *
 * Thread: kernel. Everything is synchronous; no lock (the kernel's callers serialise per device).
 */
import { err } from '../../../common/errno.ts';
import { trace } from '../../../common/trace.ts';
import type { Device } from '../device.ts';

/** PCI_TPH_CTRL_MODE_SEL values: PCI_TPH_ST_NS_MODE, PCI_TPH_ST_IV_MODE, PCI_TPH_ST_DS_MODE. */
export const PciTphStMode = { NS: 0, IV: 1, DS: 2 } as const;
export type PciTphStMode = (typeof PciTphStMode)[keyof typeof PciTphStMode];

/**
 * Requester types (PCI_TPH_REQ_*, the control register's Requester Enable field). The same
 * encoding is the DEVCAP2 completer support (PCI_EXP_DEVCAP2_TPH_COMP_*), so min() of the two is
 * the effective requester type.
 */
export const PciTphReqType = { DISABLE: 0, TPH_ONLY: 1, EXT_TPH: 3 } as const;
export type PciTphReqType = (typeof PciTphReqType)[keyof typeof PciTphReqType];

/** ST table location (PCI_TPH_LOC_NONE / _CAP / _MSIX, as the capability field encodes them). */
export const PciTphLoc = { NONE: 0, CAP: 1, MSIX: 2 } as const;
export type PciTphLoc = (typeof PciTphLoc)[keyof typeof PciTphLoc];

/** enum tph_mem_type. */
export const TphMemType = { VM: 0, PM: 1 } as const;
export type TphMemType = (typeof TphMemType)[keyof typeof TphMemType];

/** The TPH Requester capability register, decoded. */
export interface PciTphCap {
  /** Supported ST modes (PCI_TPH_CAP_ST_NS / _IV / _DS). */
  readonly modes: readonly PciTphStMode[];
  /** PCI_TPH_CAP_EXT_TPH: the function can send 16-bit extended steering tags. */
  readonly extSt: boolean;
  readonly stTable: PciTphLoc;
  /** ST table entries (CAP) or MSI-X vectors (MSIX); ignored for NONE. 0..2048. */
  readonly stSize: number;
}

/** One CPU's answer of the root port _DSM (struct cpu_st_info, without the PH-ignored bits). */
export interface TphDsmEntry {
  vmSt: number;
  vmStValid: boolean;
  vmXst: number;
  vmXstValid: boolean;
  pmSt: number;
  pmStValid: boolean;
  pmXst: number;
  pmXstValid: boolean;
}

export interface PciTphOptions {
  /** The TPH Requester capability; null or absent: the function has none. */
  cap?: PciTphCap | null;
  /**
   * TPH Completer Supported of the root port above the function (for P2P: of the target).
   * Default EXT_TPH (a root port completing both 8-bit and extended tags).
   */
  completer?: PciTphReqType;
  /** Root-complex integrated endpoint: no root port, its own request type is used as is. */
  rcIntegrated?: boolean;
  /** No root port / no ACPI companion: pcieTphGetCpuSt is ENODEV. Default false. */
  noRootPort?: boolean;
  /** CPU UIDs the default _DSM answers (0..cpus-1). Default 8. */
  cpus?: number;
  /** Replace the default _DSM: null means the call fails (EINVAL, tag 0). */
  dsm?: (cpu: number) => TphDsmEntry | null;
  /** MSI-X enabled (an MSI-X located ST entry can only be written when it is). Default true. */
  msixEnabled?: boolean;
  /**
   * The device's view of its config space: called after each hardware write of the TPH Control
   * requester enable and of an ST entry, so a device model can mirror them into memory its worker
   * reads (mlx5: the HCA context, DOC: TPH stamping in fabric/mlx5-layout.ts).
   */
  mirror?: PciTphMirror;
}

/** Config-space writes a device model sees (PciTphOptions.mirror). */
export interface PciTphMirror {
  reqEn(type: PciTphReqType): void;
  stEntry(index: number, tag: number): void;
}

const MODE_NAMES = ['NS', 'IV', 'DS'] as const;
const LOC_NAMES = ['NONE', 'CAP', 'MSIX'] as const;

/** The TPH state of one function (the pci_dev fields tph_cap, tph_mode, tph_req_type, ...). */
export class PciTph {
  readonly dev: Device;
  readonly kernel: object;
  readonly cap: PciTphCap | null;
  readonly completer: PciTphReqType;
  readonly rcIntegrated: boolean;
  readonly noRootPort: boolean;
  readonly cpus: number;
  readonly dsm: ((cpu: number) => TphDsmEntry | null) | undefined;
  msixEnabled: boolean;
  readonly mirror: PciTphMirror | undefined;
  /** Cached state (pdev->tph_mode, tph_req_type, tph_enabled). */
  mode: PciTphStMode = PciTphStMode.NS;
  reqType: PciTphReqType = PciTphReqType.DISABLE;
  enabled = false;
  /** The control register: mode select and requester enable as the hardware sees them. */
  ctrlMode: PciTphStMode = PciTphStMode.NS;
  ctrlReqEn: PciTphReqType = PciTphReqType.DISABLE;
  /** ST entries: the capability's table (CAP) or the MSI-X vector-control tags (MSIX). */
  readonly stEntries: Uint16Array;

  constructor(kernel: object, dev: Device, opts: PciTphOptions) {
    this.kernel = kernel;
    this.dev = dev;
    this.cap = opts.cap ?? null;
    this.completer = opts.completer ?? PciTphReqType.EXT_TPH;
    this.rcIntegrated = opts.rcIntegrated ?? false;
    this.noRootPort = opts.noRootPort ?? false;
    this.cpus = opts.cpus ?? 8;
    this.dsm = opts.dsm;
    this.msixEnabled = opts.msixEnabled ?? true;
    this.mirror = opts.mirror;
    const n = this.cap && this.cap.stTable !== PciTphLoc.NONE ? this.cap.stSize : 0;
    this.stEntries = new Uint16Array(n);
  }

  toString(): string {
    return this.dev.name;
  }
}

const states = new WeakMap<Device, PciTph>();

/** Write the control register's requester enable (and show it to the device model). */
function setReqEn(t: PciTph, v: PciTphReqType): void {
  t.ctrlReqEn = v;
  t.mirror?.reqEn(v);
}
const noTph = new WeakSet<object>();

function isObject(v: unknown): v is object {
  return typeof v === 'object' && v !== null;
}

function checkCap(fn: string, cap: PciTphCap): void {
  if (!isObject(cap) || !Array.isArray(cap.modes)) throw err('EINVAL', `${fn}: cap is not a TPH capability`);
  for (const m of cap.modes)
    if (m !== 0 && m !== 1 && m !== 2)
      throw err('EINVAL', `${fn}: cap.modes holds ${String(m)}, not an ST mode`);
  if (cap.stTable !== 0 && cap.stTable !== 1 && cap.stTable !== 2)
    throw err('EINVAL', `${fn}: cap.stTable ${String(cap.stTable)} is not a PciTphLoc`);
  if (!(Number.isInteger(cap.stSize) && cap.stSize >= 0 && cap.stSize <= 2048))
    throw err('EINVAL', `${fn}: cap.stSize ${String(cap.stSize)} must be an integer 0..2048`);
}

/**
 * Give `dev` (a PCI function of `kernel`) its TPH state; a function without the capability gets
 * one too (cap null), so enable can say EINVAL like the kernel. Called by: drivers at probe.
 * Throws: EINVAL naming dev or a cap field; EEXIST if `dev` already has a TPH state.
 */
export function pciTphInit(kernel: object, dev: Device, opts: PciTphOptions = {}): PciTph {
  const fn = 'pci_tph_init';
  if (!isObject(kernel)) throw err('EINVAL', `${fn}: kernel is not a host kernel`);
  if (!isObject(dev) || typeof dev.name !== 'string') throw err('EINVAL', `${fn}: dev is not a device`);
  if (states.has(dev)) throw err('EEXIST', `${fn}: ${dev.name} already has a TPH state`);
  if (opts.cap) checkCap(fn, opts.cap);
  const c = opts.completer ?? PciTphReqType.EXT_TPH;
  if (c !== 0 && c !== 1 && c !== 3)
    throw err('EINVAL', `${fn}: completer ${String(c)} is not a TPH completer type (0, 1 or 3)`);
  const t = new PciTph(kernel, dev, opts);
  states.set(dev, t);
  return t;
}

/** Drop `dev`'s TPH state (driver remove): disables TPH first. No-op without one. */
export function pciTphRelease(dev: Device): void {
  const t = states.get(dev);
  if (!t) return;
  pcieDisableTph(dev);
  states.delete(dev);
}

/** The TPH state of `dev`, or null (not a PCI function with a TPH state). */
export function pciTphOf(dev: Device): PciTph | null {
  return (isObject(dev) && states.get(dev)) || null;
}

/** The `notph` boot parameter of `kernel`: TPH disabled system-wide (on) or not. */
export function pciTphSetNoTph(kernel: object, on: boolean): void {
  if (!isObject(kernel)) throw err('EINVAL', 'pci_no_tph: kernel is not a host kernel');
  if (on) noTph.add(kernel);
  else noTph.delete(kernel);
}

function stateOf(fn: string, dev: Device): PciTph | null {
  if (!isObject(dev) || typeof (dev as { name?: unknown }).name !== 'string')
    throw err('EINVAL', `${fn}: dev is not a device`);
  return states.get(dev) ?? null;
}

/**
 * pcie_enable_tph (rule 1, rule 10): enable TPH requests of `dev` in ST mode `mode`. The
 * requester type is the function's (EXT_TPH if it can send extended tags, else TPH_ONLY)
 * lowered to its completer's support, unless it is RC integrated.
 * Throws: EBUSY (already enabled); EINVAL naming dev (no TPH capability, TPH disabled
 * system-wide, or no completer support: requester type would be DISABLE) or mode (not an ST
 * mode, or one the function does not support).
 */
export function pcieEnableTph(dev: Device, mode: number): void {
  const fn = 'pcie_enable_tph';
  const t = stateOf(fn, dev);
  if (t?.enabled) throw err('EBUSY', `${fn}: TPH is already enabled on ${dev.name}`);
  if (!t?.cap) throw err('EINVAL', `${fn}: ${dev.name} has no TPH capability`);
  if (noTph.has(t.kernel)) throw err('EINVAL', `${fn}: TPH is disabled system-wide (notph), ${dev.name}`);
  if (mode !== 0 && mode !== 1 && mode !== 2)
    throw err('EINVAL', `${fn}: mode ${String(mode)} is not an ST mode (0 NS, 1 IV, 2 DS)`);
  if (!t.cap.modes.includes(mode))
    throw err('EINVAL', `${fn}: mode ${MODE_NAMES[mode]} is not supported by ${dev.name}`);
  t.mode = mode;
  const own = t.cap.extSt ? PciTphReqType.EXT_TPH : PciTphReqType.TPH_ONLY;
  const reqType = t.rcIntegrated ? own : (Math.min(own, t.completer) as PciTphReqType);
  if (reqType === PciTphReqType.DISABLE) {
    t.reqType = PciTphReqType.DISABLE;
    throw err('EINVAL', `${fn}: the completer of ${dev.name} does not support TPH`);
  }
  t.reqType = reqType;
  t.ctrlMode = mode;
  setReqEn(t, reqType);
  t.enabled = true;
  trace('pciTphEnable', () => ({ dev: dev.name, mode: MODE_NAMES[mode], reqType }));
}

/** pcie_disable_tph (rule 2): clear the control register and the cached state. No-op if off. */
export function pcieDisableTph(dev: Device): void {
  const t = stateOf('pcie_disable_tph', dev);
  if (!t?.enabled) return;
  t.ctrlMode = PciTphStMode.NS;
  setReqEn(t, PciTphReqType.DISABLE);
  t.mode = PciTphStMode.NS;
  t.reqType = PciTphReqType.DISABLE;
  t.enabled = false;
  trace('pciTphDisable', () => ({ dev: dev.name }));
}

/** The requester type TPH was enabled with (the later 2026 revision's helper); DISABLE when off. */
export function pcieTphGetReqType(dev: Device): PciTphReqType {
  const t = stateOf('pcie_tph_get_req_type', dev);
  return t?.enabled ? t.reqType : PciTphReqType.DISABLE;
}

function defaultDsm(cpus: number, cpu: number): TphDsmEntry | null {
  if (cpu >= cpus) return null;
  const even = cpu % 2 === 0;
  return {
    vmSt: 0x20 + cpu,
    vmStValid: true,
    vmXst: 0x1000 + cpu,
    vmXstValid: true,
    pmSt: 0x40 + cpu,
    pmStValid: even,
    pmXst: 0x2000 + cpu,
    pmXstValid: even,
  };
}

/**
 * pcie_tph_get_cpu_st (rule 3): the steering tag for memory of `memType` near CPU UID `cpu`, from
 * the root port _DSM (DOC: the root port _DSM stand-in): 8-bit when the enabled requester type is
 * TPH_ONLY, 16-bit for EXT_TPH, 0 when TPH is not enabled or the entry is not valid.
 * Throws: EINVAL naming dev, memType or cpu (not a CPU UID the _DSM knows: the kernel's tag 0 +
 * -EINVAL); ENODEV (no root port / ACPI companion).
 */
export function pcieTphGetCpuSt(dev: Device, memType: number, cpu: number): number {
  const fn = 'pcie_tph_get_cpu_st';
  const t = stateOf(fn, dev);
  if (memType !== TphMemType.VM && memType !== TphMemType.PM)
    throw err('EINVAL', `${fn}: memType ${String(memType)} is not a tph_mem_type (0 VM, 1 PM)`);
  if (!(Number.isInteger(cpu) && cpu >= 0 && cpu <= 0xffff_ffff))
    throw err('EINVAL', `${fn}: cpu ${String(cpu)} is not a CPU UID`);
  if (!t || t.noRootPort || t.rcIntegrated)
    throw err('ENODEV', `${fn}: ${dev.name} has no root port with a _DSM`);
  const info = t.dsm ? t.dsm(cpu) : defaultDsm(t.cpus, cpu);
  if (!info) throw err('EINVAL', `${fn}: the root port _DSM of ${dev.name} failed for cpu ${cpu}`);
  const reqType = t.enabled ? t.reqType : PciTphReqType.DISABLE;
  const vm = memType === TphMemType.VM;
  if (reqType === PciTphReqType.TPH_ONLY) {
    if (vm) return info.vmStValid ? info.vmSt & 0xff : 0;
    return info.pmStValid ? info.pmSt & 0xff : 0;
  }
  if (reqType === PciTphReqType.EXT_TPH) {
    if (vm) return info.vmXstValid ? info.vmXst & 0xffff : 0;
    return info.pmXstValid ? info.pmXst & 0xffff : 0;
  }
  return 0;
}

/** pcie_tph_get_st_table_loc. Throws: EINVAL naming dev. */
export function pcieTphGetStTableLoc(dev: Device): PciTphLoc {
  return stateOf('pcie_tph_get_st_table_loc', dev)?.cap?.stTable ?? PciTphLoc.NONE;
}

/** pcie_tph_get_st_table_size (rule 5): entries of a capability-located table, else 0. */
export function pcieTphGetStTableSize(dev: Device): number {
  const cap = stateOf('pcie_tph_get_st_table_size', dev)?.cap;
  return cap?.stTable === PciTphLoc.CAP ? cap.stSize : 0;
}

/**
 * pcie_tph_set_st_entry (rule 4, rule 11): write steering tag `tag` into ST entry `index`.
 * No-ST mode: returns without writing. Otherwise the requester is disabled for the write (the
 * spec's caution) and re-enabled after it; a write that fails turns TPH off entirely.
 * Throws: EINVAL naming dev (TPH not enabled; ST table location NONE: TPH turned off), index or
 * tag (not an unsigned int / a 16-bit value; nothing changes); ENXIO (index past the table, or an
 * MSI-X located entry while MSI-X is off: TPH turned off).
 */
export function pcieTphSetStEntry(dev: Device, index: number, tag: number): void {
  const fn = 'pcie_tph_set_st_entry';
  const t = stateOf(fn, dev);
  if (!(Number.isInteger(index) && index >= 0 && index <= 0xffff_ffff))
    throw err('EINVAL', `${fn}: index ${String(index)} is not an unsigned int`);
  if (!(Number.isInteger(tag) && tag >= 0 && tag <= 0xffff))
    throw err('EINVAL', `${fn}: tag ${String(tag)} is not a 16-bit steering tag`);
  if (!t?.enabled) throw err('EINVAL', `${fn}: TPH is not enabled on ${dev.name}`);
  if (t.mode === PciTphStMode.NS) return;
  setReqEn(t, PciTphReqType.DISABLE);
  const loc = t.cap?.stTable ?? PciTphLoc.NONE;
  let error = null;
  if (loc === PciTphLoc.MSIX) {
    if (!t.msixEnabled) error = err('ENXIO', `${fn}: MSI-X is not enabled on ${dev.name}`);
    else if (index >= t.stEntries.length)
      error = err('ENXIO', `${fn}: index ${index}: ${dev.name} has ${t.stEntries.length} MSI-X vectors`);
  } else if (loc === PciTphLoc.CAP) {
    if (index >= t.stEntries.length)
      error = err(
        'ENXIO',
        `${fn}: index ${index} is past the ST table of ${dev.name} (${t.stEntries.length} entries)`,
      );
  } else error = err('EINVAL', `${fn}: ${dev.name} has no ST table (location ${LOC_NAMES[loc]})`);
  if (error) {
    pcieDisableTph(dev);
    throw error;
  }
  t.stEntries[index] = tag;
  t.mirror?.stEntry(index, tag);
  setReqEn(t, t.reqType);
  trace('pciTphSetSt', () => ({ dev: dev.name, index, tag, loc: LOC_NAMES[loc] }));
}

/** The ST entry `index` as the hardware holds it (tests, diagnostics); undefined past the table. */
export function pciTphStEntry(dev: Device, index: number): number | undefined {
  const t = stateOf('pci_tph_st_entry', dev);
  return t?.stEntries[index];
}
