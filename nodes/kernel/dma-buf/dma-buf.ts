/**
 * dma-buf core (drivers/dma-buf/dma-buf.c, 2026 semantics): export, references, attach/detach,
 * pin, map/unmap with pin-on-map, and invalidate_mappings. CPU access, vmap, mmap, poll and the
 * sync_file ioctls are in dma-buf-cpu.ts. The contracts and the locking convention are in
 * dma-buf-ops.ts; every entry point below asserts its side of it on the first line.
 *
 * Errors: EINVAL (bad argument, named), EPERM/EDEADLK (wrong lock state), EBADF (released
 * buffer), EBUSY (refused while mapped/pinned/attached), plus whatever the exporter throws.
 */
import { err } from '../../../common/errno.ts';
import { trace } from '../../../common/trace.ts';
import {
  type Chosen,
  describeChosen,
  formatNegotiationTrace,
  negotiate,
  type Offer,
} from '../../../topology/negotiate.ts';
import type { Device } from '../device.ts';
import {
  type DmaBufAttachOps,
  type DmaBufExportInfo,
  type DmaBufOps,
  dmaBufUnsupportedInvalidateMappings,
} from './dma-buf-ops.ts';
import {
  DmaResv,
  DmaResvUsage,
  dmaResvAssertHeld,
  dmaResvAssertNotHeld,
  dmaResvLock,
  dmaResvUnlock,
  dmaResvWaitTimeout,
} from './dma-resv.ts';
import {
  type DmaDataDirection,
  PAGE_SIZE,
  type SgTable,
  sgTableImporterCopy,
  validDmaDirection,
} from './scatterlist.ts';

/**
 * How long the core waits for KERNEL fences on a pin-on-map (the kernel waits forever; the
 * emulator never hangs: a fence that never signals fails the map with ETIMEDOUT).
 */
export const dmaBufKernelWait = { timeoutMs: 10_000 };

let nextInode = 1;

export class DmaBuf {
  readonly size: number;
  readonly ops: DmaBufOps;
  readonly resv: DmaResv;
  readonly priv: unknown;
  readonly expName: string;
  readonly owner: string | undefined;
  readonly inode = nextInode++;
  /** DMA_BUF_SET_NAME. */
  name = '';
  /** Attachments, in attach order. Changed only with resv held. */
  readonly attachments: DmaBufAttachment[] = [];
  refcount = 1;
  released = false;
  vmappingCounter = 0;

  constructor(info: DmaBufExportInfo) {
    this.size = info.size;
    this.ops = info.ops;
    this.resv = info.resv ?? new DmaResv(`dmabuf:${info.expName}`);
    this.priv = info.priv;
    this.expName = info.expName;
    this.owner = info.owner;
  }

  /** "exp_name:inode", as /sys/kernel/debug/dma_buf/bufinfo shows it. */
  toString(): string {
    return `dmabuf ${this.expName}:${this.inode}${this.name ? ` (${this.name})` : ''}`;
  }
}

export class DmaBufAttachment {
  readonly dmabuf: DmaBuf;
  readonly dev: Device;
  readonly importerOps: DmaBufAttachOps | null;
  readonly importerPriv: unknown;
  /** May be cleared by the exporter's attach, never set (rule 7). */
  peer2peer: boolean;
  /** Exporter's per-attachment data. */
  priv: unknown = undefined;
  /** The negotiated interconnect (attach->map_type on the mapping-types branch), if any. */
  mapType: Chosen | null = null;
  /** Explicit dmaBufPin() count. */
  pinCount = 0;
  /** Importer-visible tables currently mapped, to the exporter's originals. */
  readonly mappings = new Map<SgTable, { sgt: SgTable; dir: DmaDataDirection; pinnedOnMap: boolean }>();
  detached = false;

