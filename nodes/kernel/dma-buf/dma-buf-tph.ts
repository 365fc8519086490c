/**
 * dma_buf_get_tph(): the dma-buf core side of the 2026 series "vfio/dma-buf: add TPH support for
 * peer-to-peer access" (v3 shape, `st_width` argument; kernel-semantics §4.4, rule 12; unmerged).
 * An importer that sends TPH requests to the buffer's memory (mlx5 MR registration) asks for the
 * steering tag of the namespace its requester type uses; the core checks the width, calls the
 * exporter's optional getTph op and keeps the tuple opaque: it never converts an 8-bit tag into a
 * 16-bit one or back, and refuses an exporter answer that does not fit the width it was asked.
 *
 * Thread: kernel. Lock: resv not held (see dma-buf-ops.ts DOC: locking convention).
 */
import { err } from '../../../common/errno.ts';
import { checkDmaBuf, type DmaBuf } from './dma-buf.ts';
import type { DmaBufStWidth, DmaBufTph } from './dma-buf-ops.ts';

/**
 * The steering tag (`stWidth` bits) and processing hint the exporter of `dmabuf` has for
 * peer-to-peer accesses. Called by: importers at registration. Lock: not held.
 * Throws: EINVAL naming dmabuf (not a dma-buf) or stWidth (not 8 or 16); EBADF (released);
 * EOPNOTSUPP (the exporter has no get_tph, or no tag of that width); EIO (the exporter answered
 * a tag wider than `stWidth` or a PH wider than 2 bits: an exporter bug, never passed on).
 */
export function dmaBufGetTph(dmabuf: DmaBuf, stWidth: number): DmaBufTph {
  const fn = 'dma_buf_get_tph';
  checkDmaBuf(fn, dmabuf);
  if (stWidth !== 8 && stWidth !== 16)
    throw err('EINVAL', `${fn}: stWidth ${String(stWidth)} must be 8 or 16`);
  const getTph = dmabuf.ops.getTph;
  if (!getTph) throw err('EOPNOTSUPP', `${fn}: exporter ${dmabuf.expName} of ${dmabuf} has no get_tph`);
  const r = getTph(dmabuf, stWidth as DmaBufStWidth);
  const max = stWidth === 16 ? 0xffff : 0xff;
  if (!(Number.isInteger(r?.steeringTag) && r.steeringTag >= 0 && r.steeringTag <= max)) {
    throw err(
      'EIO',
      `${fn}: exporter ${dmabuf.expName} returned steering tag ${String(r?.steeringTag)} for a ${stWidth}-bit request`,
    );
  }
  if (!(Number.isInteger(r.ph) && r.ph >= 0 && r.ph <= 3))
    throw err('EIO', `${fn}: exporter ${dmabuf.expName} returned ph ${String(r.ph)}, not a 2-bit hint`);
  return { steeringTag: r.steeringTag, ph: r.ph };
}
