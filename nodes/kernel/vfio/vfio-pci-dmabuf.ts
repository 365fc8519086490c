/**
 * VFIO dma-buf export of PCI BARs (drivers/vfio/pci/vfio_pci_dmabuf.c, 2026 semantics,
 * kernel-semantics §6): VFIO_DEVICE_FEATURE_DMA_BUF, the proposed VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE
 * (rule 11) and the exporter ops.
 *
 * DOC: exporter ops (vfio_pci_dmabuf_ops)
 *  - attach: MMIO only: an importer without peer2peer is refused EOPNOTSUPP (no fallback to
 *    system memory exists); a revoked buffer (temporarily or for good) ENODEV; (2026) an importer that is not revocable
 *    (dmaBufAttachRevocable: no invalidate op, or the "unsupported" sentinel of plain pinned
 *    RDMA MRs) EOPNOTSUPP.
 *  - pin/unpin: allowed (2026: pinned importers are fine once they are revocable); a revoked
 *    buffer refuses ENODEV. Nothing moves, so there is nothing else to do.
 *  - map: resv held; revoked: ENODEV; otherwise a fresh MMIO table per call (never cached): bus
 *    addresses when P2PDMA says BUS_ADDR, an IOVA through the importer's IOMMU for
 *    THRU_HOST_BRIDGE, EINVAL otherwise (dma-buf-mapping.ts). Each map counts one live mapping.
 *  - unmap: undo the table, drop the count; the last one wakes a waiting revoke.
 *  - release: leave the device's list and drop the registration, unless cleanup already did.
 *  - getTph (2026 proposal): the steering tag set with VFIO_DEVICE_FEATURE_DMA_BUF_TPH.
 *
 * Revoke states, revoke, un-revoke and close cleanup: vfio-pci-revoke.ts.
 *
 * Thread: kernel. Lock order: memory_lock, then the buffer's resv lock.
 */
import { err } from '../../../common/errno.ts';
import { PAGE_SIZE } from '../../fabric/page.ts';
import {
  type DmaBuf,
  dmaBufAttachRevocable,
  dmaBufExport,
  dmaBufPut,
  getDmaBuf,
} from '../dma-buf/dma-buf.ts';
import { DmaBufFile, dmaBufFd } from '../dma-buf/dma-buf-file.ts';
import type { DmaBufOps } from '../dma-buf/dma-buf-ops.ts';
import { dmaResvAssertHeld, dmaResvLock, dmaResvUnlock } from '../dma-buf/dma-resv.ts';
import { O_CLOEXEC } from '../dma-buf/heaps/dma-heap.ts';
import type { FdTable } from '../fs/file.ts';
import {
  type DmaBufPhysVec,
  dmaBufFreeSgt,
  dmaBufPhysVecToSgt,
  type P2pdmaProvider,
} from './dma-buf-mapping.ts';
import type { VfioPciBar, VfioPciCoreDevice } from './vfio-pci-core.ts';
import {
  PciTphCompleter,
  VFIO_PCI_ROM_REGION_INDEX,
  type VfioDeviceFeatureDmaBuf,
  type VfioDeviceFeatureDmaBufRevoke,
} from './vfio-uapi.ts';
import { VfioDmaBufMappings, VfioDmaBufStatus, vfioPciDmaBufRevoke } from './vfio-pci-revoke.ts';

/** O_ACCMODE | O_CLOEXEC: the fd flags a VFIO dma-buf accepts. */
export const VFIO_DMABUF_VALID_OPEN_FLAGS = 0o3 | O_CLOEXEC;

const U64_LIMIT = 1n << 64n;
const PAGE = BigInt(PAGE_SIZE);

/** TPH values stored by VFIO_DEVICE_FEATURE_DMA_BUF_TPH, in the namespace of `width` bits. */
export interface VfioDmaBufTph {
  steeringTag: number;
  ph: number;
  width: 8 | 16;
}