  constructor(dmabuf: DmaBuf, dev: Device, importerOps: DmaBufAttachOps | null, importerPriv: unknown) {
    this.dmabuf = dmabuf;
    this.dev = dev;
    this.importerOps = importerOps;
    this.importerPriv = importerPriv;
    this.peer2peer = importerOps?.allowPeer2peer ?? false;
  }

  toString(): string {
    return `attachment of ${this.dev.name} to ${this.dmabuf}`;
  }
}

/** dma_buf_is_dynamic: the exporter implements pin/unpin. */
export function dmaBufIsDynamic(dmabuf: DmaBuf): boolean {
  if (!(dmabuf instanceof DmaBuf)) throw err('EINVAL', 'dmaBufIsDynamic: dmabuf is not a dma-buf');
  return typeof dmabuf.ops.pin === 'function';
}

/** dma_buf_attachment_is_dynamic: the importer supplied importer ops. */
export function dmaBufAttachmentIsDynamic(attach: DmaBufAttachment): boolean {
  checkAttachArg('dmaBufAttachmentIsDynamic', attach);
  return attach.importerOps !== null;
}

/** dma_buf_pin_on_map (2026): static importer of a dynamic exporter. */
export function dmaBufPinOnMap(attach: DmaBufAttachment): boolean {
  checkAttachArg('dmaBufPinOnMap', attach);
  return dmaBufIsDynamic(attach.dmabuf) && !dmaBufAttachmentIsDynamic(attach);
}

/**
 * dma_buf_attach_revocable (rule 28): the importer promises to unmap in bounded time after an
 * invalidate. Exporters that revoke (VFIO) call it from their attach op.
 */
export function dmaBufAttachRevocable(attach: DmaBufAttachment): boolean {
  checkAttachArg('dmaBufAttachRevocable', attach);
  const op = invalidateOp(attach.importerOps);
  return op !== undefined && op !== dmaBufUnsupportedInvalidateMappings;
}

function invalidateOp(ops: DmaBufAttachOps | null): ((a: DmaBufAttachment) => void) | undefined {
  return ops?.invalidateMappings ?? ops?.moveNotify;
}

export function checkDmaBuf(fn: string, dmabuf: DmaBuf): void {
  if (!(dmabuf instanceof DmaBuf)) throw err('EINVAL', `${fn}: dmabuf is not a dma-buf`);
  if (dmabuf.released) throw err('EBADF', `${fn}: ${dmabuf} was released`);
}

function checkAttachArg(fn: string, attach: DmaBufAttachment): void {
  if (!(attach instanceof DmaBufAttachment)) throw err('EINVAL', `${fn}: attach is not a dma-buf attachment`);
}

function checkAttach(fn: string, attach: DmaBufAttachment): void {
  checkAttachArg(fn, attach);
  if (attach.detached) throw err('EINVAL', `${fn}: ${attach} is detached`);
  checkDmaBuf(fn, attach.dmabuf);
}

function checkDir(fn: string, dir: number): asserts dir is DmaDataDirection {
  if (!validDmaDirection(dir))
    throw err('EINVAL', `${fn}: direction ${dir} is not a valid dma_data_direction`);
}

/**
 * dma_buf_export (rule 1): create a buffer holding one reference. EINVAL naming the missing
 * field: priv, ops, ops.mapDmaBuf, ops.unmapDmaBuf, ops.release, a lone pin or unpin, or a size
 * that is not a positive multiple of PAGE_SIZE.
 */
