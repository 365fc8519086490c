/**
 * Trace points: every diagnostics_channel p2pemu publishes on is declared here, in one table, as
 * the kernel declares its tracepoints. Names are `p2pemu:<subsystem>:<event>`. Publishing costs a
 * property check when nobody subscribes (`channel.hasSubscribers`).
 */
import diagnosticsChannel from 'node:diagnostics_channel';

const names = {
  fenceSignal: 'p2pemu:dma_fence:signal',
  fenceContractViolation: 'p2pemu:dma_fence:contract',
  resvAddFence: 'p2pemu:dma_resv:add_fence',
  resvDeadlock: 'p2pemu:dma_resv:edeadlk',
  dmabufExport: 'p2pemu:dmabuf:export',
  dmabufRelease: 'p2pemu:dmabuf:release',
  dmabufAttach: 'p2pemu:dmabuf:attach',
  dmabufNegotiate: 'p2pemu:dmabuf:negotiate',
  dmabufDetach: 'p2pemu:dmabuf:detach',
  dmabufMap: 'p2pemu:dmabuf:map',
  dmabufUnmap: 'p2pemu:dmabuf:unmap',
  dmabufPin: 'p2pemu:dmabuf:pin',
  dmabufUnpin: 'p2pemu:dmabuf:unpin',
  dmabufInvalidate: 'p2pemu:dmabuf:invalidate',
  dmabufMove: 'p2pemu:dmabuf:move',
  dmabufRevoke: 'p2pemu:dmabuf:revoke',
  iommuMap: 'p2pemu:iommu:map',
  iommuUnmap: 'p2pemu:iommu:unmap',
  iommuFault: 'p2pemu:iommu:fault',
  lockWarn: 'p2pemu:locking:warn',
  vfioMap: 'p2pemu:vfio:map',
  vfioRevoke: 'p2pemu:vfio:revoke',
  vfioRevokeTimeout: 'p2pemu:vfio:revoke_timeout',
  vfioCommand: 'p2pemu:vfio:command',
  vfioReset: 'p2pemu:vfio:reset',
  gpuBoCreate: 'p2pemu:gpu:bo_create',
  gpuMove: 'p2pemu:gpu:move',
  gpuEvict: 'p2pemu:gpu:evict',
  gpuPrimeAttach: 'p2pemu:gpu:prime_attach',
  rdmaMrReg: 'p2pemu:rdma:mr_reg',
  rdmaMrDereg: 'p2pemu:rdma:mr_dereg',
  rdmaInvalidate: 'p2pemu:rdma:invalidate',
  rdmaPageFault: 'p2pemu:rdma:page_fault',
  rdmaUmemRevoke: 'p2pemu:rdma:umem_revoke',
  rdmaZapTimeout: 'p2pemu:rdma:zap_timeout',
  rdmaQpModify: 'p2pemu:rdma:qp_modify',
  rdmaDeviceFatal: 'p2pemu:rdma:device_fatal',
  rdmaAsyncEvent: 'p2pemu:rdma:async_event',
  pciTphEnable: 'p2pemu:pci:tph_enable',
  pciTphDisable: 'p2pemu:pci:tph_disable',
  pciTphSetSt: 'p2pemu:pci:tph_set_st',
  rdmaStIndex: 'p2pemu:rdma:st_index',
} as const;

export type TracePoint = keyof typeof names;
export const traceNames: Readonly<Record<TracePoint, string>> = names;

const channels = Object.fromEntries(
  Object.entries(names).map(([k, n]) => [k, diagnosticsChannel.channel(n)]),
) as Record<TracePoint, diagnosticsChannel.Channel>;

/** Publish one event. Build the payload lazily so an unobserved trace point costs nothing. */
export function trace(point: TracePoint, payload: () => object): void {
  const ch = channels[point];
  if (ch.hasSubscribers) ch.publish(payload());
}

/** Subscribe to one trace point; returns the unsubscribe function. */
export function onTrace(point: TracePoint, fn: (msg: unknown) => void): () => void {
  const ch = channels[point];
  const handler = (msg: unknown) => fn(msg);
  ch.subscribe(handler);
  return () => ch.unsubscribe(handler);
}