/** struct vfio_pci_dma_buf: the private state of one exported buffer. */
export class VfioPciDmaBuf {
  dmabuf!: DmaBuf;
  /** The device; null once the buffer left it (close cleanup or release). */
  vdev: VfioPciCoreDevice | null;
  readonly provider: P2pdmaProvider;
  readonly bar: VfioPciBar;
  readonly physVec: readonly DmaBufPhysVec[];
  readonly size: number;
  readonly tphCompleter: PciTphCompleter;
  /** OK, TEMP_REVOKED or PERM_REVOKED (vfio-pci-revoke.ts, DOC: states). Changed with the resv lock held. */
  status: VfioDmaBufStatus = VfioDmaBufStatus.OK;
  /** Live mappings (the 2026 kref + completion). */
  readonly mappings = new VfioDmaBufMappings();
  tph: VfioDmaBufTph | null = null;

  constructor(vdev: VfioPciCoreDevice, bar: VfioPciBar, physVec: DmaBufPhysVec[]) {
    this.vdev = vdev;
    this.bar = bar;
    this.physVec = physVec;
    this.size = physVec.reduce((n, v) => n + v.len, 0);
    this.provider = { name: vdev.name, busOffset: bar.busOffset };
    this.tphCompleter = vdev.tphCompleter;
  }

  /** New attach/pin/map fail ENODEV: revoked, temporarily or for good. */
  get revoked(): boolean {
    return this.status !== VfioDmaBufStatus.OK;
  }

  /** Revoked for good (the feature or close): never restored. */
  get permanent(): boolean {
    return this.status === VfioDmaBufStatus.PERM_REVOKED;
  }
}

const privOf = (dmabuf: DmaBuf): VfioPciDmaBuf => dmabuf.priv as VfioPciDmaBuf;

/** " is revoked" or " is revoked for good", for ENODEV messages. */
const revokedText = (priv: VfioPciDmaBuf): string => `is revoked${priv.permanent ? ' for good' : ''}`;

/** vfio_pci_dmabuf_ops; getTph is the 2026 proposal's optional op of the dma-buf contract. */
export const vfioPciDmabufOps: DmaBufOps & Required<Pick<DmaBufOps, 'getTph'>> = {
  attach(dmabuf, attach) {
    const priv = privOf(dmabuf);
    if (!attach.peer2peer)
      throw err('EOPNOTSUPP', `vfio_pci_dma_buf_attach: ${attach}: importer is not peer2peer (MMIO only)`);
    if (priv.revoked) throw err('ENODEV', `vfio_pci_dma_buf_attach: ${dmabuf} ${revokedText(priv)}`);
    if (!dmaBufAttachRevocable(attach)) {
      throw err('EOPNOTSUPP', `vfio_pci_dma_buf_attach: ${attach}: importer is not revocable (rule 28)`);
    }
  },
  pin(attach) {
    dmaResvAssertHeld(attach.dmabuf.resv, 'vfio_pci_dma_buf_pin');
    const priv = privOf(attach.dmabuf);
    if (priv.revoked) throw err('ENODEV', `vfio_pci_dma_buf_pin: ${attach.dmabuf} ${revokedText(priv)}`);
  },
  unpin() {},
  mapDmaBuf(attach, dir) {
    const priv = privOf(attach.dmabuf);
    dmaResvAssertHeld(attach.dmabuf.resv, 'vfio_pci_dma_buf_map');
    if (priv.revoked || !priv.vdev)
      throw err('ENODEV', `vfio_pci_dma_buf_map: ${attach.dmabuf} ${revokedText(priv)}`);
    const mapType = priv.vdev.p2pdmaMapType(attach.dev);
    const sgt = dmaBufPhysVecToSgt(attach, priv.provider, priv.physVec, mapType, dir);
    priv.mappings.get();
    return sgt;
  },
  unmapDmaBuf(attach, sgt) {
    dmaResvAssertHeld(attach.dmabuf.resv, 'vfio_pci_dma_buf_unmap');
    dmaBufFreeSgt(attach, sgt);
    privOf(attach.dmabuf).mappings.put();
  },
  release(dmabuf) {
    // Either this or cleanup takes the buffer off the device, never both (§6.2 rule 10). The
    // kernel takes memory_lock here; a JS release cannot wait for it, and one synchronous step
    // cannot interleave with a revoke, which skips released buffers.
    const priv = privOf(dmabuf);
    const vdev = priv.vdev;
    if (!vdev) return;
    vdev.dmabufs.delete(priv);
    vdev.registrations--;
    priv.vdev = null;
  },
  getTph(dmabuf, stWidth) {
    const fn = 'vfio_pci_dma_buf_get_tph';
    if (stWidth !== 8 && stWidth !== 16) throw err('EINVAL', `${fn}: st_width ${stWidth} must be 8 or 16`);
    const priv = privOf(dmabuf);
    if (priv.tphCompleter === PciTphCompleter.NONE) {
      throw err('EOPNOTSUPP', `${fn}: ${priv.provider.name} has no TPH completer support`);
    }
    const t = priv.tph;
    if (!t) throw err('EOPNOTSUPP', `${fn}: no steering tag was set on ${dmabuf}`);
    // The 8-bit and 16-bit tags are distinct namespaces: never convert one into the other.
    if (t.width !== stWidth)
      throw err('EOPNOTSUPP', `${fn}: ${dmabuf} has a ${t.width}-bit tag, not a ${stWidth}-bit one`);
    return { steeringTag: t.steeringTag, ph: t.ph };
  },
};