export function dmaBufExport(info: DmaBufExportInfo): DmaBuf {
  if (!info || typeof info !== 'object') throw err('EINVAL', 'dmaBufExport: exp_info missing');
  const ops = info.ops;
  if (info.priv === undefined || info.priv === null)
    throw err('EINVAL', 'dmaBufExport: exp_info.priv missing');
  if (!ops) throw err('EINVAL', 'dmaBufExport: exp_info.ops missing');
  for (const op of ['mapDmaBuf', 'unmapDmaBuf', 'release'] as const) {
    if (typeof ops[op] !== 'function') throw err('EINVAL', `dmaBufExport: exp_info.ops.${op} missing`);
  }
  if ((typeof ops.pin === 'function') !== (typeof ops.unpin === 'function')) {
    throw err('EINVAL', 'dmaBufExport: exp_info.ops.pin and ops.unpin must come as a pair');
  }
  if (!Number.isSafeInteger(info.size) || info.size <= 0 || info.size % PAGE_SIZE !== 0) {
    throw err('EINVAL', `dmaBufExport: exp_info.size ${info.size} is not a positive multiple of PAGE_SIZE`);
  }
  if (typeof info.expName !== 'string' || info.expName === '')
    throw err('EINVAL', 'dmaBufExport: exp_info.expName missing');
  const dmabuf = new DmaBuf(info);
  trace('dmabufExport', () => ({ buf: String(dmabuf), size: dmabuf.size, dynamic: dmaBufIsDynamic(dmabuf) }));
  return dmabuf;
}

/** get_dma_buf: take another reference. */
export function getDmaBuf(dmabuf: DmaBuf): DmaBuf {
  checkDmaBuf('getDmaBuf', dmabuf);
  dmabuf.refcount++;
  return dmabuf;
}

/**
 * dma_buf_put: drop a reference; the last one calls ops.release exactly once (rule 3). EBUSY if
 * the last reference goes while attachments or vmaps remain (the kernel BUGs there).
 */
export function dmaBufPut(dmabuf: DmaBuf): void {
  checkDmaBuf('dmaBufPut', dmabuf);
  dmaResvAssertNotHeld(dmabuf.resv, 'dmaBufPut');
  if (dmabuf.refcount === 1) {
    if (dmabuf.attachments.length > 0) {
      throw err(
        'EBUSY',
        `dmaBufPut: last reference of ${dmabuf} dropped with ${dmabuf.attachments.length} attachment(s)`,
      );
    }
    if (dmabuf.vmappingCounter > 0)
      throw err('EBUSY', `dmaBufPut: last reference of ${dmabuf} dropped while vmapped`);
  }
  if (--dmabuf.refcount > 0) return;
  dmabuf.released = true;
  trace('dmabufRelease', () => ({ buf: String(dmabuf) }));
  dmabuf.ops.release(dmabuf);
}

/** dma_buf_attach: static importer (no importer ops, never moved under it). Lock: not held. */
export function dmaBufAttach(dmabuf: DmaBuf, dev: Device): Promise<DmaBufAttachment> {
  return attachCommon('dmaBufAttach', dmabuf, dev, null, undefined);
}

/**
 * dma_buf_dynamic_attach: importer with ops; invalidateMappings (or its alias moveNotify) is
 * mandatory (rule 6, EINVAL). Lock: not held.
 */
export function dmaBufDynamicAttach(
  dmabuf: DmaBuf,
  dev: Device,
  importerOps: DmaBufAttachOps,
  importerPriv?: unknown,
): Promise<DmaBufAttachment> {
  if (!importerOps || typeof importerOps !== 'object') {
    return Promise.reject(err('EINVAL', 'dmaBufDynamicAttach: importer_ops missing'));
  }
  if (!invalidateOp(importerOps)) {
    return Promise.reject(err('EINVAL', 'dmaBufDynamicAttach: importer_ops.invalidateMappings missing'));
  }
  return attachCommon('dmaBufDynamicAttach', dmabuf, dev, importerOps, importerPriv);
}

