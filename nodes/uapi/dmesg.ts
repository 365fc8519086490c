/**
 * dmesg: the kernel log as userspace reads it, rendered from the trace points (common/trace.ts)
 * in the words the kernel would use. Subscribing costs nothing when nobody follows.
 */
import { onTrace, type TracePoint } from '../../common/trace.ts';

type Fmt = (m: Record<string, unknown>) => string;

const formats: Partial<Record<TracePoint, Fmt>> = {
  dmabufExport: (m) =>
    `dma-buf: export ${m.buf} size ${m.size} (${m.dynamic ? 'dynamic exporter: pin/unpin' : 'static exporter'})`,
  dmabufAttach: (m) =>
    `dma-buf: ${m.dev} attached to ${m.buf} (${m.dynamic ? 'dynamic' : 'static'} importer, peer2peer=${m.peer2peer})`,
  dmabufNegotiate: (m) =>
    m.chosen
      ? `dma-buf: ${m.dev} on ${m.buf}: interconnect ${m.chosen}`
      : `dma-buf: ${m.dev} on ${m.buf}: no interconnect: ${m.error}`,
  dmabufMap: (m) =>
    `dma-buf: ${m.dev} mapped ${m.buf}: ${m.nents} DMA segment(s)${m.pinOnMap ? ', pinned on map' : ''}`,
  dmabufUnmap: (m) => `dma-buf: ${m.dev} unmapped ${m.buf}`,
  dmabufPin: (m) => `dma-buf: ${m.dev} pinned ${m.buf}`,
  dmabufUnpin: (m) => `dma-buf: ${m.dev} unpinned ${m.buf}`,
  dmabufInvalidate: (m) =>
    `dma-buf: invalidate_mappings on ${m.buf}: ${m.attachments} dynamic attachment(s) notified`,
  dmabufMove: (m) => `dma-buf: ${m.buf} moving ${m.from} -> ${m.to}; copy ordered after ${m.deps} fence(s)`,
  dmabufRevoke: (m) => `dma-buf: ${m.buf} ${m.revoked ? 'revoked' : 'access restored'}`,
  dmabufDetach: (m) => `dma-buf: ${m.dev} detached from ${m.buf}`,
  dmabufRelease: (m) => `dma-buf: release ${m.buf}`,
  iommuFault: (m) =>
    `DMAR: [DMA ${m.access === 1 ? 'Write' : 'Read'}] Request device [${m.deviceId}] fault addr 0x${Number(m.address).toString(16)} [fault reason ${m.reason}] ${m.reasonName}`,
  fenceContractViolation: (m) =>
    `WARNING: dma-fence context ${m.context}: seqno ${m.seqno} signalled after ${m.last}`,
};

/**
 * Follow the kernel log: `line` gets each message with a [seconds] stamp since `t0`.
 * Returns the function that stops following.
 */
export function dmesgFollow(line: (text: string) => void, t0 = performance.now()): () => void {
  const offs = (Object.entries(formats) as [TracePoint, Fmt][]).map(([point, fmt]) =>
    onTrace(point, (msg) => {
      const s = ((performance.now() - t0) / 1000).toFixed(6).padStart(12);
      line(`[${s}] ${fmt(msg as Record<string, unknown>)}`);
    }),
  );
  return () => {
    for (const off of offs) off();
  };
}