/** The VFIO state of `dmabuf`, or null if another exporter made it. */
export function vfioPciDmaBufOf(dmabuf: DmaBuf): VfioPciDmaBuf | null {
  return dmabuf.ops === vfioPciDmabufOps ? privOf(dmabuf) : null;
}

function u32(fn: string, name: string, v: unknown): number {
  if (!(typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff)) {
    throw err('EINVAL', `${fn}: ${name} ${String(v)} must be a __u32`);
  }
  return v;
}

function u64(fn: string, name: string, v: unknown): bigint {
  const ok =
    (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) ||
    (typeof v === 'bigint' && v >= 0n && v < U64_LIMIT);
  if (!ok) throw err('EINVAL', `${fn}: ${name} ${String(v)} must be a __u64 (a safe integer or a bigint)`);
  return BigInt(v as number | bigint);
}

interface Range {
  offset: bigint;
  length: bigint;
}

// validate_dmabuf_input(): each range non-empty and page aligned; the total must fit 64 bits.
function validateDmabufInput(fn: string, arg: VfioDeviceFeatureDmaBuf): Range[] {
  let total = 0n;
  return arg.dma_ranges.map((r, i) => {
    const at = `dma_ranges[${i}]`;
    if (!r || typeof r !== 'object') throw err('EINVAL', `${fn}: ${at} is not a vfio_region_dma_range`);
    const offset = u64(fn, `${at}.offset`, r.offset);
    const length = u64(fn, `${at}.length`, r.length);
    if (length === 0n) throw err('EINVAL', `${fn}: ${at}.length is 0`);
    if (offset % PAGE !== 0n)
      throw err('EINVAL', `${fn}: ${at}.offset 0x${offset.toString(16)} is not page aligned`);
    if (length % PAGE !== 0n)
      throw err('EINVAL', `${fn}: ${at}.length 0x${length.toString(16)} is not page aligned`);
    total += length;
    if (total >= U64_LIMIT) throw err('EINVAL', `${fn}: ${at}.length: the total length overflows 64 bits`);
    return { offset, length };
  });
}