async function attachCommon(
  fn: string,
  dmabuf: DmaBuf,
  dev: Device,
  importerOps: DmaBufAttachOps | null,
  importerPriv: unknown,
): Promise<DmaBufAttachment> {
  checkDmaBuf(fn, dmabuf);
  if (!dev || typeof dev.name !== 'string') throw err('EINVAL', `${fn}: dev is not a device`);
  dmaResvAssertNotHeld(dmabuf.resv, fn);
  const attach = new DmaBufAttachment(dmabuf, dev, importerOps, importerPriv);
  const p2pBefore = attach.peer2peer;
  // Rule 5: the exporter's attach runs unlocked; only on success is the attachment listed.
  if (dmabuf.ops.attach) await dmabuf.ops.attach(dmabuf, attach);
  if (attach.peer2peer && !p2pBefore) {
    if (dmabuf.ops.detach) await dmabuf.ops.detach(dmabuf, attach);
    throw err(
      'EINVAL',
      `${fn}: exporter ${dmabuf.expName} set peer2peer on ${attach}; it may only clear it (rule 7)`,
    );
  }
  if (dmabuf.ops.matchMapping && importerOps?.mappingOffers) {
    try {
      negotiateMapping(fn, attach, importerOps.mappingOffers);
    } catch (e) {
      if (dmabuf.ops.detach) await dmabuf.ops.detach(dmabuf, attach);
      throw e;
    }
  }
  await dmaResvLock(dmabuf.resv, null);
  dmabuf.attachments.push(attach);
  dmaResvUnlock(dmabuf.resv);
  trace('dmabufAttach', () => ({
    buf: String(dmabuf),
    dev: dev.name,
    dynamic: !!importerOps,
    peer2peer: attach.peer2peer,
  }));
  return attach;
}

// Match the exporter's offers against the importer's (kernel-semantics §5). A system-memory
// winner (bounce) clears peer2peer, which the exporter then honours like any non-P2P importer.
function negotiateMapping(fn: string, attach: DmaBufAttachment, importerOffers: readonly Offer[]): void {
  const { offers, ctx } = attach.dmabuf.ops.matchMapping!(attach);
  const r = negotiate(offers, importerOffers, ctx);
  trace('dmabufNegotiate', () => ({
    buf: String(attach.dmabuf),
    dev: attach.dev.name,
    chosen: r.ok ? describeChosen(r.chosen) : null,
    error: r.ok ? null : r.error.message,
    trace: formatNegotiationTrace(r.trace),
  }));
  if (!r.ok)
    throw err(r.error.code, `${fn}: no interconnect for ${attach}: ${r.error.message}`, { cause: r.error });
  attach.mapType = r.chosen;
  if (r.chosen.bounce) attach.peer2peer = false;
}

/**
 * dma_buf_detach (rule 8): unlist under the lock, then ops.detach unlocked. EBUSY if the
 * importer still has mappings or pins. Lock: not held.
 */
export async function dmaBufDetach(dmabuf: DmaBuf, attach: DmaBufAttachment): Promise<void> {
  checkAttach('dmaBufDetach', attach);
  if (attach.dmabuf !== dmabuf) throw err('EINVAL', `dmaBufDetach: ${attach} does not belong to ${dmabuf}`);
  dmaResvAssertNotHeld(dmabuf.resv, 'dmaBufDetach');
  if (attach.mappings.size > 0)
    throw err('EBUSY', `dmaBufDetach: ${attach} still has ${attach.mappings.size} mapping(s)`);
  if (attach.pinCount > 0) throw err('EBUSY', `dmaBufDetach: ${attach} is still pinned`);
  await dmaResvLock(dmabuf.resv, null);
  const i = dmabuf.attachments.indexOf(attach);
  if (i >= 0) dmabuf.attachments.splice(i, 1);
  attach.detached = true;
  dmaResvUnlock(dmabuf.resv);
  if (dmabuf.ops.detach) await dmabuf.ops.detach(dmabuf, attach);
  trace('dmabufDetach', () => ({ buf: String(dmabuf), dev: attach.dev.name }));
}

/**
 * dma_buf_pin (rule 9): dynamic importers only (EINVAL for static ones); lock held.
 * Exporter errors (EBUSY, ENODEV) pass through.
 */
