/**
 * TPH for VFIO dma-bufs, only as far as kernel-semantics §4.4 defines the API (the 2026 series
 * "vfio/dma-buf: add TPH support for peer-to-peer access", v2 uAPI and the later get_tph op;
 * unmerged): userspace sets a steering tag and processing hint on a dma-buf it exported from this
 * device; an importer asks for them with get_tph when it registers the buffer (mlx5 puts them in
 * its mkey). Nothing here enables TPH on a requester or stamps TLPs; that is the importer's side.
 *
 * Assumption (the series leaves it open): the tag is in the namespace of the widest tag this
 * function completes, 8-bit for TPH_ONLY and 16-bit for EXT_TPH; get_tph never converts between
 * the two (rule 12).
 *
 * Thread: kernel.
 */
import { err } from '../../../common/errno.ts';
import type { DmaBuf } from '../dma-buf/dma-buf.ts';
import { dmaBufFromFd } from '../dma-buf/dma-buf-file.ts';
import type { DmaBufTph } from '../dma-buf/dma-buf-ops.ts';
import { dmaBufGetTph } from '../dma-buf/dma-buf-tph.ts';
import type { FdTable } from '../fs/file.ts';
import type { VfioPciCoreDevice } from './vfio-pci-core.ts';
import { vfioPciDmaBufOf } from './vfio-pci-dmabuf.ts';
import { PciTphCompleter, type VfioDeviceFeatureDmaBufTph } from './vfio-uapi.ts';

/**
 * VFIO_DEVICE_FEATURE_DMA_BUF_TPH (SET): store `{steering_tag, ph}` on dma-buf `dmabuf_fd`,
 * which must be a VFIO dma-buf of this device. Set it before the importer registers the buffer:
 * values set later do not change an importer that already read them (rule 13).
 * Called by: vfioPciCoreIoctlFeature. Lock: takes memory_lock.
 * Throws: EOPNOTSUPP (the function has no TPH completer); EINVAL naming ph, steering_tag or
 * reserved, or a dmabuf_fd of another kind; EBADF (fd not open); ENODEV (a dma-buf that is not
 * this device's).
 */
export async function vfioPciCoreFeatureDmaBufTph(
  vdev: VfioPciCoreDevice,
  data: unknown,
  fdt: FdTable,
): Promise<void> {
  const fn = 'VFIO_DEVICE_FEATURE_DMA_BUF_TPH';
  if (!data || typeof data !== 'object') throw err('EINVAL', `${fn}: data missing`);
  const arg = data as VfioDeviceFeatureDmaBufTph;
  if (vdev.tphCompleter === PciTphCompleter.NONE)
    throw err('EOPNOTSUPP', `${fn}: ${vdev} has no TPH completer support`);
  if ((arg.reserved ?? 0) !== 0) throw err('EINVAL', `${fn}: reserved ${String(arg.reserved)} must be 0`);
  if (!(Number.isInteger(arg.ph) && arg.ph >= 0 && arg.ph <= 3)) {
    throw err('EINVAL', `${fn}: ph ${String(arg.ph)} must be a 2-bit processing hint`);
  }
  const width = vdev.tphCompleter === PciTphCompleter.EXT_TPH ? 16 : 8;
  const max = width === 16 ? 0xffff : 0xff;
  const st = arg.steering_tag;
  if (!(Number.isInteger(st) && st >= 0 && st <= max)) {
    throw err('EINVAL', `${fn}: steering_tag ${String(st)} must be a ${width}-bit tag for ${vdev}`);
  }
  const dmabuf = dmaBufFromFd(fdt, arg.dmabuf_fd, fn);
  const priv = vfioPciDmaBufOf(dmabuf);
  if (!priv || priv.vdev !== vdev)
    throw err('ENODEV', `${fn}: fd ${arg.dmabuf_fd} is not a dma-buf of ${vdev}`);
  await vdev.withMemoryLock(async () => {
    priv.tph = { steeringTag: st, ph: arg.ph, width };
  });
}

/**
 * get_tph for any dma-buf: kept for its callers, now the dma-buf core's dmaBufGetTph (the op is
 * in the dma-buf contract, dma-buf-ops.ts). Lock: not held.
 * Throws: EINVAL (stWidth not 8 or 16); EOPNOTSUPP (no get_tph, or no tag for that width).
 */
export function vfioPciDmaBufGetTph(dmabuf: DmaBuf, stWidth: number): DmaBufTph {
  return dmaBufGetTph(dmabuf, stWidth);
}