// get_dmabuf_phys() / vfio_pci_core_fill_phys_vec(): the BAR must be an mmap-able memory BAR
// and every range must lie inside it.
function vfioPciCoreGetDmabufPhys(fn: string, vdev: VfioPciCoreDevice, index: number, ranges: Range[]) {
  const bar = vdev.bars[index];
  if (!bar) throw err('EINVAL', `${fn}: region_index ${index}: ${vdev} has no BAR${index}`);
  if (!bar.mmap)
    throw err('EOPNOTSUPP', `${fn}: region_index ${index}: BAR${index} of ${vdev} is not mmap-able`);
  const size = BigInt(bar.size);
  const physVec = ranges.map(({ offset, length }, i) => {
    const end = offset + length;
    if (end >= U64_LIMIT)
      throw err('EOVERFLOW', `${fn}: dma_ranges[${i}]: offset + length overflows 64 bits`);
    const paddr = BigInt(bar.phys) + offset;
    if (paddr >= U64_LIMIT)
      throw err(
        'EOVERFLOW',
        `${fn}: dma_ranges[${i}].offset: BAR${index} address + offset overflows 64 bits`,
      );
    if (end > size) {
      throw err(
        'EINVAL',
        `${fn}: dma_ranges[${i}] [0x${offset.toString(16)}, +0x${length.toString(16)}) exceeds BAR${index} (0x${size.toString(16)} bytes)`,
      );
    }
    return { paddr: Number(paddr), len: Number(length) };
  });
  return { bar, physVec };
}

/**
 * VFIO_DEVICE_FEATURE_DMA_BUF (GET): validate `data` (§6.2 rules 2-4), export the ranges as one
 * dma-buf and install its fd in `fdt`. The buffer holds a registration on the device and starts
 * revoked if memory decode is off. Called by: vfioPciCoreIoctlFeature. Lock: takes memory_lock.
 * Throws: EINVAL naming the field (nr_ranges 0, flags, open_flags, a range that is empty,
 * unaligned or outside the BAR, a total that overflows, an absent BAR); ENODEV (region_index
 * is not a BAR, device closed or removed); EOPNOTSUPP (BAR not mmap-able); EOVERFLOW (address
 * overflow); EFAULT (dma_ranges shorter or longer than nr_ranges).
 */
export async function vfioPciCoreFeatureDmaBuf(
  vdev: VfioPciCoreDevice,
  data: unknown,
  fdt: FdTable,
): Promise<number> {
  const fn = 'VFIO_DEVICE_FEATURE_DMA_BUF';
  if (!data || typeof data !== 'object') throw err('EINVAL', `${fn}: data missing`);
  const arg = data as VfioDeviceFeatureDmaBuf;
  const nr = u32(fn, 'nr_ranges', arg.nr_ranges);
  if (nr === 0) throw err('EINVAL', `${fn}: nr_ranges is 0`);
  if (arg.flags !== 0) throw err('EINVAL', `${fn}: flags ${String(arg.flags)} must be 0`);
  const index = u32(fn, 'region_index', arg.region_index);
  if (index >= VFIO_PCI_ROM_REGION_INDEX) throw err('ENODEV', `${fn}: region_index ${index} is not a BAR`);
  const openFlags = u32(fn, 'open_flags', arg.open_flags);
  if (openFlags & ~VFIO_DMABUF_VALID_OPEN_FLAGS) {
    throw err(
      'EINVAL',
      `${fn}: open_flags 0x${openFlags.toString(16)} may only hold O_ACCMODE and O_CLOEXEC`,
    );
  }
  if (!Array.isArray(arg.dma_ranges) || arg.dma_ranges.length !== nr) {
    const n = Array.isArray(arg.dma_ranges) ? arg.dma_ranges.length : 'no';
    throw err('EFAULT', `${fn}: dma_ranges holds ${n} entries, nr_ranges says ${nr}`);
  }
  const ranges = validateDmabufInput(fn, arg);
  const { bar, physVec } = vfioPciCoreGetDmabufPhys(fn, vdev, index, ranges);
  // vfio_device_try_get_registration()
  if (vdev.removed) throw err('ENODEV', `${fn}: ${vdev} was removed`);
  const priv = new VfioPciDmaBuf(vdev, bar, physVec);
  vdev.registrations++;
  try {
    priv.dmabuf = dmaBufExport({
      expName: 'vfio_pci_core',
      ops: vfioPciDmabufOps,
      size: priv.size,
      priv,
      flags: openFlags,
      owner: vdev.name,
    });
  } catch (e) {
    vdev.registrations--;
    throw e;
  }
  const listed = await vdev.withMemoryLock(async () => {
    // The device fd may have been closed while this waited: never list a buffer on a closed device.
    if (vdev.openCount === 0 || vdev.removed) return false;
    await dmaResvLock(priv.dmabuf.resv, null);
    // rule 4: born (temporarily) revoked while decode is off
    priv.status = vdev.memoryEnabled() ? VfioDmaBufStatus.OK : VfioDmaBufStatus.TEMP_REVOKED;
    vdev.dmabufs.add(priv);
    dmaResvUnlock(priv.dmabuf.resv);
    return true;
  });
  if (!listed) {
    dmaBufPut(priv.dmabuf);
    throw err('ENODEV', `${fn}: ${vdev} was closed during the export`);
  }
  // rule 3: the fd honours open_flags (its access mode, O_CLOEXEC).
  return dmaBufFd(fdt, priv.dmabuf, openFlags);
}