export async function dmaBufPin(attach: DmaBufAttachment): Promise<void> {
  checkAttach('dmaBufPin', attach);
  if (!dmaBufAttachmentIsDynamic(attach)) throw err('EINVAL', `dmaBufPin: ${attach} is a static attachment`);
  dmaResvAssertHeld(attach.dmabuf.resv, 'dmaBufPin');
  if (attach.dmabuf.ops.pin) await attach.dmabuf.ops.pin(attach);
  attach.pinCount++;
  trace('dmabufPin', () => ({ buf: String(attach.dmabuf), dev: attach.dev.name, explicit: true }));
}

/** dma_buf_unpin: undo dmaBufPin. EINVAL if not pinned or static; lock held. */
export async function dmaBufUnpin(attach: DmaBufAttachment): Promise<void> {
  checkAttach('dmaBufUnpin', attach);
  if (!dmaBufAttachmentIsDynamic(attach))
    throw err('EINVAL', `dmaBufUnpin: ${attach} is a static attachment`);
  dmaResvAssertHeld(attach.dmabuf.resv, 'dmaBufUnpin');
  if (attach.pinCount === 0) throw err('EINVAL', `dmaBufUnpin: ${attach} is not pinned`);
  attach.pinCount--;
  if (attach.dmabuf.ops.unpin) await attach.dmabuf.ops.unpin(attach);
  trace('dmabufUnpin', () => ({ buf: String(attach.dmabuf), dev: attach.dev.name, explicit: true }));
}

/** Is the buffer pinned by anyone (explicit pins or pin-on-map mappings)? Exporters ask before moving. */
export function dmaBufIsPinned(dmabuf: DmaBuf): boolean {
  if (!(dmabuf instanceof DmaBuf)) throw err('EINVAL', 'dmaBufIsPinned: dmabuf is not a dma-buf');
  return dmabuf.attachments.some(
    (a) => a.pinCount > 0 || [...a.mappings.values()].some((m) => m.pinnedOnMap),
  );
}

const handedOut = new WeakSet<SgTable>();

/**
 * dma_buf_map_attachment (rules 13-18): map for attach.dev. Lock held. Static importers of a
 * dynamic exporter are pinned first and the core waits for KERNEL fences before returning; any
 * failure after the pin unpins again. Returns the importer's copy of a fresh table (DMA side only).
 * Errors: EINVAL (bad direction, exporter reused a table or returned nothing: ENOMEM), ETIMEDOUT
 * (KERNEL fence never signalled), exporter errors (ENODEV when revoked).
 */
export async function dmaBufMapAttachment(attach: DmaBufAttachment, dir: DmaDataDirection): Promise<SgTable> {
  checkAttach('dmaBufMapAttachment', attach);
  checkDir('dmaBufMapAttachment', dir);
  const dmabuf = attach.dmabuf;
  dmaResvAssertHeld(dmabuf.resv, 'dmaBufMapAttachment');
  const pinOnMap = dmaBufPinOnMap(attach);
  if (pinOnMap) await dmabuf.ops.pin!(attach);
  let sgt: SgTable;
  try {
    const got = await dmabuf.ops.mapDmaBuf(attach, dir);
    if (!got) throw err('ENOMEM', `dmaBufMapAttachment: ${dmabuf.expName} mapDmaBuf returned nothing`);
    if (handedOut.has(got)) {
      throw err(
        'EINVAL',
        `dmaBufMapAttachment: ${dmabuf.expName} returned a table it already handed out (rule 14)`,
      );
    }
    sgt = got;
    if (pinOnMap) {
      // Static importers never look at fences: the core waits for moves/clears (rule 18).
      const left = await dmaResvWaitTimeout(dmabuf.resv, DmaResvUsage.KERNEL, dmaBufKernelWait.timeoutMs);
      if (left === 0) {
        await dmabuf.ops.unmapDmaBuf(attach, sgt, dir);
        throw err('ETIMEDOUT', `dmaBufMapAttachment: KERNEL fences of ${dmabuf} did not signal`);
      }
    }
  } catch (e) {
    if (pinOnMap) await dmabuf.ops.unpin!(attach);
    throw e;
  }
  handedOut.add(sgt);
  const copy = sgTableImporterCopy(sgt);
  attach.mappings.set(copy, { sgt, dir, pinnedOnMap: pinOnMap });
  trace('dmabufMap', () => ({
    buf: String(dmabuf),
    dev: attach.dev.name,
    nents: sgt.entries.length,
    pinOnMap,
  }));
  return copy;
}

