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
  gpuBoCreate: (m) => `${m.gpu}: bo ${m.bo} created, ${m.size} bytes in ${m.placement}`,
  gpuMove: (m) => `${String(m.bo)}: move ${m.from} -> ${m.to} on the copy engine after ${m.deps} fence(s)`,
  gpuEvict: (m) => `${String(m.bo)}: evicted (${m.pages} pages) to make room for ${m.need}`,
  gpuPrimeAttach: (m) =>
    `${String(m.bo)}: PRIME attach of ${m.dev}, p2pdma ${m.mapType}, peer2peer=${m.peer2peer}`,
  vfioMap: (m) =>
    `vfio-pci ${m.provider}: ${m.dev} maps BAR range (${m.mapType}), ${m.nents} segment(s) at ${m.first}`,
  vfioRevoke: (m) =>
    `vfio-pci ${m.dev}: ${m.buf} ${m.revoked ? (m.permanent ? `revoked for good (${m.reason})` : 'revoked') : 'restored'}`,
  vfioRevokeTimeout: (m) => `vfio-pci: revoke of ${m.buf} timed out waiting for ${m.what}`,
  vfioCommand: (m) => `vfio-pci ${m.dev}: PCI command ${m.old} -> ${m.command}`,
  vfioReset: (m) => `vfio-pci ${m.dev}: function level reset`,
  rdmaMrReg: (m) =>
    `${m.dev}: MR key 0x${Number(m.key).toString(16)} registered (${m.mode}, ${m.length} bytes${m.buf ? ` of ${m.buf}` : ''})`,
  rdmaMrDereg: (m) => `${m.dev}: MR key 0x${Number(m.key).toString(16)} deregistered`,
  rdmaInvalidate: (m) =>
    `${m.dev}: MR key 0x${Number(m.key).toString(16)} invalidated${m.mode ? ` (${m.mode}): translation zapped` : `: ${m.error}`}`,
  rdmaPageFault: (m) =>
    `${m.dev}: ODP page fault on MR key 0x${Number(m.key).toString(16)} ${m.error ? `failed: ${m.error}` : 'resolved, access retried'}`,
  rdmaUmemRevoke: (m) => `ib_umem_dmabuf: ${m.umem} revoked`,
  rdmaZapTimeout: (m) =>
    `${m.dev}: MR key 0x${Number(m.key).toString(16)}: device did not acknowledge the zap (alive=${m.alive})`,
  rdmaQpModify: (m) => `${m.dev}: QP 0x${Number(m.qpn).toString(16)} ${m.from} -> ${m.to}`,
  rdmaDeviceFatal: (m) => `${m.dev}: device fatal error, QPs moved to ERR`,
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