/**
 * VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE (SET, proposed Jun 2026, §6.2 rule 11): revoke dma-buf
 * `dmabuf_fd` of this device for good. On success every dynamic importer was invalidated and
 * unmapped, every fence retired, and the buffer refuses attach, pin and map (ENODEV) forever,
 * whatever decode or reset do later; the BAR range may be exported again as a new dma-buf. The
 * dma-buf fd stays open (closing it later releases the buffer as usual). Revoking a buffer already
 * revoked for good succeeds again (idempotent; the proposal's v3 says EBADFD).
 * Called by: vfioPciCoreIoctlFeature. Lock: takes memory_lock, then the buffer's resv lock.
 * Throws: EINVAL naming dmabuf_fd (not an integer, or an fd that is not a dma-buf) or data
 * missing; EBADF (fd not open); ENODEV naming dmabuf_fd (a dma-buf of another exporter or of
 * another device, or one close already took off this device), as the proposal and the TPH
 * feature do; ETIMEDOUT (after the revoke) if an importer did not unmap or a fence did not signal.
 */
export async function vfioPciCoreFeatureDmaBufRevoke(
  vdev: VfioPciCoreDevice,
  data: unknown,
  fdt: FdTable,
): Promise<void> {
  const fn = 'VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE';
  if (!data || typeof data !== 'object') throw err('EINVAL', `${fn}: data missing`);
  const fd = (data as VfioDeviceFeatureDmaBufRevoke).dmabuf_fd;
  if (!Number.isInteger(fd) || fd < -(2 ** 31) || fd >= 2 ** 31)
    throw err('EINVAL', `${fn}: dmabuf_fd ${String(fd)} must be an __s32`);
  // dma_buf_get(): a reference for the duration, so a concurrent close of the fd cannot release it.
  const dmabuf = getDmaBuf(fdt.getAs(fd, DmaBufFile, `${fn}: dmabuf_fd`).dmabuf);
  try {
    const priv = vfioPciDmaBufOf(dmabuf);
    if (!priv || priv.vdev !== vdev)
      throw err('ENODEV', `${fn}: dmabuf_fd ${fd} (${dmabuf}) is not a dma-buf of ${vdev}`);
    const errors = await vdev.withMemoryLock(() => vfioPciDmaBufRevoke(vdev, priv));
    if (errors.length > 0) throw errors[0];
  } finally {
    dmaBufPut(dmabuf);
  }
}