/**
 * dma_buf_unmap_attachment: give back a table from dmaBufMapAttachment; unpins a pin-on-map.
 * Lock held. EINVAL if `sgt` is not a live mapping of this attachment or `dir` differs.
 */
export async function dmaBufUnmapAttachment(
  attach: DmaBufAttachment,
  sgt: SgTable,
  dir: DmaDataDirection,
): Promise<void> {
  checkAttach('dmaBufUnmapAttachment', attach);
  checkDir('dmaBufUnmapAttachment', dir);
  const dmabuf = attach.dmabuf;
  dmaResvAssertHeld(dmabuf.resv, 'dmaBufUnmapAttachment');
  const m = attach.mappings.get(sgt);
  if (!m) throw err('EINVAL', `dmaBufUnmapAttachment: sgt is not a live mapping of ${attach}`);
  if (m.dir !== dir)
    throw err('EINVAL', `dmaBufUnmapAttachment: direction ${dir} differs from the map's ${m.dir}`);
  attach.mappings.delete(sgt);
  await dmabuf.ops.unmapDmaBuf(attach, m.sgt, dir);
  if (m.pinnedOnMap) await dmabuf.ops.unpin!(attach);
  trace('dmabufUnmap', () => ({ buf: String(dmabuf), dev: attach.dev.name }));
}

/** dma_buf_map_attachment_unlocked: takes the lock around the map. Lock: not held (EDEADLK if it is). */
export async function dmaBufMapAttachmentUnlocked(
  attach: DmaBufAttachment,
  dir: DmaDataDirection,
): Promise<SgTable> {
  checkAttach('dmaBufMapAttachmentUnlocked', attach);
  const resv = attach.dmabuf.resv;
  dmaResvAssertNotHeld(resv, 'dmaBufMapAttachmentUnlocked');
  await dmaResvLock(resv, null);
  try {
    return await dmaBufMapAttachment(attach, dir);
  } finally {
    dmaResvUnlock(resv);
  }
}

/** dma_buf_unmap_attachment_unlocked. Lock: not held. */
export async function dmaBufUnmapAttachmentUnlocked(
  attach: DmaBufAttachment,
  sgt: SgTable,
  dir: DmaDataDirection,
): Promise<void> {
  checkAttach('dmaBufUnmapAttachmentUnlocked', attach);
  const resv = attach.dmabuf.resv;
  dmaResvAssertNotHeld(resv, 'dmaBufUnmapAttachmentUnlocked');
  await dmaResvLock(resv, null);
  try {
    await dmaBufUnmapAttachment(attach, sgt, dir);
  } finally {
    dmaResvUnlock(resv);
  }
}

/**
 * dma_buf_invalidate_mappings (rules 22-24): the exporter, holding the lock, tells every dynamic
 * attachment (mapped or not) that its mappings are stale. Static attachments are not called.
 * Importer callbacks run synchronously, with the lock held.
 */
export function dmaBufInvalidateMappings(dmabuf: DmaBuf): void {
  checkDmaBuf('dmaBufInvalidateMappings', dmabuf);
  dmaResvAssertHeld(dmabuf.resv, 'dmaBufInvalidateMappings');
  let called = 0;
  for (const attach of [...dmabuf.attachments]) {
    const op = invalidateOp(attach.importerOps);
    if (!op) continue;
    op.call(attach.importerOps, attach);
    called++;
  }
  trace('dmabufInvalidate', () => ({ buf: String(dmabuf), attachments: called }));
}

/** Pre-2026 name of dmaBufInvalidateMappings. */
export const dmaBufMoveNotify = dmaBufInvalidateMappings;
