// Bad input (foundation issue, acceptance item): every uapi and kernel entry point given a wrong
// argument, a released object or the wrong lock state returns an errno-coded EmuError whose
// message names the argument or object. One table row per case; each row becomes one test named
// "bad-input - <entry>: <case> gives <ERRNO>". Async rows run under a deadline so a hang fails.
// The conventions (which errno for which kind of mistake) are in docs/bad-input.md.
import { afterEach, expect, it } from 'vitest';
import { withDeadline } from '../common/deadline.ts';
import { EmuError, type ErrnoName } from '../common/errno.ts';
import { bootHost } from '../nodes/host.ts';
import {
  type DmaBuf,
  type DmaBufAttachment,
  checkDmaBuf,
  dmaBufAttach,
  dmaBufAttachmentIsDynamic,
  dmaBufAttachRevocable,
  dmaBufDetach,
  dmaBufDynamicAttach,
  dmaBufExport,
  dmaBufInvalidateMappings,
  dmaBufIsDynamic,
  dmaBufIsPinned,
  dmaBufMapAttachment,
  dmaBufMapAttachmentUnlocked,
  dmaBufMoveNotify,
  dmaBufPin,
  dmaBufPinOnMap,
  dmaBufPut,
  dmaBufUnmapAttachment,
  dmaBufUnmapAttachmentUnlocked,
  dmaBufUnpin,
  getDmaBuf,
} from '../nodes/kernel/dma-buf/dma-buf.ts';
import {
  dmaBufBeginCpuAccess,
  dmaBufEndCpuAccess,
  dmaBufIoctlSync,
  dmaBufLlseek,
  dmaBufMmap as kDmaBufMmap,
  dmaBufPoll as kDmaBufPoll,
  dmaBufPollMask,
  dmaBufVmap,
  dmaBufVmapUnlocked,
  dmaBufVunmap,
  dmaBufVunmapUnlocked,
} from '../nodes/kernel/dma-buf/dma-buf-cpu.ts';
import {
  dmaBufFd,
  dmaBufFromFd,
  dmaBufGet,
  dmaBufExportSyncFile as kDmaBufExportSyncFile,
  dmaBufImportSyncFile as kDmaBufImportSyncFile,
  dmaBufSetName as kDmaBufSetName,
} from '../nodes/kernel/dma-buf/dma-buf-file.ts';
import type { DmaBufAttachOps, DmaBufOps } from '../nodes/kernel/dma-buf/dma-buf-ops.ts';
import {
  DmaFence,
  type DmaFenceCb,
  DmaFenceTimeline,
  dmaFenceAddCallback,
  dmaFenceAllocatePrivateStub,
  dmaFenceBeginSignalling,
  dmaFenceCheckAndSignal,
  dmaFenceContextAlloc,
  dmaFenceEnableSwSignaling,
  dmaFenceEndSignalling,
  dmaFenceGet,
  dmaFenceGetStatus,
  dmaFenceIsLater,
  dmaFenceIsLaterOrSame,
  dmaFenceIsSignaled,
  dmaFencePut,
  dmaFenceRemoveCallback,
  dmaFenceSetDeadline,
  dmaFenceSetError,
  dmaFenceSignal,
  dmaFenceSignalTimestamp,
  dmaFenceWait,
  dmaFenceWaitAnyTimeout,
  dmaFenceWaitTimeout,
  fenceWaitResult,
  OrderPolicy,
} from '../nodes/kernel/dma-buf/dma-fence.ts';
import {
  dmaFenceArrayCreate,
  dmaFenceArrayFirst,
  dmaFenceArrayNext,
} from '../nodes/kernel/dma-buf/dma-fence-array.ts';
import {
  dmaFenceChainAlloc,
  dmaFenceChainContained,
  dmaFenceChainFindSeqno,
  dmaFenceChainForEach,
  dmaFenceChainInit,
  dmaFenceChainWalk,
} from '../nodes/kernel/dma-buf/dma-fence-chain.ts';
import { dmaFenceUnwrapForEach, dmaFenceUnwrapMerge } from '../nodes/kernel/dma-buf/dma-fence-unwrap.ts';
import { type DmaHeap, DmaHeapRegistry, dmaHeapBufferAlloc } from '../nodes/kernel/dma-buf/heaps/dma-heap.ts';
import {
  DmaResv,
  DmaResvIter,
  DmaResvUsage,
  dmaResvAddFence,
  dmaResvAssertHeld,
  dmaResvAssertNotHeld,
  dmaResvForEachFence,
  dmaResvGetFences,
  dmaResvGetSingleton,
  dmaResvLock,
  dmaResvLockInterruptible,
  dmaResvLockSlow,
  dmaResvReplaceFences,
  dmaResvReserveFences,
  dmaResvTestSignaled,
  dmaResvTrylock,
  dmaResvUnlock,
  dmaResvUsageName,
  dmaResvWaitTimeout,
} from '../nodes/kernel/dma-buf/dma-resv.ts';
import {
  mockFence,
  probeDevice,
  probeExport,
  type ProbeOptions,
} from '../nodes/kernel/dma-buf/fixtures/probe-exporter.ts';
import { MockExporter } from '../nodes/kernel/dma-buf/mock-exporter.ts';
import { DmaDataDirection, PAGE_SIZE } from '../nodes/kernel/dma-buf/scatterlist.ts';
import {
  SyncFile,
  syncFileCreate,
  syncFileGetFence,
  syncFileInfo,
  syncFileInstall,
  syncFileMerge,
  syncFilePoll,
  syncFileSetDeadline,
  syncFileWait,
} from '../nodes/kernel/dma-buf/sync-file.ts';
import {
  SyncTimeline,
  swSyncCreateFence,
  swSyncGetDeadline,
  swSyncInc,
  swSyncTimelineCreate,
} from '../nodes/kernel/dma-buf/sw-sync.ts';
import {
  DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS,
  DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS,
  DrmSyncobj,
  DrmSyncobjTable,
  drmSyncobjAddPoint,
  drmSyncobjFenceGet,
  drmSyncobjFind,
  drmSyncobjGet,
  drmSyncobjPut,
  drmSyncobjReplaceFence,
  syncobjCreate,
  syncobjDestroy,
  syncobjExportSyncFile,
  syncobjFdToHandle,
  syncobjHandleToFd,
  syncobjImportSyncFile,
  syncobjQuery,
  syncobjReset,
  syncobjSignal,
  syncobjTimelineSignal,
} from '../nodes/kernel/dma-buf/syncobj.ts';
import { drmSyncobjFindFence, syncobjTransfer, syncobjWait } from '../nodes/kernel/dma-buf/syncobj-wait.ts';
import { FdTable, type FileObject } from '../nodes/kernel/fs/file.ts';
import {
  iommuDmaAllocIova,
  iommuDmaFreeIova,
  iommuDmaMapSg,
  iommuDmaUnmapSg,
} from '../nodes/kernel/iommu/dma-iommu.ts';
import {
  IOMMU_READ,
  IOMMU_WRITE,
  Iommu,
  type IommuDomain,
  IommuDomainType,
  iommuAttachDevice,
  iommuDetachDevice,
  iommuDeviceDmaCtx,
  iommuDomainAlloc,
  iommuDomainFree,
  iommuIovaToPhys,
  iommuMap,
  iommuUnmap,
} from '../nodes/kernel/iommu/iommu.ts';
import { IovaDomain } from '../nodes/kernel/iommu/iova.ts';
import { PageAllocator } from '../nodes/kernel/mm/page-alloc.ts';
import { PageList } from '../nodes/kernel/mm/page-list.ts';
import { PhysMap, PhysWindowKind } from '../nodes/kernel/mm/phys-map.ts';
import { type MemRegion, MemRegionKind, memRegionCreate } from '../nodes/kernel/mm/region.ts';
import { runInTask } from '../nodes/kernel/locking/task.ts';
import { WwAcquireCtx } from '../nodes/kernel/locking/ww-mutex.ts';
import { HostKernel } from '../nodes/kernel/kernel.ts';
import {
  close,
  dmaBufExportSyncFile,
  dmaBufImportSyncFile,
  dmaBufMmap,
  dmaBufPoll,
  dmaBufSeek,
  dmaBufSetName,
  dmaBufSync,
  dmaHeapAlloc,
  dmaHeapList,
  DMA_BUF_SYNC,
  SEEK_SET,
} from '../nodes/uapi/dma-buf.ts';
import { type Process, processExit, syscall } from '../nodes/uapi/process.ts';
import {
  drmSyncobjCreate,
  drmSyncobjDestroy,
  drmSyncobjExportSyncFile,
  drmSyncobjImportSyncFile,
  drmSyncobjQuery,
  drmSyncobjReset,
  drmSyncobjSignal,
  drmSyncobjTimelineSignal,
  drmSyncobjWait,
  swSyncIocCreateFence,
  swSyncIocInc,
  swSyncOpen,
  syncFileWaitReady,
  syncIocFileInfo,
  syncIocMerge,
  syncIocSetDeadline,
} from '../nodes/uapi/sync.ts';
import {
  importerAttach,
  importerClose,
  importerMapping,
  importerRead,
  importerStaleWrite,
  importerUnmap,
  importerWrite,
  iommuFaults,
  iommuTranslate,
  mockExporterCreate,
  mockExporterInfo,
  mockExporterMove,
  mockExporterRevoke,
} from '../nodes/uapi/test-devices.ts';
import { ibvAckAsyncEvent, ibvGetAsyncEvent } from '../nodes/uapi/verbs.ts';
import { directDevice } from '../nodes/kernel/device.ts';
import { dmaBufGetTph } from '../nodes/kernel/dma-buf/dma-buf-tph.ts';
import { mlx5MkeyTph } from '../nodes/kernel/infiniband/mlx5/mlx5-mr.ts';
import { Mlx5St, mlx5StAllocIndex, mlx5StDeallocIndex } from '../nodes/kernel/infiniband/mlx5/mlx5-st.ts';
import { MLX5_HCA_WORDS } from '../nodes/fabric/mlx5-layout.ts';
import {
  type PciTphCap,
  PciTphLoc,
  type PciTphOptions,
  PciTphReqType,
  PciTphStMode,
  pciTphInit,
  pciTphSetNoTph,
  pcieEnableTph,
  pcieTphGetCpuSt,
  pcieTphSetStEntry,
} from '../nodes/kernel/pci/tph.ts';

interface Row {
  /** Module and entry point, e.g. "uapi/dma-buf.dmaHeapAlloc". */
  entry: string;
  case: string;
  errno: ErrnoName;
  /** Must match the message: it names the argument or object at fault. */
  message: RegExp;
  call: () => unknown | Promise<unknown>;
}

const DEADLINE_MS = 5_000;

// ---------------------------------------------------------------------------------------------
// Fixtures: created lazily by the rows that need them, torn down after each row.

const cleanups: Array<() => unknown> = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A bare host kernel (4 MiB of RAM), closed after the row. */
function kernel(): HostKernel {
  const k = new HostKernel({ ramBytes: 4 << 20 });
  cleanups.push(() => k.close());
  return k;
}

/** A process on a freshly booted host, shut down after the row. */
function proc(): Process {
  const host = bootHost({ ramBytes: 4 << 20 });
  cleanups.push(() => host.shutdown());
  return host.spawn('t');
}

/** A process that has exited. */
async function exited(): Promise<Process> {
  const p = proc();
  await processExit(p);
  return p;
}

/** A process with one system-heap dma-buf fd of one page. */
function withBuf(): { p: Process; fd: number } {
  const p = proc();
  return { p, fd: dmaHeapAlloc(p, 'system', { len: 4096 }) };
}

/** A process with an unsignalled sw_sync fence fd (timeline fd `tl`, fence fd `fd`). */
function withFence(): { p: Process; tl: number; fd: number } {
  const p = proc();
  const tl = swSyncOpen(p);
  return { p, tl, fd: swSyncIocCreateFence(p, tl, 1) };
}

const notAProcess = {} as unknown as Process;

// ---------------------------------------------------------------------------------------------
// uapi: nodes/uapi/process.ts

const rows: Row[] = [
  {
    entry: 'uapi/process.syscall',
    case: 'proc is not a process',
    errno: 'EINVAL',
    message: /probe: proc is not a process/,
    call: () => syscall(notAProcess, 'probe', () => 0),
  },
  {
    entry: 'uapi/process.syscall',
    case: 'process has exited',
    errno: 'ESRCH',
    message: /probe: process t\[\d+\] has exited/,
    call: async () => syscall(await exited(), 'probe', () => 0),
  },
  {
    entry: 'uapi/process.processExit',
    case: 'proc is not a process',
    errno: 'EINVAL',
    message: /processExit: proc is not a process/,
    call: () => processExit(notAProcess),
  },
];

// Every uapi entry point refuses a process that has exited (ESRCH naming the call and process)
// and a non-process (EINVAL naming proc).
const uapiCalls: Array<[string, string, (p: Process) => unknown]> = [
  ['uapi/dma-buf.dmaHeapAlloc', 'DMA_HEAP_IOCTL_ALLOC', (p) => dmaHeapAlloc(p, 'system', { len: 4096 })],
  ['uapi/dma-buf.dmaHeapList', 'readdir', (p) => dmaHeapList(p)],
  ['uapi/dma-buf.dmaBufSync', 'DMA_BUF_IOCTL_SYNC', (p) => dmaBufSync(p, 3, DMA_BUF_SYNC.RW)],
  ['uapi/dma-buf.dmaBufSetName', 'DMA_BUF_SET_NAME', (p) => dmaBufSetName(p, 3, 'x')],
  [
    'uapi/dma-buf.dmaBufExportSyncFile',
    'DMA_BUF_IOCTL_EXPORT_SYNC_FILE',
    (p) => dmaBufExportSyncFile(p, 3, DMA_BUF_SYNC.READ),
  ],
  [
    'uapi/dma-buf.dmaBufImportSyncFile',
    'DMA_BUF_IOCTL_IMPORT_SYNC_FILE',
    (p) => dmaBufImportSyncFile(p, 3, DMA_BUF_SYNC.READ, 4),
  ],
  ['uapi/dma-buf.dmaBufMmap', 'mmap', (p) => dmaBufMmap(p, 3, 0, 1)],
  ['uapi/dma-buf.dmaBufSeek', 'lseek', (p) => dmaBufSeek(p, 3, 0, SEEK_SET)],
  ['uapi/dma-buf.dmaBufPoll', 'poll', (p) => dmaBufPoll(p, 3, 1, 0)],
  ['uapi/dma-buf.close', 'close', (p) => close(p, 3)],
  ['uapi/sync.syncIocMerge', 'SYNC_IOC_MERGE', (p) => syncIocMerge(p, 3, 3, 'm')],
  ['uapi/sync.syncIocFileInfo', 'SYNC_IOC_FILE_INFO', (p) => syncIocFileInfo(p, 3)],
  ['uapi/sync.syncIocSetDeadline', 'SYNC_IOC_SET_DEADLINE', (p) => syncIocSetDeadline(p, 3, 0)],
  ['uapi/sync.syncFileWaitReady', 'poll', (p) => syncFileWaitReady(p, 3, 0)],
  ['uapi/sync.swSyncOpen', 'open\\(sw_sync\\)', (p) => swSyncOpen(p)],
  ['uapi/sync.swSyncIocCreateFence', 'SW_SYNC_IOC_CREATE_FENCE', (p) => swSyncIocCreateFence(p, 3, 1)],
  ['uapi/sync.swSyncIocInc', 'SW_SYNC_IOC_INC', (p) => swSyncIocInc(p, 3, 1)],
  ['uapi/sync.drmSyncobjCreate', 'DRM_IOCTL_SYNCOBJ_CREATE', (p) => drmSyncobjCreate(p)],
  ['uapi/sync.drmSyncobjDestroy', 'DRM_IOCTL_SYNCOBJ_DESTROY', (p) => drmSyncobjDestroy(p, 1)],
  ['uapi/sync.drmSyncobjReset', 'DRM_IOCTL_SYNCOBJ_RESET', (p) => drmSyncobjReset(p, [1])],
  ['uapi/sync.drmSyncobjSignal', 'DRM_IOCTL_SYNCOBJ_SIGNAL', (p) => drmSyncobjSignal(p, [1])],
  [
    'uapi/sync.drmSyncobjTimelineSignal',
    'DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL',
    (p) => drmSyncobjTimelineSignal(p, [1], [1]),
  ],
  ['uapi/sync.drmSyncobjQuery', 'DRM_IOCTL_SYNCOBJ_QUERY', (p) => drmSyncobjQuery(p, [1])],
  [
    'uapi/sync.drmSyncobjExportSyncFile',
    'DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD',
    (p) => drmSyncobjExportSyncFile(p, 1),
  ],
  [
    'uapi/sync.drmSyncobjImportSyncFile',
    'DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE',
    (p) => drmSyncobjImportSyncFile(p, 1, 3),
  ],
  ['uapi/sync.drmSyncobjWait', 'DRM_IOCTL_SYNCOBJ_WAIT', (p) => drmSyncobjWait(p, [1], null, 0)],
  ['uapi/test-devices.mockExporterCreate', 'MOCK_EXPORTER_CREATE', (p) => mockExporterCreate(p, 4096)],
  ['uapi/test-devices.mockExporterInfo', 'MOCK_EXPORTER_INFO', (p) => mockExporterInfo(p, 3)],
  ['uapi/test-devices.mockExporterMove', 'MOCK_EXPORTER_MOVE', (p) => mockExporterMove(p, 3)],
  ['uapi/test-devices.mockExporterRevoke', 'MOCK_EXPORTER_REVOKE', (p) => mockExporterRevoke(p, 3, true)],
  [
    'uapi/test-devices.importerAttach',
    'IMPORTER_ATTACH',
    (p) => importerAttach(p, 3, { device: 'nic0', dynamic: true }),
  ],
  ['uapi/test-devices.importerWrite', 'IMPORTER_WRITE', (p) => importerWrite(p, 1, 0, new Uint8Array(1))],
  ['uapi/test-devices.importerRead', 'IMPORTER_READ', (p) => importerRead(p, 1, 0, 1)],
  ['uapi/test-devices.importerMapping', 'IMPORTER_MAPPING', (p) => importerMapping(p, 1)],
  ['uapi/test-devices.importerUnmap', 'IMPORTER_UNMAP', (p) => importerUnmap(p, 1)],
  [
    'uapi/test-devices.importerStaleWrite',
    'IMPORTER_STALE_WRITE',
    (p) => importerStaleWrite(p, 1, { entries: [] }, new Uint8Array(1)),
  ],
  ['uapi/test-devices.importerClose', 'IMPORTER_CLOSE', (p) => importerClose(p, 1)],
  ['uapi/test-devices.iommuTranslate', 'IOMMU_TRANSLATE', (p) => iommuTranslate(p, 'nic0', 0)],
  ['uapi/test-devices.iommuFaults', 'IOMMU_FAULTS', (p) => iommuFaults(p)],
];
for (const [entry, name, call] of uapiCalls) {
  rows.push({
    entry,
    case: 'process has exited',
    errno: 'ESRCH',
    message: new RegExp(`^ESRCH: ${name}: process t\\[\\d+\\] has exited`),
    call: async () => call(await exited()),
  });
}
for (const [entry, name, call] of uapiCalls.filter((_, i) => i % 4 === 0)) {
  rows.push({
    entry,
    case: 'proc is not a process',
    errno: 'EINVAL',
    message: new RegExp(`^EINVAL: ${name}: proc is not a process`),
    call: () => call(notAProcess),
  });
}

// ---------------------------------------------------------------------------------------------
// uapi: nodes/uapi/dma-buf.ts

rows.push(
  {
    entry: 'uapi/dma-buf.dmaHeapAlloc',
    case: 'unknown heap name',
    errno: 'ENOENT',
    message: /no heap named "cma"/,
    call: () => dmaHeapAlloc(proc(), 'cma', { len: 4096 }),
  },
  {
    entry: 'uapi/dma-buf.dmaHeapAlloc',
    case: 'len 0',
    errno: 'EINVAL',
    message: /DMA_HEAP_IOCTL_ALLOC\(system\): len 0/,
    call: () => dmaHeapAlloc(proc(), 'system', { len: 0 }),
  },
  {
    entry: 'uapi/dma-buf.dmaHeapAlloc',
    case: 'negative len',
    errno: 'EINVAL',
    message: /len -1/,
    call: () => dmaHeapAlloc(proc(), 'system', { len: -1 }),
  },
  {
    entry: 'uapi/dma-buf.dmaHeapAlloc',
    case: 'len larger than RAM',
    errno: 'ENOMEM',
    message: /region host0:ram has \d+ free pages/,
    call: () => dmaHeapAlloc(proc(), 'system', { len: 8 << 20 }),
  },
  {
    entry: 'uapi/dma-buf.dmaHeapAlloc',
    case: 'unknown fd_flags bits',
    errno: 'EINVAL',
    message: /fd_flags 0x1 has invalid bits/,
    call: () => dmaHeapAlloc(proc(), 'system', { len: 4096, fd_flags: 1 }),
  },
  {
    entry: 'uapi/dma-buf.dmaHeapAlloc',
    case: 'unknown heap_flags bits',
    errno: 'EINVAL',
    message: /heap_flags 0x4 has invalid bits/,
    call: () => dmaHeapAlloc(proc(), 'system', { len: 4096, heap_flags: 4 }),
  },
  {
    entry: 'uapi/dma-buf.dmaHeapAlloc',
    case: 'allocation data missing',
    errno: 'EINVAL',
    message: /DMA_HEAP_IOCTL_ALLOC: data/,
    call: () => dmaHeapAlloc(proc(), 'system', undefined as never),
  },
  {
    entry: 'uapi/dma-buf.dmaBufSync',
    case: 'fd not open',
    errno: 'EBADF',
    message: /DMA_BUF_IOCTL_SYNC: fd 42 is not open/,
    call: () => dmaBufSync(proc(), 42, DMA_BUF_SYNC.RW),
  },
  {
    entry: 'uapi/dma-buf.dmaBufSync',
    case: 'closed fd',
    errno: 'EBADF',
    message: /DMA_BUF_IOCTL_SYNC: fd 3 is not open/,
    call: () => {
      const { p, fd } = withBuf();
      close(p, fd);
      return dmaBufSync(p, fd, DMA_BUF_SYNC.RW);
    },
  },
  {
    entry: 'uapi/dma-buf.dmaBufSync',
    case: 'fd of a sync_file',
    errno: 'EINVAL',
    message: /DMA_BUF_IOCTL_SYNC: fd \d+ is a sync_file, not a DmaBufFile/,
    call: () => {
      const { p, fd } = withFence();
      return dmaBufSync(p, fd, DMA_BUF_SYNC.RW);
    },
  },
  {
    entry: 'uapi/dma-buf.dmaBufSync',
    case: 'unknown flags bits',
    errno: 'EINVAL',
    message: /DMA_BUF_IOCTL_SYNC: flags 0x10 has unknown bits/,
    call: () => {
      const { p, fd } = withBuf();
      return dmaBufSync(p, fd, 0x10);
    },
  },
  {
    entry: 'uapi/dma-buf.dmaBufSync',
    case: 'flags without a direction',
    errno: 'EINVAL',
    message: /DMA_BUF_IOCTL_SYNC: flags has no direction/,
    call: () => {
      const { p, fd } = withBuf();
      return dmaBufSync(p, fd, DMA_BUF_SYNC.END);
    },
  },
  {
    entry: 'uapi/dma-buf.dmaBufSetName',
    case: 'name too long',
    errno: 'EINVAL',
    message: /DMA_BUF_SET_NAME: name is 40 bytes, at most 31/,
    call: () => {
      const { p, fd } = withBuf();
      dmaBufSetName(p, fd, 'x'.repeat(40));
    },
  },
  {
    entry: 'uapi/dma-buf.dmaBufSetName',
    case: 'name not a string',
    errno: 'EINVAL',
    message: /DMA_BUF_SET_NAME: name is not a string/,
    call: () => {
      const { p, fd } = withBuf();
      dmaBufSetName(p, fd, 7 as unknown as string);
    },
  },
  {
    entry: 'uapi/dma-buf.dmaBufSetName',
    case: 'fd not open',
    errno: 'EBADF',
    message: /DMA_BUF_SET_NAME: fd 9 is not open/,
    call: () => dmaBufSetName(proc(), 9, 'x'),
  },
  {
    entry: 'uapi/dma-buf.dmaBufExportSyncFile',
    case: 'flags 0',
    errno: 'EINVAL',
    message: /DMA_BUF_IOCTL_EXPORT_SYNC_FILE: flags 0x0 must be DMA_BUF_SYNC_READ and\/or WRITE/,
    call: () => {
      const { p, fd } = withBuf();
      return dmaBufExportSyncFile(p, fd, 0);
    },
  },
  {
    entry: 'uapi/dma-buf.dmaBufExportSyncFile',
    case: 'fd of an sw_sync timeline',
    errno: 'EINVAL',
    message: /DMA_BUF_IOCTL_EXPORT_SYNC_FILE: fd \d+ is a sw_sync, not a DmaBufFile/,
    call: () => {
      const { p, tl } = withFence();
      return dmaBufExportSyncFile(p, tl, DMA_BUF_SYNC.READ);
    },
  },
  {
    entry: 'uapi/dma-buf.dmaBufImportSyncFile',
    case: 'sync fd not open',
    errno: 'EBADF',
    message: /syncFileGetFence: fd 77 is not open/,
    call: () => {
      const { p, fd } = withBuf();
      return dmaBufImportSyncFile(p, fd, DMA_BUF_SYNC.WRITE, 77);
    },
  },
  {
    entry: 'uapi/dma-buf.dmaBufImportSyncFile',
    case: 'sync fd is a dma-buf',
    errno: 'EINVAL',
    message: /syncFileGetFence: fd 3 is a dma-buf, not a SyncFile/,
    call: () => {
      const { p, fd } = withBuf();
      return dmaBufImportSyncFile(p, fd, DMA_BUF_SYNC.WRITE, fd);
    },
  },
  {
    entry: 'uapi/dma-buf.dmaBufImportSyncFile',
    case: 'unknown flags bits',
    errno: 'EINVAL',
    message: /DMA_BUF_IOCTL_IMPORT_SYNC_FILE: flags 0x8 must be/,
    call: () => {
      const { p, fd } = withBuf();
      return dmaBufImportSyncFile(p, fd, 8, fd);
    },
  },
  {
    entry: 'uapi/dma-buf.dmaBufMmap',
    case: 'pages beyond the buffer',
    errno: 'EINVAL',
    message: /dmaBufMmap: pages 0\.\.2 beyond dmabuf system:\d+ of 1 pages/,
    call: () => {
      const { p, fd } = withBuf();
      return dmaBufMmap(p, fd, 0, 2);
    },
  },
  {
    entry: 'uapi/dma-buf.dmaBufMmap',
    case: 'negative pgoff',
    errno: 'EINVAL',
    message: /dmaBufMmap: pgoff -1/,
    call: () => {
      const { p, fd } = withBuf();
      return dmaBufMmap(p, fd, -1, 1);
    },
  },
  {
    entry: 'uapi/dma-buf.dmaBufMmap',
    case: 'pgoff + pages overflows',
    errno: 'EOVERFLOW',
    message: /dmaBufMmap: pgoff \d+ \+ pages 1 overflows/,
    call: () => {
      const { p, fd } = withBuf();
      return dmaBufMmap(p, fd, Number.MAX_SAFE_INTEGER, 1);
    },
  },
  {
    entry: 'uapi/dma-buf.dmaBufSeek',
    case: 'offset not 0',
    errno: 'EINVAL',
    message: /dmaBufLlseek: offset 5 \(only 0 is supported\)/,
    call: () => {
      const { p, fd } = withBuf();
      return dmaBufSeek(p, fd, 5, SEEK_SET);
    },
  },
  {
    entry: 'uapi/dma-buf.dmaBufSeek',
    case: 'whence SEEK_CUR',
    errno: 'EINVAL',
    message: /dmaBufLlseek: whence 1/,
    call: () => {
      const { p, fd } = withBuf();
      return dmaBufSeek(p, fd, 0, 1);
    },
  },
  {
    entry: 'uapi/dma-buf.dmaBufPoll',
    case: 'negative timeout',
    errno: 'EINVAL',
    message: /dmaBufPoll: timeout -1/,
    call: () => {
      const { p, fd } = withBuf();
      return dmaBufPoll(p, fd, 1, -1);
    },
  },
  {
    entry: 'uapi/dma-buf.dmaBufPoll',
    case: 'closed fd',
    errno: 'EBADF',
    message: /poll: fd 3 is not open/,
    call: () => {
      const { p, fd } = withBuf();
      close(p, fd);
      return dmaBufPoll(p, fd, 1, 0);
    },
  },
  {
    entry: 'uapi/dma-buf.close',
    case: 'fd closed twice',
    errno: 'EBADF',
    message: /close: fd 3 is not open in t\[\d+\]/,
    call: () => {
      const { p, fd } = withBuf();
      close(p, fd);
      close(p, fd);
    },
  },
  {
    entry: 'uapi/dma-buf.close',
    case: 'fd not an integer',
    errno: 'EBADF',
    message: /close: fd 3\.5 is not open/,
    call: () => close(proc(), 3.5),
  },
);

// ---------------------------------------------------------------------------------------------
// uapi: nodes/uapi/sync.ts

/** A process with two syncobj handles: 1 without a fence, 2 signalled. */
function withSyncobjs(): Process {
  const p = proc();
  drmSyncobjCreate(p);
  drmSyncobjCreate(p, 1);
  return p;
}

rows.push(
  {
    entry: 'uapi/sync.syncIocMerge',
    case: 'fd1 not open',
    errno: 'EBADF',
    message: /SYNC_IOC_MERGE: fd 50 is not open/,
    call: () => {
      const { p, fd } = withFence();
      return syncIocMerge(p, 50, fd, 'm');
    },
  },
  {
    entry: 'uapi/sync.syncIocMerge',
    case: 'fd2 is a timeline, not a sync_file',
    errno: 'ENOENT',
    message: /SYNC_IOC_MERGE: fd2 = 3 is not a sync_file/,
    call: () => {
      const { p, tl, fd } = withFence();
      return syncIocMerge(p, fd, tl, 'm');
    },
  },
  {
    entry: 'uapi/sync.syncIocMerge',
    case: 'name not a string',
    errno: 'EINVAL',
    message: /SYNC_IOC_MERGE: name is not a string/,
    call: () => {
      const { p, fd } = withFence();
      return syncIocMerge(p, fd, fd, 5 as unknown as string);
    },
  },
  {
    entry: 'uapi/sync.syncIocFileInfo',
    case: 'num_fences below the fence count',
    errno: 'EINVAL',
    message: /SYNC_IOC_FILE_INFO: num_fences 1 < 2 fences in fd \d+/,
    call: () => {
      const p = proc();
      const a = swSyncIocCreateFence(p, swSyncOpen(p), 1);
      const b = swSyncIocCreateFence(p, swSyncOpen(p), 1);
      return syncIocFileInfo(p, syncIocMerge(p, a, b, 'ab'), { num_fences: 1 });
    },
  },
  {
    entry: 'uapi/sync.syncIocFileInfo',
    case: 'closed fd',
    errno: 'EBADF',
    message: /SYNC_IOC_FILE_INFO: fd 4 is not open/,
    call: () => {
      const { p, fd } = withFence();
      close(p, fd);
      return syncIocFileInfo(p, fd);
    },
  },
  {
    entry: 'uapi/sync.syncIocSetDeadline',
    case: 'deadline not a number',
    errno: 'EINVAL',
    message: /SYNC_IOC_SET_DEADLINE: deadline NaN is not a time/,
    call: () => {
      const { p, fd } = withFence();
      return syncIocSetDeadline(p, fd, Number.NaN);
    },
  },
  {
    entry: 'uapi/sync.syncIocSetDeadline',
    case: 'fd of a dma-buf',
    errno: 'EINVAL',
    message: /SYNC_IOC_SET_DEADLINE: fd 3 is a dma-buf, not a SyncFile/,
    call: () => {
      const { p, fd } = withBuf();
      return syncIocSetDeadline(p, fd, 0);
    },
  },
  {
    entry: 'uapi/sync.syncFileWaitReady',
    case: 'timeout not a number',
    errno: 'EINVAL',
    message: /poll: timeout NaN is not a number/,
    call: () => {
      const { p, fd } = withFence();
      return syncFileWaitReady(p, fd, Number.NaN);
    },
  },
  {
    entry: 'uapi/sync.syncFileWaitReady',
    case: 'fd not open',
    errno: 'EBADF',
    message: /poll: fd 12 is not open/,
    call: () => syncFileWaitReady(proc(), 12, 0),
  },
  {
    entry: 'uapi/sync.swSyncOpen',
    case: 'name not a string',
    errno: 'EINVAL',
    message: /open\(sw_sync\): name is not a string/,
    call: () => swSyncOpen(proc(), 5 as unknown as string),
  },
  {
    entry: 'uapi/sync.swSyncIocCreateFence',
    case: 'value not a u32',
    errno: 'EINVAL',
    message: /SW_SYNC_IOC_CREATE_FENCE: value -1 is not a u32/,
    call: () => {
      const { p, tl } = withFence();
      return swSyncIocCreateFence(p, tl, -1);
    },
  },
  {
    entry: 'uapi/sync.swSyncIocCreateFence',
    case: 'timeline fd is a sync_file',
    errno: 'EINVAL',
    message: /SW_SYNC_IOC_CREATE_FENCE: fd 4 is a sync_file, not a SyncTimeline/,
    call: () => {
      const { p, fd } = withFence();
      return swSyncIocCreateFence(p, fd, 1);
    },
  },
  {
    entry: 'uapi/sync.swSyncIocCreateFence',
    case: 'closed timeline fd',
    errno: 'EBADF',
    message: /SW_SYNC_IOC_CREATE_FENCE: fd 3 is not open/,
    call: () => {
      const { p, tl } = withFence();
      close(p, tl);
      return swSyncIocCreateFence(p, tl, 2);
    },
  },
  {
    entry: 'uapi/sync.swSyncIocInc',
    case: 'inc past u32',
    errno: 'EINVAL',
    message: /SW_SYNC_IOC_INC: inc 4294967296 is not a u32/,
    call: () => {
      const { p, tl } = withFence();
      return swSyncIocInc(p, tl, 2 ** 32);
    },
  },
  {
    entry: 'uapi/sync.swSyncIocInc',
    case: 'inc not an integer',
    errno: 'EINVAL',
    message: /SW_SYNC_IOC_INC: inc 1\.5 is not a u32/,
    call: () => {
      const { p, tl } = withFence();
      return swSyncIocInc(p, tl, 1.5);
    },
  },
  {
    entry: 'uapi/sync.drmSyncobjCreate',
    case: 'unknown flags bits',
    errno: 'EINVAL',
    message: /syncobjCreate: flags 0x2/,
    call: () => drmSyncobjCreate(proc(), 2),
  },
  {
    entry: 'uapi/sync.drmSyncobjCreate',
    case: 'flags not an integer',
    errno: 'EINVAL',
    message: /syncobjCreate: flags 0x0\.8/,
    call: () => drmSyncobjCreate(proc(), 0.5),
  },
  {
    entry: 'uapi/sync.drmSyncobjDestroy',
    case: 'unknown handle',
    errno: 'EINVAL',
    message: /syncobjDestroy: handle 7 is not a syncobj/,
    call: () => drmSyncobjDestroy(withSyncobjs(), 7),
  },
  {
    entry: 'uapi/sync.drmSyncobjDestroy',
    case: 'handle destroyed twice',
    errno: 'EINVAL',
    message: /syncobjDestroy: handle 1 is not a syncobj/,
    call: () => {
      const p = withSyncobjs();
      drmSyncobjDestroy(p, 1);
      drmSyncobjDestroy(p, 1);
    },
  },
  {
    entry: 'uapi/sync.drmSyncobjReset',
    case: 'no handles',
    errno: 'EINVAL',
    message: /syncobjReset: count_handles is 0/,
    call: () => drmSyncobjReset(withSyncobjs(), []),
  },
  {
    entry: 'uapi/sync.drmSyncobjReset',
    case: 'destroyed handle',
    errno: 'ENOENT',
    message: /syncobjReset: handles\[0\] = 1 is not a syncobj/,
    call: () => {
      const p = withSyncobjs();
      drmSyncobjDestroy(p, 1);
      drmSyncobjReset(p, [1]);
    },
  },
  {
    entry: 'uapi/sync.drmSyncobjSignal',
    case: 'second handle unknown',
    errno: 'ENOENT',
    message: /syncobjSignal: handles\[1\] = 9 is not a syncobj/,
    call: () => drmSyncobjSignal(withSyncobjs(), [1, 9]),
  },
  {
    entry: 'uapi/sync.drmSyncobjTimelineSignal',
    case: 'points and handles differ in count',
    errno: 'EINVAL',
    message: /syncobjTimelineSignal: 2 points for 1 handles/,
    call: () => drmSyncobjTimelineSignal(withSyncobjs(), [1], [1, 2]),
  },
  {
    entry: 'uapi/sync.drmSyncobjTimelineSignal',
    case: 'negative point',
    errno: 'EINVAL',
    message: /syncobjTimelineSignal: points\[0\] = -1 is not a u64 point/,
    call: () => drmSyncobjTimelineSignal(withSyncobjs(), [1], [-1]),
  },
  {
    entry: 'uapi/sync.drmSyncobjQuery',
    case: 'unknown flags bits',
    errno: 'EINVAL',
    message: /syncobjQuery: flags 0x4/,
    call: () => drmSyncobjQuery(withSyncobjs(), [1], 4),
  },
  {
    entry: 'uapi/sync.drmSyncobjQuery',
    case: 'destroyed handle',
    errno: 'ENOENT',
    message: /syncobjQuery: handles\[0\] = 2 is not a syncobj/,
    call: () => {
      const p = withSyncobjs();
      drmSyncobjDestroy(p, 2);
      return drmSyncobjQuery(p, [2]);
    },
  },
  {
    entry: 'uapi/sync.drmSyncobjExportSyncFile',
    case: 'unknown handle',
    errno: 'ENOENT',
    message: /syncobjHandleToFd: handle 5 is not a syncobj/,
    call: () => drmSyncobjExportSyncFile(withSyncobjs(), 5),
  },
  {
    entry: 'uapi/sync.drmSyncobjExportSyncFile',
    case: 'syncobj without a fence',
    errno: 'EINVAL',
    message: /syncobjHandleToFd: handle 1 has no fence for point 0/,
    call: () => drmSyncobjExportSyncFile(withSyncobjs(), 1),
  },
  {
    entry: 'uapi/sync.drmSyncobjExportSyncFile',
    case: 'point never submitted',
    errno: 'EINVAL',
    message: /syncobjHandleToFd: handle 1 has no fence for point 5/,
    call: () => {
      const p = withSyncobjs();
      drmSyncobjTimelineSignal(p, [1], [1]);
      return drmSyncobjExportSyncFile(p, 1, 5);
    },
  },
  {
    entry: 'uapi/sync.drmSyncobjImportSyncFile',
    case: 'fd is a dma-buf',
    errno: 'EINVAL',
    message: /syncobjFdToHandle: fd 3 is not a sync_file/,
    call: () => {
      const { p, fd } = withBuf();
      drmSyncobjCreate(p);
      return drmSyncobjImportSyncFile(p, 1, fd);
    },
  },
  {
    entry: 'uapi/sync.drmSyncobjImportSyncFile',
    case: 'unknown handle',
    errno: 'ENOENT',
    message: /syncobjFdToHandle: handle 9 is not a syncobj/,
    call: () => {
      const { p, fd } = withFence();
      return drmSyncobjImportSyncFile(p, 9, fd);
    },
  },
  {
    entry: 'uapi/sync.drmSyncobjWait',
    case: 'no handles',
    errno: 'EINVAL',
    message: /syncobjWait: count_handles is 0/,
    call: () => drmSyncobjWait(withSyncobjs(), [], null, 0),
  },
  {
    entry: 'uapi/sync.drmSyncobjWait',
    case: 'syncobj without a fence',
    errno: 'EINVAL',
    message: /syncobjWait: handles\[0\] = 1 has no fence for point 0/,
    call: () => drmSyncobjWait(withSyncobjs(), [1], null, 10),
  },
  {
    entry: 'uapi/sync.drmSyncobjWait',
    case: 'WAIT_AVAILABLE on a binary wait',
    errno: 'EINVAL',
    message: /syncobjWait: flags 0x4/,
    call: () => drmSyncobjWait(withSyncobjs(), [2], null, 0, 4),
  },
  {
    entry: 'uapi/sync.drmSyncobjWait',
    case: 'points and handles differ in count',
    errno: 'EINVAL',
    message: /syncobjTimelineWait: 2 points for 1 handles/,
    call: () => drmSyncobjWait(withSyncobjs(), [2], [1, 2], 0),
  },
  {
    entry: 'uapi/sync.drmSyncobjWait',
    case: 'destroyed handle',
    errno: 'ENOENT',
    message: /syncobjWait: handles\[0\] = 2 is not a syncobj/,
    call: () => {
      const p = withSyncobjs();
      drmSyncobjDestroy(p, 2);
      return drmSyncobjWait(p, [2], null, 0);
    },
  },
);

// ---------------------------------------------------------------------------------------------
// uapi: nodes/uapi/test-devices.ts

/** A process with a one-page mock-exporter buffer (in VRAM) at `fd`. */
function withMock(): { p: Process; fd: number } {
  const p = proc();
  return { p, fd: mockExporterCreate(p, 4096) };
}

/** A process with a dynamic importer on device nic0 attached to a system-heap buffer. */
async function withImporter(): Promise<{ p: Process; fd: number; id: number }> {
  const { p, fd } = withBuf();
  return { p, fd, id: await importerAttach(p, fd, { device: 'nic0', dynamic: true }) };
}

rows.push(
  {
    entry: 'uapi/test-devices.mockExporterCreate',
    case: 'size not a page multiple',
    errno: 'EINVAL',
    message: /MockExporter\.create: size 100 is not a positive multiple of PAGE_SIZE/,
    call: () => mockExporterCreate(proc(), 100),
  },
  {
    entry: 'uapi/test-devices.mockExporterCreate',
    case: 'unknown placement',
    errno: 'EINVAL',
    message: /MockExporter\.create: placement "gpu" is not a Placement/,
    call: () => mockExporterCreate(proc(), 4096, { placement: 'gpu' as never }),
  },
  {
    entry: 'uapi/test-devices.mockExporterInfo',
    case: 'fd of a system-heap buffer',
    errno: 'EINVAL',
    message: /MOCK_EXPORTER_INFO: fd 3 is not a mock-exporter buffer/,
    call: () => {
      const { p, fd } = withBuf();
      return mockExporterInfo(p, fd);
    },
  },
  {
    entry: 'uapi/test-devices.mockExporterInfo',
    case: 'fd not open',
    errno: 'EBADF',
    message: /MOCK_EXPORTER_INFO: fd 3 is not open/,
    call: () => mockExporterInfo(proc(), 3),
  },
  {
    entry: 'uapi/test-devices.mockExporterMove',
    case: 'unknown target placement',
    errno: 'EINVAL',
    message: /MockExporter\.move: target "disk" is not a Placement/,
    call: () => {
      const { p, fd } = withMock();
      return mockExporterMove(p, fd, 'disk' as never);
    },
  },
  {
    entry: 'uapi/test-devices.mockExporterMove',
    case: 'revoked buffer',
    errno: 'ENODEV',
    message: /MockExporter\.move: dmabuf mock-exporter:\d+ is revoked/,
    call: async () => {
      const { p, fd } = withMock();
      await mockExporterRevoke(p, fd, true);
      return mockExporterMove(p, fd);
    },
  },
  {
    entry: 'uapi/test-devices.mockExporterMove',
    case: 'pinned by a static importer',
    errno: 'EBUSY',
    message: /MockExporter\.move: dmabuf mock-exporter:\d+ is pinned \(rule 11\)/,
    call: async () => {
      const { p, fd } = withMock();
      const id = await importerAttach(p, fd, { device: 'nic0', dynamic: false });
      await importerWrite(p, id, 0, new Uint8Array(8)); // maps: pin-on-map
      return mockExporterMove(p, fd);
    },
  },
  {
    entry: 'uapi/test-devices.mockExporterRevoke',
    case: 'closed fd',
    errno: 'EBADF',
    message: /MOCK_EXPORTER_REVOKE: fd 3 is not open/,
    call: () => {
      const { p, fd } = withMock();
      close(p, fd);
      return mockExporterRevoke(p, fd, true);
    },
  },
  {
    entry: 'uapi/test-devices.mockExporterRevoke',
    case: 'fd of a sync_file',
    errno: 'EINVAL',
    message: /MOCK_EXPORTER_REVOKE: fd 4 is a sync_file, not a DmaBufFile/,
    call: () => {
      const { p, fd } = withFence();
      return mockExporterRevoke(p, fd, true);
    },
  },
  {
    entry: 'uapi/test-devices.importerAttach',
    case: 'fd not open',
    errno: 'EBADF',
    message: /IMPORTER_ATTACH: fd 8 is not open/,
    call: () => importerAttach(proc(), 8, { device: 'nic0', dynamic: true }),
  },
  {
    entry: 'uapi/test-devices.importerAttach',
    case: 'revoked buffer',
    errno: 'ENODEV',
    message: /mock_exporter_attach: dmabuf mock-exporter:\d+ is revoked/,
    call: async () => {
      const { p, fd } = withMock();
      await mockExporterRevoke(p, fd, true);
      return importerAttach(p, fd, { device: 'nic0', dynamic: true });
    },
  },
  {
    entry: 'uapi/test-devices.importerAttach',
    case: 'empty device name',
    errno: 'EINVAL',
    message: /HostKernel\.addDevice: name missing/,
    call: () => {
      const { p, fd } = withBuf();
      return importerAttach(p, fd, { device: '', dynamic: true });
    },
  },
  {
    entry: 'uapi/test-devices.importerAttach',
    case: 'options missing',
    errno: 'EINVAL',
    message: /IMPORTER_ATTACH: opts missing/,
    call: () => {
      const { p, fd } = withBuf();
      return importerAttach(p, fd, undefined as never);
    },
  },
  {
    entry: 'uapi/test-devices.importerWrite',
    case: 'unknown importer id',
    errno: 'ENOENT',
    message: /IMPORTER_WRITE: importer 999999 is not open in t\[\d+\]/,
    call: () => importerWrite(proc(), 999999, 0, new Uint8Array(1)),
  },
  {
    entry: 'uapi/test-devices.importerWrite',
    case: 'offset beyond the buffer',
    errno: 'EINVAL',
    message: /sgTableWalk: \[1048576, \+1\) outside a 4096-byte table/,
    call: async () => {
      const { p, id } = await withImporter();
      return importerWrite(p, id, 1 << 20, new Uint8Array(1));
    },
  },
  {
    entry: 'uapi/test-devices.importerWrite',
    case: 'importer closed',
    errno: 'ENOENT',
    message: /IMPORTER_WRITE: importer \d+ is not open/,
    call: async () => {
      const { p, id } = await withImporter();
      await importerClose(p, id);
      return importerWrite(p, id, 0, new Uint8Array(1));
    },
  },
  {
    entry: 'uapi/test-devices.importerRead',
    case: 'negative length',
    errno: 'EINVAL',
    message: /TestImporter\(nic0\)\.read: length -1/,
    call: async () => {
      const { p, id } = await withImporter();
      return importerRead(p, id, 0, -1);
    },
  },
  {
    entry: 'uapi/test-devices.importerRead',
    case: 'unknown importer id',
    errno: 'ENOENT',
    message: /IMPORTER_READ: importer 999999 is not open/,
    call: () => importerRead(proc(), 999999, 0, 1),
  },
  {
    entry: 'uapi/test-devices.importerMapping',
    case: 'importer closed',
    errno: 'ENOENT',
    message: /IMPORTER_MAPPING: importer \d+ is not open/,
    call: async () => {
      const { p, id } = await withImporter();
      await importerClose(p, id);
      return importerMapping(p, id);
    },
  },
  {
    entry: 'uapi/test-devices.importerUnmap',
    case: 'unknown importer id',
    errno: 'ENOENT',
    message: /IMPORTER_UNMAP: importer 999999 is not open/,
    call: () => importerUnmap(proc(), 999999),
  },
  {
    entry: 'uapi/test-devices.importerStaleWrite',
    case: 'mapping missing',
    errno: 'EINVAL',
    message: /IMPORTER_STALE_WRITE: mapping has no entries/,
    call: async () => {
      const { p, id } = await withImporter();
      return importerStaleWrite(p, id, null as never, new Uint8Array(1));
    },
  },
  {
    entry: 'uapi/test-devices.importerStaleWrite',
    case: 'unknown importer id',
    errno: 'ENOENT',
    message: /IMPORTER_STALE_WRITE: importer 999999 is not open/,
    call: () => importerStaleWrite(proc(), 999999, { entries: [] }, new Uint8Array(1)),
  },
  {
    entry: 'uapi/test-devices.importerClose',
    case: 'closed twice',
    errno: 'ENOENT',
    message: /IMPORTER_CLOSE: importer \d+ is not open/,
    call: async () => {
      const { p, id } = await withImporter();
      await importerClose(p, id);
      return importerClose(p, id);
    },
  },
  {
    entry: 'uapi/test-devices.iommuTranslate',
    case: 'unknown device',
    errno: 'ENODEV',
    message: /host host0: no device named "gpu9"/,
    call: () => iommuTranslate(proc(), 'gpu9', 0),
  },
);

// ---------------------------------------------------------------------------------------------
// Kernel fixtures for the dma-buf core: the probe exporter (no real memory) and lock states.

const dev = probeDevice('gpu0');
const BIDI = DmaDataDirection.BIDIRECTIONAL;
const TO_DEVICE = DmaDataDirection.TO_DEVICE;
const dynOps: DmaBufAttachOps = { allowPeer2peer: true, invalidateMappings: () => {} };

/** A probe buffer (static exporter unless opts.dynamic). */
function probe(opts: ProbeOptions = {}): DmaBuf {
  return probeExport(opts).dmabuf;
}

/** A probe buffer whose last reference was dropped. */
function released(): DmaBuf {
  const b = probe();
  dmaBufPut(b);
  return b;
}

/** A buffer without mmap or vmap: only the mandatory ops. */
function bare(): DmaBuf {
  const ops: DmaBufOps = {
    mapDmaBuf: () => ({ entries: [], cpu: [], origNents: 0, length: 0 }),
    unmapDmaBuf: () => {},
    release: () => {},
  };
  return dmaBufExport({ expName: 'bare', ops, size: PAGE_SIZE, priv: {} });
}

/** A dynamic attachment of gpu0 to a dynamic probe buffer. */
async function dynAttach(): Promise<{ buf: DmaBuf; a: DmaBufAttachment }> {
  const buf = probe({ dynamic: true });
  return { buf, a: await dmaBufDynamicAttach(buf, dev, dynOps) };
}

/** An attachment that was detached again. */
async function detached(): Promise<{ buf: DmaBuf; a: DmaBufAttachment }> {
  const r = await dynAttach();
  await dmaBufDetach(r.buf, r.a);
  return r;
}

/** Run `fn` with `resv` locked outside any task (ROOT_TASK). */
async function locked<T>(resv: DmaResv, fn: () => T | Promise<T>): Promise<T> {
  await dmaResvLock(resv, null);
  try {
    return await fn();
  } finally {
    dmaResvUnlock(resv);
  }
}

/** Run `fn` as a task that holds `resv`: the "held by the caller" checks see it as the owner. */
function holding<T>(resv: DmaResv, fn: () => T | Promise<T>): Promise<T> {
  return runInTask('bad-input', () => locked(resv, fn));
}

/** Run `fn` from a fence callback, i.e. inside a fence signalling section. */
function inFenceCallback<T>(fn: () => T): T {
  const f = mockFence();
  type Out = { v: T } | { e: unknown };
  let out = { e: new Error('callback did not run') } as Out;
  dmaFenceAddCallback(f, {
    func: () => {
      try {
        out = { v: fn() };
      } catch (e) {
        out = { e };
      }
    },
  });
  dmaFenceSignal(f);
  if ('e' in out) throw out.e;
  return out.v;
}

/** A mock-exporter buffer (VRAM) on a fresh kernel, with a dynamic attachment, then revoked. */
async function revokedMock(): Promise<{ exp: MockExporter; a: DmaBufAttachment }> {
  const exp = MockExporter.create(kernel().mockExporterEnv(1 << 20), PAGE_SIZE);
  const a = await dmaBufDynamicAttach(exp.dmabuf, dev, dynOps);
  await exp.revoke();
  return { exp, a };
}

const B = String.raw`dmabuf probe:\d+`;

// ---------------------------------------------------------------------------------------------
// kernel: nodes/kernel/dma-buf/dma-buf.ts

rows.push(
  {
    entry: 'dma-buf.dmaBufExport',
    case: 'exp_info missing',
    errno: 'EINVAL',
    message: /dmaBufExport: exp_info missing/,
    call: () => dmaBufExport(undefined as never),
  },
  {
    entry: 'dma-buf.dmaBufExport',
    case: 'priv missing',
    errno: 'EINVAL',
    message: /dmaBufExport: exp_info\.priv missing/,
    call: () => dmaBufExport({ expName: 'x', ops: {} as DmaBufOps, size: PAGE_SIZE, priv: null }),
  },
  {
    entry: 'dma-buf.dmaBufExport',
    case: 'ops.release missing',
    errno: 'EINVAL',
    message: /dmaBufExport: exp_info\.ops\.release missing/,
    call: () =>
      dmaBufExport({
        expName: 'x',
        ops: { mapDmaBuf: () => ({}), unmapDmaBuf: () => {} } as unknown as DmaBufOps,
        size: PAGE_SIZE,
        priv: {},
      }),
  },
  {
    entry: 'dma-buf.dmaBufExport',
    case: 'pin without unpin',
    errno: 'EINVAL',
    message: /dmaBufExport: exp_info\.ops\.pin and ops\.unpin must come as a pair/,
    call: () =>
      dmaBufExport({
        expName: 'x',
        ops: { mapDmaBuf: () => ({}), unmapDmaBuf: () => {}, release: () => {}, pin: () => {} } as never,
        size: PAGE_SIZE,
        priv: {},
      }),
  },
  {
    entry: 'dma-buf.dmaBufExport',
    case: 'size not a page multiple',
    errno: 'EINVAL',
    message: /dmaBufExport: exp_info\.size 100 is not a positive multiple of PAGE_SIZE/,
    call: () => probeExport({ size: 100 }),
  },
  {
    entry: 'dma-buf.dmaBufExport',
    case: 'expName empty',
    errno: 'EINVAL',
    message: /dmaBufExport: exp_info\.expName missing/,
    call: () =>
      dmaBufExport({
        expName: '',
        ops: { mapDmaBuf: () => ({}), unmapDmaBuf: () => {}, release: () => {} } as never,
        size: PAGE_SIZE,
        priv: {},
      }),
  },
  {
    entry: 'dma-buf.getDmaBuf',
    case: 'released buffer',
    errno: 'EBADF',
    message: new RegExp(`getDmaBuf: ${B} was released`),
    call: () => getDmaBuf(released()),
  },
  {
    entry: 'dma-buf.getDmaBuf',
    case: 'not a dma-buf',
    errno: 'EINVAL',
    message: /getDmaBuf: dmabuf is not a dma-buf/,
    call: () => getDmaBuf({} as DmaBuf),
  },
  {
    entry: 'dma-buf.dmaBufPut',
    case: 'put after the last reference',
    errno: 'EBADF',
    message: new RegExp(`dmaBufPut: ${B} was released`),
    call: () => dmaBufPut(released()),
  },
  {
    entry: 'dma-buf.dmaBufPut',
    case: 'last reference with an attachment',
    errno: 'EBUSY',
    message: new RegExp(`dmaBufPut: last reference of ${B} dropped with 1 attachment`),
    call: async () => dmaBufPut((await dynAttach()).buf),
  },
  {
    entry: 'dma-buf.dmaBufPut',
    case: 'resv held by the caller',
    errno: 'EDEADLK',
    message: /dmaBufPut: dmabuf:probe lock is held by the caller/,
    call: () => {
      const buf = probe();
      return holding(buf.resv, () => dmaBufPut(buf));
    },
  },
  {
    entry: 'dma-buf.dmaBufAttach',
    case: 'released buffer',
    errno: 'EBADF',
    message: new RegExp(`dmaBufAttach: ${B} was released`),
    call: () => dmaBufAttach(released(), dev),
  },
  {
    entry: 'dma-buf.dmaBufAttach',
    case: 'dev missing',
    errno: 'EINVAL',
    message: /dmaBufAttach: dev is not a device/,
    call: () => dmaBufAttach(probe(), undefined as never),
  },
  {
    entry: 'dma-buf.dmaBufAttach',
    case: 'resv held by the caller',
    errno: 'EDEADLK',
    message: /dmaBufAttach: dmabuf:probe lock is held by the caller/,
    call: () => {
      const buf = probe();
      return holding(buf.resv, () => dmaBufAttach(buf, dev));
    },
  },
  {
    entry: 'dma-buf.dmaBufAttach',
    case: 'exporter refuses the device',
    errno: 'EBUSY',
    message: /probe: attach of gpu0 refused/,
    call: () => dmaBufAttach(probe({ refuseAttach: 'EBUSY' }), dev),
  },
  {
    entry: 'dma-buf.dmaBufDynamicAttach',
    case: 'importer_ops missing',
    errno: 'EINVAL',
    message: /dmaBufDynamicAttach: importer_ops missing/,
    call: () => dmaBufDynamicAttach(probe(), dev, undefined as never),
  },
  {
    entry: 'dma-buf.dmaBufDynamicAttach',
    case: 'invalidateMappings missing',
    errno: 'EINVAL',
    message: /dmaBufDynamicAttach: importer_ops\.invalidateMappings missing/,
    call: () => dmaBufDynamicAttach(probe(), dev, { allowPeer2peer: true }),
  },
  {
    entry: 'dma-buf.dmaBufDynamicAttach',
    case: 'revoked buffer',
    errno: 'ENODEV',
    message: /mock_exporter_attach: dmabuf mock-exporter:\d+ is revoked/,
    call: async () => dmaBufDynamicAttach((await revokedMock()).exp.dmabuf, probeDevice('gpu1'), dynOps),
  },
  {
    entry: 'dma-buf.dmaBufDetach',
    case: 'detached attachment',
    errno: 'EINVAL',
    message: new RegExp(`dmaBufDetach: attachment of gpu0 to ${B} is detached`),
    call: async () => {
      const { buf, a } = await detached();
      return dmaBufDetach(buf, a);
    },
  },
  {
    entry: 'dma-buf.dmaBufDetach',
    case: 'attachment of another buffer',
    errno: 'EINVAL',
    message: new RegExp(`dmaBufDetach: attachment of gpu0 to ${B} does not belong to ${B}`),
    call: async () => dmaBufDetach(probe(), (await dynAttach()).a),
  },
  {
    entry: 'dma-buf.dmaBufDetach',
    case: 'not an attachment',
    errno: 'EINVAL',
    message: /dmaBufDetach: attach is not a dma-buf attachment/,
    call: () => dmaBufDetach(probe(), {} as DmaBufAttachment),
  },
  {
    entry: 'dma-buf.dmaBufDetach',
    case: 'still mapped',
    errno: 'EBUSY',
    message: /dmaBufDetach: attachment of gpu0 .* still has 1 mapping/,
    call: async () => {
      const { buf, a } = await dynAttach();
      await locked(buf.resv, () => dmaBufMapAttachment(a, BIDI));
      return dmaBufDetach(buf, a);
    },
  },
  {
    entry: 'dma-buf.dmaBufDetach',
    case: 'still pinned',
    errno: 'EBUSY',
    message: /dmaBufDetach: attachment of gpu0 .* is still pinned/,
    call: async () => {
      const { buf, a } = await dynAttach();
      await locked(buf.resv, () => dmaBufPin(a));
      return dmaBufDetach(buf, a);
    },
  },
  {
    entry: 'dma-buf.dmaBufDetach',
    case: 'resv held by the caller',
    errno: 'EDEADLK',
    message: /dmaBufDetach: dmabuf:probe lock is held by the caller/,
    call: async () => {
      const { buf, a } = await dynAttach();
      return holding(buf.resv, () => dmaBufDetach(buf, a));
    },
  },
  {
    entry: 'dma-buf.dmaBufPin',
    case: 'resv not held',
    errno: 'EPERM',
    message: /dmaBufPin: dmabuf:probe lock must be held by the caller/,
    call: async () => dmaBufPin((await dynAttach()).a),
  },
  {
    entry: 'dma-buf.dmaBufPin',
    case: 'resv held by another task',
    errno: 'EPERM',
    message: /dmaBufPin: dmabuf:probe lock must be held by the caller/,
    call: async () => {
      const { buf, a } = await dynAttach();
      return holding(buf.resv, () => runInTask('other', () => dmaBufPin(a)));
    },
  },
  {
    entry: 'dma-buf.dmaBufPin',
    case: 'static attachment',
    errno: 'EINVAL',
    message: /dmaBufPin: attachment of gpu0 .* is a static attachment/,
    call: async () => {
      const buf = probe({ dynamic: true });
      const a = await dmaBufAttach(buf, dev);
      return locked(buf.resv, () => dmaBufPin(a));
    },
  },
  {
    entry: 'dma-buf.dmaBufPin',
    case: 'detached attachment',
    errno: 'EINVAL',
    message: /dmaBufPin: attachment of gpu0 .* is detached/,
    call: async () => {
      const { buf, a } = await detached();
      return locked(buf.resv, () => dmaBufPin(a));
    },
  },
  {
    entry: 'dma-buf.dmaBufPin',
    case: 'revoked buffer',
    errno: 'ENODEV',
    message: /mock_exporter_pin: dmabuf mock-exporter:\d+ is revoked/,
    call: async () => {
      const { exp, a } = await revokedMock();
      return locked(exp.dmabuf.resv, () => dmaBufPin(a));
    },
  },
  {
    entry: 'dma-buf.dmaBufUnpin',
    case: 'not pinned',
    errno: 'EINVAL',
    message: /dmaBufUnpin: attachment of gpu0 .* is not pinned/,
    call: async () => {
      const { buf, a } = await dynAttach();
      return locked(buf.resv, () => dmaBufUnpin(a));
    },
  },
  {
    entry: 'dma-buf.dmaBufUnpin',
    case: 'resv not held',
    errno: 'EPERM',
    message: /dmaBufUnpin: dmabuf:probe lock must be held/,
    call: async () => dmaBufUnpin((await dynAttach()).a),
  },
  {
    entry: 'dma-buf.dmaBufMapAttachment',
    case: 'resv not held',
    errno: 'EPERM',
    message: /dmaBufMapAttachment: dmabuf:probe lock must be held/,
    call: async () => dmaBufMapAttachment((await dynAttach()).a, BIDI),
  },
  {
    entry: 'dma-buf.dmaBufMapAttachment',
    case: 'invalid direction',
    errno: 'EINVAL',
    message: /dmaBufMapAttachment: direction 7 is not a valid dma_data_direction/,
    call: async () => {
      const { buf, a } = await dynAttach();
      return locked(buf.resv, () => dmaBufMapAttachment(a, 7 as never));
    },
  },
  {
    entry: 'dma-buf.dmaBufMapAttachment',
    case: 'detached attachment',
    errno: 'EINVAL',
    message: /dmaBufMapAttachment: attachment of gpu0 .* is detached/,
    call: async () => {
      const { buf, a } = await detached();
      return locked(buf.resv, () => dmaBufMapAttachment(a, BIDI));
    },
  },
  {
    entry: 'dma-buf.dmaBufMapAttachment',
    case: 'revoked buffer',
    errno: 'ENODEV',
    message: /mock_exporter_map: dmabuf mock-exporter:\d+ is revoked/,
    call: async () => {
      const { exp, a } = await revokedMock();
      return locked(exp.dmabuf.resv, () => dmaBufMapAttachment(a, BIDI));
    },
  },
  {
    entry: 'dma-buf.dmaBufUnmapAttachment',
    case: 'sgt not a live mapping',
    errno: 'EINVAL',
    message: /dmaBufUnmapAttachment: sgt is not a live mapping of attachment of gpu0/,
    call: async () => {
      const { buf, a } = await dynAttach();
      return locked(buf.resv, () =>
        dmaBufUnmapAttachment(a, { entries: [], cpu: [], origNents: 0, length: 0 }, BIDI),
      );
    },
  },
  {
    entry: 'dma-buf.dmaBufUnmapAttachment',
    case: 'direction differs from the map',
    errno: 'EINVAL',
    message: /dmaBufUnmapAttachment: direction 1 differs from the map's 0/,
    call: async () => {
      const { buf, a } = await dynAttach();
      return locked(buf.resv, async () => {
        const sgt = await dmaBufMapAttachment(a, BIDI);
        try {
          await dmaBufUnmapAttachment(a, sgt, TO_DEVICE);
        } finally {
          await dmaBufUnmapAttachment(a, sgt, BIDI);
        }
      });
    },
  },
  {
    entry: 'dma-buf.dmaBufUnmapAttachment',
    case: 'resv not held',
    errno: 'EPERM',
    message: /dmaBufUnmapAttachment: dmabuf:probe lock must be held/,
    call: async () => {
      const { a } = await dynAttach();
      const sgt = await dmaBufMapAttachmentUnlocked(a, BIDI);
      return dmaBufUnmapAttachment(a, sgt, BIDI);
    },
  },
  {
    entry: 'dma-buf.dmaBufMapAttachmentUnlocked',
    case: 'resv held by the caller',
    errno: 'EDEADLK',
    message: /dmaBufMapAttachmentUnlocked: dmabuf:probe lock is held by the caller/,
    call: async () => {
      const { buf, a } = await dynAttach();
      return holding(buf.resv, () => dmaBufMapAttachmentUnlocked(a, BIDI));
    },
  },
  {
    entry: 'dma-buf.dmaBufMapAttachmentUnlocked',
    case: 'called from a fence callback',
    errno: 'EDEADLK',
    message: /dmaResvLock\(dmabuf:probe\): called from a fence signalling section/,
    call: async () => {
      const { a } = await dynAttach();
      return inFenceCallback(() => dmaBufMapAttachmentUnlocked(a, BIDI));
    },
  },
  {
    entry: 'dma-buf.dmaBufMapAttachmentUnlocked',
    case: 'detached attachment',
    errno: 'EINVAL',
    message: /dmaBufMapAttachmentUnlocked: attachment of gpu0 .* is detached/,
    call: async () => dmaBufMapAttachmentUnlocked((await detached()).a, BIDI),
  },
  {
    entry: 'dma-buf.dmaBufUnmapAttachmentUnlocked',
    case: 'resv held by the caller',
    errno: 'EDEADLK',
    message: /dmaBufUnmapAttachmentUnlocked: dmabuf:probe lock is held by the caller/,
    call: async () => {
      const { buf, a } = await dynAttach();
      const sgt = await dmaBufMapAttachmentUnlocked(a, BIDI);
      return holding(buf.resv, () => dmaBufUnmapAttachmentUnlocked(a, sgt, BIDI));
    },
  },
  {
    entry: 'dma-buf.dmaBufUnmapAttachmentUnlocked',
    case: 'unmapped twice',
    errno: 'EINVAL',
    message: /dmaBufUnmapAttachment: sgt is not a live mapping/,
    call: async () => {
      const { a } = await dynAttach();
      const sgt = await dmaBufMapAttachmentUnlocked(a, BIDI);
      await dmaBufUnmapAttachmentUnlocked(a, sgt, BIDI);
      return dmaBufUnmapAttachmentUnlocked(a, sgt, BIDI);
    },
  },
  {
    entry: 'dma-buf.dmaBufInvalidateMappings',
    case: 'resv not held',
    errno: 'EPERM',
    message: /dmaBufInvalidateMappings: dmabuf:probe lock must be held/,
    call: () => dmaBufInvalidateMappings(probe()),
  },
  {
    entry: 'dma-buf.dmaBufInvalidateMappings',
    case: 'released buffer',
    errno: 'EBADF',
    message: new RegExp(`dmaBufInvalidateMappings: ${B} was released`),
    call: () => dmaBufInvalidateMappings(released()),
  },
  {
    entry: 'dma-buf.dmaBufMoveNotify',
    case: 'resv not held',
    errno: 'EPERM',
    message: /dmaBufInvalidateMappings: dmabuf:probe lock must be held/,
    call: () => dmaBufMoveNotify(probe()),
  },
  {
    entry: 'dma-buf.dmaBufIsDynamic',
    case: 'not a dma-buf',
    errno: 'EINVAL',
    message: /dmaBufIsDynamic: dmabuf is not a dma-buf/,
    call: () => dmaBufIsDynamic(undefined as never),
  },
  {
    entry: 'dma-buf.dmaBufIsPinned',
    case: 'not a dma-buf',
    errno: 'EINVAL',
    message: /dmaBufIsPinned: dmabuf is not a dma-buf/,
    call: () => dmaBufIsPinned({} as DmaBuf),
  },
  {
    entry: 'dma-buf.dmaBufAttachmentIsDynamic',
    case: 'not an attachment',
    errno: 'EINVAL',
    message: /dmaBufAttachmentIsDynamic: attach is not a dma-buf attachment/,
    call: () => dmaBufAttachmentIsDynamic({} as DmaBufAttachment),
  },
  {
    entry: 'dma-buf.dmaBufPinOnMap',
    case: 'not an attachment',
    errno: 'EINVAL',
    message: /dmaBufPinOnMap: attach is not a dma-buf attachment/,
    call: () => dmaBufPinOnMap({} as DmaBufAttachment),
  },
  {
    entry: 'dma-buf.dmaBufAttachRevocable',
    case: 'not an attachment',
    errno: 'EINVAL',
    message: /dmaBufAttachRevocable: attach is not a dma-buf attachment/,
    call: () => dmaBufAttachRevocable(null as never),
  },
);

// ---------------------------------------------------------------------------------------------
// kernel: nodes/kernel/dma-buf/dma-buf-cpu.ts

rows.push(
  {
    entry: 'dma-buf-cpu.dmaBufBeginCpuAccess',
    case: 'invalid direction',
    errno: 'EINVAL',
    message: /dmaBufBeginCpuAccess: direction 7/,
    call: () => dmaBufBeginCpuAccess(probe(), 7 as never),
  },
  {
    entry: 'dma-buf-cpu.dmaBufBeginCpuAccess',
    case: 'released buffer',
    errno: 'EBADF',
    message: new RegExp(`dmaBufBeginCpuAccess: ${B} was released`),
    call: () => dmaBufBeginCpuAccess(released(), BIDI),
  },
  {
    entry: 'dma-buf-cpu.dmaBufBeginCpuAccess',
    case: 'resv held by the caller',
    errno: 'EDEADLK',
    message: /dmaBufBeginCpuAccess: dmabuf:probe lock is held by the caller/,
    call: () => {
      const buf = probe();
      return holding(buf.resv, () => dmaBufBeginCpuAccess(buf, BIDI));
    },
  },
  {
    entry: 'dma-buf-cpu.dmaBufEndCpuAccess',
    case: 'invalid direction',
    errno: 'EINVAL',
    message: /dmaBufEndCpuAccess: direction 3/,
    call: () => dmaBufEndCpuAccess(probe(), DmaDataDirection.NONE),
  },
  {
    entry: 'dma-buf-cpu.dmaBufEndCpuAccess',
    case: 'resv held by the caller',
    errno: 'EDEADLK',
    message: /dmaBufEndCpuAccess: dmabuf:probe lock is held by the caller/,
    call: () => {
      const buf = probe();
      return holding(buf.resv, () => dmaBufEndCpuAccess(buf, BIDI));
    },
  },
  {
    entry: 'dma-buf-cpu.dmaBufIoctlSync',
    case: 'released buffer',
    errno: 'EBADF',
    message: new RegExp(`DMA_BUF_IOCTL_SYNC: ${B} was released`),
    call: () => dmaBufIoctlSync(released(), DMA_BUF_SYNC.RW),
  },
  {
    entry: 'dma-buf-cpu.dmaBufIoctlSync',
    case: 'flags not a number',
    errno: 'EINVAL',
    message: /DMA_BUF_IOCTL_SYNC: flags 0xNaN has unknown bits/,
    call: () => dmaBufIoctlSync(probe(), 'rw' as never),
  },
  {
    entry: 'dma-buf-cpu.dmaBufMmap',
    case: 'pages 0',
    errno: 'EINVAL',
    message: /dmaBufMmap: pages 0/,
    call: () => kDmaBufMmap(probe(), 0, 0),
  },
  {
    entry: 'dma-buf-cpu.dmaBufMmap',
    case: 'exporter without mmap',
    errno: 'EOPNOTSUPP',
    message: /dmaBufMmap: exporter bare has no mmap/,
    call: () => kDmaBufMmap(bare(), 0, 1),
  },
  {
    entry: 'dma-buf-cpu.dmaBufMmap',
    case: 'released buffer',
    errno: 'EBADF',
    message: new RegExp(`dmaBufMmap: ${B} was released`),
    call: () => kDmaBufMmap(released(), 0, 1),
  },
  {
    entry: 'dma-buf-cpu.dmaBufMmap',
    case: 'resv held by the caller',
    errno: 'EDEADLK',
    message: /dmaBufMmap: dmabuf:probe lock is held by the caller/,
    call: () => {
      const buf = probe();
      return holding(buf.resv, () => kDmaBufMmap(buf, 0, 1));
    },
  },
  {
    entry: 'dma-buf-cpu.dmaBufVmap',
    case: 'resv not held',
    errno: 'EPERM',
    message: /dmaBufVmap: dmabuf:probe lock must be held/,
    call: () => dmaBufVmap(probe()),
  },
  {
    entry: 'dma-buf-cpu.dmaBufVmap',
    case: 'exporter without vmap',
    errno: 'EOPNOTSUPP',
    message: /dmaBufVmap: exporter bare has no vmap/,
    call: () => {
      const buf = bare();
      return locked(buf.resv, () => dmaBufVmap(buf));
    },
  },
  {
    entry: 'dma-buf-cpu.dmaBufVmap',
    case: 'released buffer',
    errno: 'EBADF',
    message: new RegExp(`dmaBufVmap: ${B} was released`),
    call: () => dmaBufVmap(released()),
  },
  {
    entry: 'dma-buf-cpu.dmaBufVunmap',
    case: 'not vmapped',
    errno: 'EINVAL',
    message: new RegExp(`dmaBufVunmap: ${B} is not vmapped`),
    call: () => {
      const buf = probe();
      return locked(buf.resv, () => dmaBufVunmap(buf, { length: 0, read() {}, write() {} }));
    },
  },
  {
    entry: 'dma-buf-cpu.dmaBufVunmap',
    case: 'view is not the vmap',
    errno: 'EINVAL',
    message: new RegExp(`dmaBufVunmap: view is not the current vmap of ${B}`),
    call: () => {
      const buf = probe();
      return locked(buf.resv, () => {
        const view = dmaBufVmap(buf);
        try {
          dmaBufVunmap(buf, { ...view });
        } finally {
          dmaBufVunmap(buf, view);
        }
      });
    },
  },
  {
    entry: 'dma-buf-cpu.dmaBufVunmap',
    case: 'resv not held',
    errno: 'EPERM',
    message: /dmaBufVunmap: dmabuf:probe lock must be held/,
    call: async () => {
      const buf = probe();
      const view = await dmaBufVmapUnlocked(buf);
      dmaBufVunmap(buf, view);
    },
  },
  {
    entry: 'dma-buf-cpu.dmaBufVmapUnlocked',
    case: 'resv held by the caller',
    errno: 'EDEADLK',
    message: /dmaBufVmapUnlocked: dmabuf:probe lock is held by the caller/,
    call: () => {
      const buf = probe();
      return holding(buf.resv, () => dmaBufVmapUnlocked(buf));
    },
  },
  {
    entry: 'dma-buf-cpu.dmaBufVmapUnlocked',
    case: 'called from a fence callback',
    errno: 'EDEADLK',
    message: /dmaResvLock\(dmabuf:probe\): called from a fence signalling section/,
    call: () => {
      const buf = probe();
      return inFenceCallback(() => dmaBufVmapUnlocked(buf));
    },
  },
  {
    entry: 'dma-buf-cpu.dmaBufVunmapUnlocked',
    case: 'resv held by the caller',
    errno: 'EDEADLK',
    message: /dmaBufVunmapUnlocked: dmabuf:probe lock is held by the caller/,
    call: async () => {
      const buf = probe();
      const view = await dmaBufVmapUnlocked(buf);
      try {
        await holding(buf.resv, () => dmaBufVunmapUnlocked(buf, view));
      } finally {
        await dmaBufVunmapUnlocked(buf, view);
      }
    },
  },
  {
    entry: 'dma-buf-cpu.dmaBufVunmapUnlocked',
    case: 'not vmapped',
    errno: 'EINVAL',
    message: new RegExp(`dmaBufVunmap: ${B} is not vmapped`),
    call: () => dmaBufVunmapUnlocked(probe(), { length: 0, read() {}, write() {} }),
  },
  {
    entry: 'dma-buf-cpu.dmaBufLlseek',
    case: 'released buffer',
    errno: 'EBADF',
    message: new RegExp(`dmaBufLlseek: ${B} was released`),
    call: () => dmaBufLlseek(released(), 0, SEEK_SET),
  },
  {
    entry: 'dma-buf-cpu.dmaBufLlseek',
    case: 'unknown whence',
    errno: 'EINVAL',
    message: /dmaBufLlseek: whence 9 \(SEEK_SET or SEEK_END only\)/,
    call: () => dmaBufLlseek(probe(), 0, 9),
  },
  {
    entry: 'dma-buf-cpu.dmaBufPollMask',
    case: 'released buffer',
    errno: 'EBADF',
    message: new RegExp(`dmaBufPoll: ${B} was released`),
    call: () => dmaBufPollMask(released()),
  },
  {
    entry: 'dma-buf-cpu.dmaBufPoll',
    case: 'timeout not a number',
    errno: 'EINVAL',
    message: /dmaBufPoll: timeout NaN/,
    call: () => kDmaBufPoll(probe(), 1, Number.NaN),
  },
  {
    entry: 'dma-buf-cpu.dmaBufPoll',
    case: 'released buffer',
    errno: 'EBADF',
    message: new RegExp(`dmaBufPoll: ${B} was released`),
    call: () => kDmaBufPoll(released(), 1, 0),
  },
);

// ---------------------------------------------------------------------------------------------
// kernel: nodes/kernel/dma-buf/dma-buf-file.ts and nodes/kernel/fs/file.ts

/** A file object of no particular kind. */
class Dummy implements FileObject {
  readonly kind = 'dummy';
  release(): void {}
}

rows.push(
  {
    entry: 'dma-buf-file.dmaBufFd',
    case: 'released buffer',
    errno: 'EBADF',
    message: new RegExp(`dmaBufFd: ${B} was released`),
    call: () => dmaBufFd(new FdTable(), released()),
  },
  {
    entry: 'dma-buf-file.dmaBufFd',
    case: 'not a dma-buf',
    errno: 'EINVAL',
    message: /dmaBufFd: dmabuf is not a dma-buf/,
    call: () => dmaBufFd(new FdTable(), {} as DmaBuf),
  },
  {
    entry: 'dma-buf-file.dmaBufGet',
    case: 'fd not open',
    errno: 'EBADF',
    message: /dmaBufGet: fd 5 is not open in host/,
    call: () => dmaBufGet(new FdTable(), 5),
  },
  {
    entry: 'dma-buf-file.dmaBufGet',
    case: 'fd of an sw_sync timeline',
    errno: 'EINVAL',
    message: /dmaBufGet: fd 3 is a sw_sync, not a DmaBufFile/,
    call: () => {
      const fdt = new FdTable();
      return dmaBufGet(fdt, swSyncTimelineCreate(fdt));
    },
  },
  {
    entry: 'dma-buf-file.dmaBufFromFd',
    case: 'buffer behind the fd released',
    errno: 'EBADF',
    message: new RegExp(`probe-ioctl: ${B} was released`),
    call: () => {
      const fdt = new FdTable();
      const buf = probe();
      const fd = dmaBufFd(fdt, buf);
      dmaBufPut(buf); // drops the fd's reference behind its back
      return dmaBufFromFd(fdt, fd, 'probe-ioctl');
    },
  },
  {
    entry: 'dma-buf-file.dmaBufSetName',
    case: 'released buffer',
    errno: 'EBADF',
    message: new RegExp(`DMA_BUF_SET_NAME: ${B} was released`),
    call: () => kDmaBufSetName(released(), 'x'),
  },
  {
    entry: 'dma-buf-file.dmaBufSetName',
    case: 'name of 32 UTF-8 bytes',
    errno: 'EINVAL',
    message: /DMA_BUF_SET_NAME: name is 32 bytes, at most 31/,
    call: () => kDmaBufSetName(probe(), 'é'.repeat(16)),
  },
  {
    entry: 'dma-buf-file.dmaBufExportSyncFile',
    case: 'flags with END',
    errno: 'EINVAL',
    message: /DMA_BUF_IOCTL_EXPORT_SYNC_FILE: flags 0x4 must be DMA_BUF_SYNC_READ and\/or WRITE/,
    call: () => kDmaBufExportSyncFile(new FdTable(), probe(), DMA_BUF_SYNC.END),
  },
  {
    entry: 'dma-buf-file.dmaBufExportSyncFile',
    case: 'released buffer',
    errno: 'EBADF',
    message: new RegExp(`DMA_BUF_IOCTL_EXPORT_SYNC_FILE: ${B} was released`),
    call: () => kDmaBufExportSyncFile(new FdTable(), released(), DMA_BUF_SYNC.READ),
  },
  {
    entry: 'dma-buf-file.dmaBufImportSyncFile',
    case: 'resv held by the caller',
    errno: 'EDEADLK',
    message: /DMA_BUF_IOCTL_IMPORT_SYNC_FILE: dmabuf:probe lock is held by the caller/,
    call: () => {
      const fdt = new FdTable();
      const buf = probe();
      const syncFd = syncFileInstall(fdt, mockFence());
      return holding(buf.resv, () => kDmaBufImportSyncFile(fdt, buf, DMA_BUF_SYNC.WRITE, syncFd));
    },
  },
  {
    entry: 'dma-buf-file.dmaBufImportSyncFile',
    case: 'sync fd not open',
    errno: 'EBADF',
    message: /syncFileGetFence: fd 3 is not open/,
    call: () => kDmaBufImportSyncFile(new FdTable(), probe(), DMA_BUF_SYNC.READ, 3),
  },
  {
    entry: 'dma-buf-file.dmaBufImportSyncFile',
    case: 'released buffer',
    errno: 'EBADF',
    message: new RegExp(`DMA_BUF_IOCTL_IMPORT_SYNC_FILE: ${B} was released`),
    call: () => kDmaBufImportSyncFile(new FdTable(), released(), DMA_BUF_SYNC.READ, 3),
  },
  {
    entry: 'fs/file.FdTable.get',
    case: 'fd not open',
    errno: 'EBADF',
    message: /fdget: fd 3 is not open in host/,
    call: () => new FdTable().get(3),
  },
  {
    entry: 'fs/file.FdTable.get',
    case: 'negative fd',
    errno: 'EBADF',
    message: /fdget: fd -1 is not open/,
    call: () => new FdTable().get(-1),
  },
  {
    entry: 'fs/file.FdTable.getAs',
    case: 'fd of another kind',
    errno: 'EINVAL',
    message: /probe-ioctl: fd 3 is a dummy, not a SyncFile/,
    call: () => {
      const fdt = new FdTable();
      return fdt.getAs(fdt.install(new Dummy()), SyncFile, 'probe-ioctl');
    },
  },
  {
    entry: 'fs/file.FdTable.close',
    case: 'closed twice',
    errno: 'EBADF',
    message: /close: fd 3 is not open in proc7/,
    call: () => {
      const fdt = new FdTable('proc7');
      const fd = fdt.install(new Dummy());
      fdt.close(fd);
      fdt.close(fd);
    },
  },
  {
    entry: 'fs/file.FdTable.dup',
    case: 'fd not open',
    errno: 'EBADF',
    message: /dup: fd 4 is not open/,
    call: () => new FdTable().dup(4),
  },
  {
    entry: 'fs/file.FdTable.sendFd',
    case: 'closed fd',
    errno: 'EBADF',
    message: /sendFd: fd 3 is not open/,
    call: () => {
      const fdt = new FdTable();
      fdt.close(fdt.install(new Dummy()));
      return fdt.sendFd(3);
    },
  },
  {
    entry: 'fs/file.FdTable.receiveFd',
    case: 'token received twice',
    errno: 'EINVAL',
    message: /receiveFd: token \d+ is not in flight/,
    call: () => {
      const a = new FdTable();
      const token = a.sendFd(a.install(new Dummy()));
      const b = new FdTable();
      b.receiveFd(token);
      return b.receiveFd(token);
    },
  },
  {
    entry: 'fs/file.FdTable.install',
    case: 'not a file object',
    errno: 'EINVAL',
    message: /fdInstall\(host\): obj is not a file object/,
    call: () => new FdTable().install({} as FileObject),
  },
);

// ---------------------------------------------------------------------------------------------
// kernel: nodes/kernel/dma-buf/dma-resv.ts (and the ww_mutex under it)

const notResv = {} as DmaResv;

rows.push(
  {
    entry: 'dma-resv.dmaResvLock',
    case: 'not a dma_resv',
    errno: 'EINVAL',
    message: /dmaResvLock: obj is not a dma_resv/,
    call: () => dmaResvLock(notResv),
  },
  {
    entry: 'dma-resv.dmaResvLock',
    case: 'recursive locking by the same task',
    errno: 'EDEADLK',
    message: /wwMutexLock\(r\): task bad-input already holds it \(recursive locking\)/,
    call: () => {
      const r = new DmaResv('r');
      return holding(r, () => dmaResvLock(r));
    },
  },
  {
    entry: 'dma-resv.dmaResvLock',
    case: 'taken in a fence callback',
    errno: 'EDEADLK',
    message: /dmaResvLock\(r\): called from a fence signalling section/,
    call: () => {
      const r = new DmaResv('r');
      return inFenceCallback(() => dmaResvLock(r));
    },
  },
  {
    entry: 'dma-resv.dmaResvLock',
    case: 'inside dmaFenceBeginSignalling',
    errno: 'EDEADLK',
    message: /dmaResvLock\(r\): called from a fence signalling section/,
    call: () => {
      const cookie = dmaFenceBeginSignalling();
      try {
        return dmaResvLock(new DmaResv('r'));
      } finally {
        dmaFenceEndSignalling(cookie);
      }
    },
  },
  {
    entry: 'dma-resv.dmaResvLock',
    case: 'ctx after acquireDone',
    errno: 'EINVAL',
    message: /wwMutexLock\(r\): ctx c after acquireDone/,
    call: () => {
      const ctx = new WwAcquireCtx('c');
      ctx.acquireDone();
      return dmaResvLock(new DmaResv('r'), ctx);
    },
  },
  {
    entry: 'dma-resv.dmaResvLock',
    case: 'ctx finished',
    errno: 'EINVAL',
    message: /wwMutexLock\(r\): ctx c finished/,
    call: () => {
      const ctx = new WwAcquireCtx('c');
      ctx.acquireFini();
      return dmaResvLock(new DmaResv('r'), ctx);
    },
  },
  {
    entry: 'dma-resv.dmaResvLock',
    case: 'ctx already holds it',
    errno: 'EALREADY',
    message: /wwMutexLock\(r\): held by ctx c/,
    call: async () => {
      const r = new DmaResv('r');
      const ctx = new WwAcquireCtx('c');
      await dmaResvLock(r, ctx);
      try {
        await dmaResvLock(r, ctx);
      } finally {
        dmaResvUnlock(r);
      }
    },
  },
  {
    entry: 'dma-resv.dmaResvLock',
    case: 'younger ctx meets an older holder',
    errno: 'EDEADLK',
    message: /wwMutexLock\(r1\): ctx young must back off/,
    call: async () => {
      const [r1, r2] = [new DmaResv('r1'), new DmaResv('r2')];
      const old = new WwAcquireCtx('old');
      const young = new WwAcquireCtx('young');
      await dmaResvLock(r2, young);
      await dmaResvLock(r1, old);
      try {
        await dmaResvLock(r1, young);
      } finally {
        dmaResvUnlock(r1);
        dmaResvUnlock(r2);
      }
    },
  },
  {
    entry: 'dma-resv.dmaResvLockInterruptible',
    case: 'signal already aborted',
    errno: 'ERESTARTSYS',
    message: /wwMutexLock\(r\): interrupted/,
    call: () => {
      const r = new DmaResv('r');
      return locked(r, () => dmaResvLockInterruptible(r, null, AbortSignal.abort()));
    },
  },
  {
    entry: 'dma-resv.dmaResvLockSlow',
    case: 'ctx still holds a lock',
    errno: 'EINVAL',
    message: /dmaResvLockSlow\(r\): ctx c still holds 1 lock/,
    call: async () => {
      const [r, held] = [new DmaResv('r'), new DmaResv('held')];
      const ctx = new WwAcquireCtx('c');
      await dmaResvLock(held, ctx);
      try {
        await dmaResvLockSlow(r, ctx);
      } finally {
        dmaResvUnlock(held);
      }
    },
  },
  {
    entry: 'dma-resv.dmaResvLockSlow',
    case: 'taken in a fence callback',
    errno: 'EDEADLK',
    message: /dmaResvLockSlow\(r\): called from a fence signalling section/,
    call: () => inFenceCallback(() => dmaResvLockSlow(new DmaResv('r'), new WwAcquireCtx('c'))),
  },
  {
    entry: 'dma-resv.dmaResvTrylock',
    case: 'taken in a fence callback',
    errno: 'EDEADLK',
    message: /dmaResvTrylock\(r\): called from a fence signalling section/,
    call: () => inFenceCallback(() => dmaResvTrylock(new DmaResv('r'))),
  },
  {
    entry: 'dma-resv.dmaResvTrylock',
    case: 'not a dma_resv',
    errno: 'EINVAL',
    message: /dmaResvTrylock: obj is not a dma_resv/,
    call: () => dmaResvTrylock(notResv),
  },
  {
    entry: 'dma-resv.dmaResvUnlock',
    case: 'not locked',
    errno: 'EPERM',
    message: /wwMutexUnlock\(r\): not locked/,
    call: () => dmaResvUnlock(new DmaResv('r')),
  },
  {
    entry: 'dma-resv.dmaResvUnlock',
    case: 'not a dma_resv',
    errno: 'EINVAL',
    message: /dmaResvUnlock: obj is not a dma_resv/,
    call: () => dmaResvUnlock(notResv),
  },
  {
    entry: 'dma-resv.dmaResvReserveFences',
    case: 'resv not held',
    errno: 'EPERM',
    message: /dmaResvReserveFences: r lock must be held by the caller/,
    call: () => dmaResvReserveFences(new DmaResv('r'), 1),
  },
  {
    entry: 'dma-resv.dmaResvReserveFences',
    case: 'negative num',
    errno: 'EINVAL',
    message: /dmaResvReserveFences: num -1/,
    call: () => {
      const r = new DmaResv('r');
      return locked(r, () => dmaResvReserveFences(r, -1));
    },
  },
  {
    entry: 'dma-resv.dmaResvAddFence',
    case: 'resv not held',
    errno: 'EPERM',
    message: /dmaResvAddFence: r lock must be held/,
    call: () => dmaResvAddFence(new DmaResv('r'), mockFence(), DmaResvUsage.READ),
  },
  {
    entry: 'dma-resv.dmaResvAddFence',
    case: 'unknown usage',
    errno: 'EINVAL',
    message: /dmaResvAddFence: usage 7 is not a dma_resv_usage/,
    call: () => {
      const r = new DmaResv('r');
      return locked(r, () => dmaResvAddFence(r, mockFence(), 7 as never));
    },
  },
  {
    entry: 'dma-resv.dmaResvAddFence',
    case: 'container fence',
    errno: 'EINVAL',
    message: /dmaResvAddFence: container fences may not be added/,
    call: () => {
      const r = new DmaResv('r');
      const array = dmaFenceArrayCreate([mockFence(), mockFence()], dmaFenceContextAlloc(), 1, false);
      return locked(r, () => {
        dmaResvReserveFences(r, 1);
        dmaResvAddFence(r, array, DmaResvUsage.READ);
      });
    },
  },
  {
    entry: 'dma-resv.dmaResvAddFence',
    case: 'no reserved slot',
    errno: 'ENOSPC',
    message: /dmaResvAddFence\(r\): no reserved slot/,
    call: () => {
      const r = new DmaResv('r');
      return locked(r, () => dmaResvAddFence(r, mockFence(), DmaResvUsage.READ));
    },
  },
  {
    entry: 'dma-resv.dmaResvAddFence',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /dmaResvAddFence: fence is not a DmaFence/,
    call: () => {
      const r = new DmaResv('r');
      return locked(r, () => {
        dmaResvReserveFences(r, 1);
        dmaResvAddFence(r, {} as DmaFence, DmaResvUsage.READ);
      });
    },
  },
  {
    entry: 'dma-resv.dmaResvReplaceFences',
    case: 'resv not held',
    errno: 'EPERM',
    message: /dmaResvReplaceFences: r lock must be held/,
    call: () => dmaResvReplaceFences(new DmaResv('r'), 1, mockFence(), DmaResvUsage.READ),
  },
  {
    entry: 'dma-resv.dmaResvReplaceFences',
    case: 'unknown usage',
    errno: 'EINVAL',
    message: /dmaResvReplaceFences: usage -1 is not a dma_resv_usage/,
    call: () => {
      const r = new DmaResv('r');
      return locked(r, () => dmaResvReplaceFences(r, 1, mockFence(), -1 as never));
    },
  },
  {
    entry: 'dma-resv.dmaResvForEachFence',
    case: 'resv not held',
    errno: 'EPERM',
    message: /dmaResvForEachFence: r lock must be held/,
    call: () => [...dmaResvForEachFence(new DmaResv('r'), DmaResvUsage.BOOKKEEP)],
  },
  {
    entry: 'dma-resv.DmaResvIter',
    case: 'unknown usage',
    errno: 'EINVAL',
    message: /dmaResvIterBegin: usage 9 is not a dma_resv_usage/,
    call: () => new DmaResvIter(new DmaResv('r'), 9 as never),
  },
  {
    entry: 'dma-resv.DmaResvIter',
    case: 'not a dma_resv',
    errno: 'EINVAL',
    message: /dmaResvIterBegin: obj is not a dma_resv/,
    call: () => new DmaResvIter(notResv, DmaResvUsage.READ),
  },
  {
    entry: 'dma-resv.dmaResvGetFences',
    case: 'usage not a number',
    errno: 'EINVAL',
    message: /dmaResvGetFences: usage write is not a dma_resv_usage/,
    call: () => dmaResvGetFences(new DmaResv('r'), 'write' as never),
  },
  {
    entry: 'dma-resv.dmaResvTestSignaled',
    case: 'not a dma_resv',
    errno: 'EINVAL',
    message: /dmaResvTestSignaled: obj is not a dma_resv/,
    call: () => dmaResvTestSignaled(notResv, DmaResvUsage.READ),
  },
  {
    entry: 'dma-resv.dmaResvWaitTimeout',
    case: 'negative timeout',
    errno: 'EINVAL',
    message: /dmaResvWaitTimeout: timeout -1 < 0/,
    call: () => dmaResvWaitTimeout(new DmaResv('r'), DmaResvUsage.READ, -1),
  },
  {
    entry: 'dma-resv.dmaResvGetSingleton',
    case: 'unknown usage',
    errno: 'EINVAL',
    message: /usage 5 is not a dma_resv_usage/,
    call: () => dmaResvGetSingleton(new DmaResv('r'), 5 as never),
  },
  {
    entry: 'dma-resv.dmaResvAssertHeld',
    case: 'lock not held',
    errno: 'EPERM',
    message: /probe-caller: r lock must be held by the caller \(locking convention\)/,
    call: () => dmaResvAssertHeld(new DmaResv('r'), 'probe-caller'),
  },
  {
    entry: 'dma-resv.dmaResvAssertNotHeld',
    case: 'lock held by the calling task',
    errno: 'EDEADLK',
    message: /probe-caller: r lock is held by the caller; this call takes it/,
    call: () => {
      const r = new DmaResv('r');
      return holding(r, () => dmaResvAssertNotHeld(r, 'probe-caller'));
    },
  },
);

// ---------------------------------------------------------------------------------------------
// kernel: nodes/kernel/dma-buf/dma-fence.ts

const notFence = {} as DmaFence;
const fenceOps = { getDriverName: () => 'probe', getTimelineName: () => 'probe' };

rows.push(
  {
    entry: 'dma-fence.dmaFenceContextAlloc',
    case: 'num 0',
    errno: 'EINVAL',
    message: /dmaFenceContextAlloc: num 0 must be >= 1/,
    call: () => dmaFenceContextAlloc(0),
  },
  {
    entry: 'dma-fence.dmaFenceEndSignalling',
    case: 'cookie of no open section',
    errno: 'EINVAL',
    message: /dmaFenceEndSignalling: cookie 99 does not close the innermost section/,
    call: () => dmaFenceEndSignalling(99),
  },
  {
    entry: 'dma-fence.DmaFence',
    case: 'ops without getTimelineName',
    errno: 'EINVAL',
    message: /dmaFenceInit: ops\.getDriverName and ops\.getTimelineName are mandatory/,
    call: () => new DmaFence({ getDriverName: () => 'x' } as never, 1, 1),
  },
  {
    entry: 'dma-fence.DmaFence',
    case: 'negative context',
    errno: 'EINVAL',
    message: /dmaFenceInit: context -1/,
    call: () => new DmaFence(fenceOps, -1, 1),
  },
  {
    entry: 'dma-fence.DmaFence',
    case: 'seqno not an integer',
    errno: 'EINVAL',
    message: /dmaFenceInit: seqno 1\.5/,
    call: () => new DmaFence(fenceOps, 1, 1.5),
  },
  {
    entry: 'dma-fence.dmaFenceGet',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /dmaFenceGet: fence is not a DmaFence/,
    call: () => dmaFenceGet(notFence),
  },
  {
    entry: 'dma-fence.dmaFencePut',
    case: 'released fence',
    errno: 'EINVAL',
    message: /dmaFencePut: fence \d+:1 already released/,
    call: () => {
      const f = mockFence();
      dmaFencePut(f);
      dmaFencePut(f);
    },
  },
  {
    entry: 'dma-fence.dmaFencePut',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /dmaFencePut: fence is not a DmaFence/,
    call: () => dmaFencePut(notFence),
  },
  {
    entry: 'dma-fence.dmaFenceSignal',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /dmaFenceSignal: fence is not a DmaFence/,
    call: () => dmaFenceSignal(notFence),
  },
  {
    entry: 'dma-fence.dmaFenceSignalTimestamp',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /dmaFenceSignalTimestamp: fence is not a DmaFence/,
    call: () => dmaFenceSignalTimestamp(undefined as never, 0),
  },
  {
    entry: 'dma-fence.dmaFenceSetError',
    case: 'fence already signalled',
    errno: 'EINVAL',
    message: /dmaFenceSetError: fence \d+:1 already signalled/,
    call: () => {
      const f = mockFence();
      dmaFenceSignal(f);
      dmaFenceSetError(f, -5);
    },
  },
  {
    entry: 'dma-fence.dmaFenceSetError',
    case: 'positive error',
    errno: 'EINVAL',
    message: /dmaFenceSetError: error 5 is not a negative errno/,
    call: () => dmaFenceSetError(mockFence(), 5),
  },
  {
    entry: 'dma-fence.dmaFenceSetError',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /dmaFenceSetError: fence is not a DmaFence/,
    call: () => dmaFenceSetError(notFence, -5),
  },
  {
    entry: 'dma-fence.dmaFenceIsSignaled',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /dmaFenceIsSignaled: fence is not a DmaFence/,
    call: () => dmaFenceIsSignaled(null as never),
  },
  {
    entry: 'dma-fence.dmaFenceGetStatus',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /dmaFenceGetStatus: fence is not a DmaFence/,
    call: () => dmaFenceGetStatus(notFence),
  },
  {
    entry: 'dma-fence.dmaFenceEnableSwSignaling',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /dmaFenceEnableSwSignaling: fence is not a DmaFence/,
    call: () => dmaFenceEnableSwSignaling(notFence),
  },
  {
    entry: 'dma-fence.dmaFenceAddCallback',
    case: 'cb.func missing',
    errno: 'EINVAL',
    message: /dmaFenceAddCallback: cb\.func is not a function/,
    call: () => dmaFenceAddCallback(mockFence(), {} as DmaFenceCb),
  },
  {
    entry: 'dma-fence.dmaFenceAddCallback',
    case: 'cb already queued',
    errno: 'EBUSY',
    message: /dmaFenceAddCallback: cb is already queued on a fence/,
    call: () => {
      const cb: DmaFenceCb = { func: () => {} };
      dmaFenceAddCallback(mockFence(), cb);
      dmaFenceAddCallback(mockFence(), cb);
    },
  },
  {
    entry: 'dma-fence.dmaFenceAddCallback',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /dmaFenceAddCallback: fence is not a DmaFence/,
    call: () => dmaFenceAddCallback(notFence, { func: () => {} }),
  },
  {
    entry: 'dma-fence.dmaFenceRemoveCallback',
    case: 'cb missing',
    errno: 'EINVAL',
    message: /dmaFenceRemoveCallback: cb is not a dma_fence_cb/,
    call: () => dmaFenceRemoveCallback(mockFence(), undefined as never),
  },
  {
    entry: 'dma-fence.dmaFenceIsLater',
    case: 'fences of different contexts',
    errno: 'EINVAL',
    message: /dmaFenceIsLater: fences of different contexts \d+ and \d+/,
    call: () => dmaFenceIsLater(mockFence(), mockFence()),
  },
  {
    entry: 'dma-fence.dmaFenceIsLaterOrSame',
    case: 'fences of different contexts',
    errno: 'EINVAL',
    message: /dmaFenceIsLater: fences of different contexts/,
    call: () => dmaFenceIsLaterOrSame(new DmaFence(fenceOps, 1, 2), new DmaFence(fenceOps, 2, 3)),
  },
  {
    entry: 'dma-fence.dmaFenceSetDeadline',
    case: 'deadline not a number',
    errno: 'EINVAL',
    message: /dmaFenceSetDeadline: deadline soon is not a time/,
    call: () => dmaFenceSetDeadline(mockFence(), 'soon' as never),
  },
  {
    entry: 'dma-fence.dmaFenceSetDeadline',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /dmaFenceSetDeadline: fence is not a DmaFence/,
    call: () => dmaFenceSetDeadline(notFence, 0),
  },
  {
    entry: 'dma-fence.dmaFenceWaitTimeout',
    case: 'negative timeout',
    errno: 'EINVAL',
    message: /dmaFenceWaitTimeout: timeout -1 < 0/,
    call: () => dmaFenceWaitTimeout(mockFence(), -1),
  },
  {
    entry: 'dma-fence.dmaFenceWaitTimeout',
    case: 'waiting in a fence callback',
    errno: 'EDEADLK',
    message: /dmaFenceWaitTimeout: wait inside a fence signalling section/,
    call: () => {
      const other = mockFence();
      return inFenceCallback(() => dmaFenceWaitTimeout(other, 10));
    },
  },
  {
    entry: 'dma-fence.dmaFenceWaitTimeout',
    case: 'signal already aborted',
    errno: 'ERESTARTSYS',
    message: /dmaFenceWaitTimeout: interrupted/,
    call: () => dmaFenceWaitTimeout(mockFence(), 1000, { signal: AbortSignal.abort() }),
  },
  {
    entry: 'dma-fence.dmaFenceWaitTimeout',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /dmaFenceWaitTimeout: fence is not a DmaFence/,
    call: () => dmaFenceWaitTimeout(notFence, 10),
  },
  {
    entry: 'dma-fence.dmaFenceWaitAnyTimeout',
    case: 'no fences',
    errno: 'EINVAL',
    message: /dmaFenceWaitAnyTimeout: fences must be a non-empty array/,
    call: () => dmaFenceWaitAnyTimeout([], 10),
  },
  {
    entry: 'dma-fence.dmaFenceWaitAnyTimeout',
    case: 'fences not an array',
    errno: 'EINVAL',
    message: /dmaFenceWaitAnyTimeout: fences must be a non-empty array/,
    call: () => dmaFenceWaitAnyTimeout(undefined as never, 10),
  },
  {
    entry: 'dma-fence.dmaFenceWaitAnyTimeout',
    case: 'negative timeout',
    errno: 'EINVAL',
    message: /dmaFenceWaitAnyTimeout: timeout -5 < 0/,
    call: () => dmaFenceWaitAnyTimeout([mockFence()], -5),
  },
  {
    entry: 'dma-fence.dmaFenceWaitAnyTimeout',
    case: 'signal already aborted',
    errno: 'ERESTARTSYS',
    message: /dmaFenceWaitAnyTimeout: interrupted/,
    call: () => dmaFenceWaitAnyTimeout([mockFence()], 1000, { signal: AbortSignal.abort() }),
  },
  {
    entry: 'dma-fence.dmaFenceWait',
    case: 'signal already aborted',
    errno: 'ERESTARTSYS',
    message: /dmaFenceWaitTimeout: interrupted/,
    call: () => dmaFenceWait(mockFence(), { signal: AbortSignal.abort() }),
  },
  {
    entry: 'dma-fence.fenceWaitResult',
    case: 'negative timeout',
    errno: 'EINVAL',
    message: /dmaFenceWaitTimeout: timeout -1 < 0/,
    call: () => fenceWaitResult(mockFence(), -1),
  },
  {
    entry: 'dma-fence.DmaFenceTimeline.signal',
    case: 'fence of another context',
    errno: 'EINVAL',
    message: /DmaFenceTimeline\(tl\)\.signal: fence of context \d+/,
    call: () => new DmaFenceTimeline('probe', 'tl').signal(mockFence()),
  },
  {
    entry: 'dma-fence.DmaFenceTimeline.signal',
    case: 'out of order under OrderPolicy.THROW',
    errno: 'EINVAL',
    message: /timeline tl: fence 1 signalled after later fence 2 \(rule 3\)/,
    call: () => {
      const tl = new DmaFenceTimeline('probe', 'tl', { order: OrderPolicy.THROW });
      const [a, b] = [tl.emit(), tl.emit()];
      tl.signal(b);
      tl.signal(a);
    },
  },
  {
    entry: 'dma-fence.DmaFenceTimeline.signal',
    case: 'positive error',
    errno: 'EINVAL',
    message: /dmaFenceSetError: error 3 is not a negative errno/,
    call: () => {
      const tl = new DmaFenceTimeline('probe', 'tl');
      tl.signal(tl.emit(), 3);
    },
  },
);

// ---------------------------------------------------------------------------------------------
// kernel: dma-fence-array.ts, dma-fence-chain.ts, dma-fence-unwrap.ts

rows.push(
  {
    entry: 'dma-fence-array.dmaFenceArrayCreate',
    case: 'empty list',
    errno: 'EINVAL',
    message: /dmaFenceArrayCreate: fences must be a non-empty array/,
    call: () => dmaFenceArrayCreate([], dmaFenceContextAlloc(), 1, false),
  },
  {
    entry: 'dma-fence-array.dmaFenceArrayCreate',
    case: 'entry not a fence',
    errno: 'EINVAL',
    message: /dmaFenceArrayCreate: fences\[1\] is not a DmaFence/,
    call: () => dmaFenceArrayCreate([mockFence(), notFence], dmaFenceContextAlloc(), 1, false),
  },
  {
    entry: 'dma-fence-array.dmaFenceArrayCreate',
    case: 'negative context',
    errno: 'EINVAL',
    message: /dmaFenceInit: context -1/,
    call: () => dmaFenceArrayCreate([mockFence()], -1, 1, false),
  },
  {
    entry: 'dma-fence-array.dmaFenceArrayFirst',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /dmaFenceArrayFirst: head is not a DmaFence/,
    call: () => dmaFenceArrayFirst(undefined as never),
  },
  {
    entry: 'dma-fence-array.dmaFenceArrayNext',
    case: 'negative index',
    errno: 'EINVAL',
    message: /dmaFenceArrayNext: index -1/,
    call: () => dmaFenceArrayNext(dmaFenceArrayCreate([mockFence()], dmaFenceContextAlloc(), 1, false), -1),
  },
  {
    entry: 'dma-fence-chain.dmaFenceChainInit',
    case: 'fence not a fence',
    errno: 'EINVAL',
    message: /dmaFenceChainInit: fence is not a DmaFence/,
    call: () => dmaFenceChainInit(null, notFence, 1),
  },
  {
    entry: 'dma-fence-chain.dmaFenceChainInit',
    case: 'prev not a fence',
    errno: 'EINVAL',
    message: /dmaFenceChainInit: prev is not a DmaFence or null/,
    call: () => dmaFenceChainInit(notFence, mockFence(), 1),
  },
  {
    entry: 'dma-fence-chain.dmaFenceChainInit',
    case: 'negative seqno',
    errno: 'EINVAL',
    message: /dmaFenceChainInit: seqno -1/,
    call: () => dmaFenceChainInit(null, mockFence(), -1),
  },
  {
    entry: 'dma-fence-chain.dmaFenceChainAlloc',
    case: 'seqno past 2^53',
    errno: 'EINVAL',
    message: /dmaFenceChainInit: seqno 18014398509481984/,
    call: () => dmaFenceChainAlloc(null, mockFence(), 2 ** 54),
  },
  {
    entry: 'dma-fence-chain.dmaFenceChainFindSeqno',
    case: 'point on a plain fence',
    errno: 'EINVAL',
    message: /dmaFenceChainFindSeqno: fence \d+:1 is not a chain node/,
    call: () => dmaFenceChainFindSeqno(mockFence(), 3),
  },
  {
    entry: 'dma-fence-chain.dmaFenceChainFindSeqno',
    case: 'point past the head',
    errno: 'EINVAL',
    message: /dmaFenceChainFindSeqno: point 9 is past the head \(1\)/,
    call: () => dmaFenceChainFindSeqno(dmaFenceChainInit(null, mockFence(), 1), 9),
  },
  {
    entry: 'dma-fence-chain.dmaFenceChainFindSeqno',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /dmaFenceChainFindSeqno: fence is not a DmaFence/,
    call: () => dmaFenceChainFindSeqno(notFence, 0),
  },
  {
    entry: 'dma-fence-chain.dmaFenceChainWalk',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /dmaFenceChainWalk: fence is not a DmaFence/,
    call: () => dmaFenceChainWalk(notFence),
  },
  {
    entry: 'dma-fence-chain.dmaFenceChainForEach',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /dmaFenceChainForEach: head is not a DmaFence/,
    call: () => [...dmaFenceChainForEach(notFence)],
  },
  {
    entry: 'dma-fence-unwrap.dmaFenceUnwrapMerge',
    case: 'argument not a fence',
    errno: 'EINVAL',
    message: /dmaFenceUnwrapMerge: argument 1 is not a DmaFence/,
    call: () => dmaFenceUnwrapMerge(mockFence(), 5 as never),
  },
  {
    entry: 'dma-fence-unwrap.dmaFenceUnwrapForEach',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /dmaFenceUnwrapForEach: head is not a DmaFence/,
    call: () => [...dmaFenceUnwrapForEach(notFence)],
  },
);

// ---------------------------------------------------------------------------------------------
// kernel: sync-file.ts and sw-sync.ts

/** An fd table with a sw_sync timeline (fd 3) and an unsignalled fence on it (fd 4). */
function fdtWithFence(): { fdt: FdTable; tl: number; fd: number } {
  const fdt = new FdTable();
  const tl = swSyncTimelineCreate(fdt);
  return { fdt, tl, fd: swSyncCreateFence(fdt, tl, 1) };
}

rows.push(
  {
    entry: 'sync-file.syncFileCreate',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /syncFileCreate: fence is not a DmaFence/,
    call: () => syncFileCreate(notFence),
  },
  {
    entry: 'sync-file.syncFileInstall',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /syncFileCreate: fence is not a DmaFence/,
    call: () => syncFileInstall(new FdTable(), undefined as never),
  },
  {
    entry: 'sync-file.syncFileGetFence',
    case: 'fd of a timeline',
    errno: 'EINVAL',
    message: /syncFileGetFence: fd 3 is a sw_sync, not a SyncFile/,
    call: () => {
      const { fdt, tl } = fdtWithFence();
      return syncFileGetFence(fdt, tl);
    },
  },
  {
    entry: 'sync-file.syncFileGetFence',
    case: 'closed fd',
    errno: 'EBADF',
    message: /syncFileGetFence: fd 4 is not open/,
    call: () => {
      const { fdt, fd } = fdtWithFence();
      fdt.close(fd);
      return syncFileGetFence(fdt, fd);
    },
  },
  {
    entry: 'sync-file.syncFileMerge',
    case: 'non-zero flags',
    errno: 'EINVAL',
    message: /SYNC_IOC_MERGE: flags 1 must be 0/,
    call: () => {
      const { fdt, fd } = fdtWithFence();
      return syncFileMerge(fdt, fd, fd, 'm', 1);
    },
  },
  {
    entry: 'sync-file.syncFileInfo',
    case: 'non-zero pad',
    errno: 'EINVAL',
    message: /SYNC_IOC_FILE_INFO: flags and pad must be 0/,
    call: () => {
      const { fdt, fd } = fdtWithFence();
      return syncFileInfo(fdt, fd, { pad: 1 });
    },
  },
  {
    entry: 'sync-file.syncFilePoll',
    case: 'fd of another kind',
    errno: 'EINVAL',
    message: /poll: fd 3 is a dummy, not a SyncFile/,
    call: () => {
      const fdt = new FdTable();
      return syncFilePoll(fdt, fdt.install(new Dummy()), 0);
    },
  },
  {
    entry: 'sync-file.syncFileWait',
    case: 'timeout not a number',
    errno: 'EINVAL',
    message: /poll: timeout undefined is not a number/,
    call: () => {
      const { fdt, fd } = fdtWithFence();
      return syncFileWait(fdt, fd, undefined as never);
    },
  },
  {
    entry: 'sync-file.syncFileSetDeadline',
    case: 'non-zero pad',
    errno: 'EINVAL',
    message: /SYNC_IOC_SET_DEADLINE: pad 1 must be 0/,
    call: () => {
      const { fdt, fd } = fdtWithFence();
      return syncFileSetDeadline(fdt, fd, 0, 1);
    },
  },
  {
    entry: 'sw-sync.SyncTimeline.createPt',
    case: 'timeline closed',
    errno: 'EINVAL',
    message: /sw_sync tl: timeline is closed/,
    call: () => {
      const tl = new SyncTimeline('tl');
      tl.release();
      return tl.createPt(1);
    },
  },
  {
    entry: 'sw-sync.swSyncCreateFence',
    case: 'closed timeline fd',
    errno: 'EBADF',
    message: /SW_SYNC_IOC_CREATE_FENCE: fd 3 is not open/,
    call: () => {
      const { fdt, tl } = fdtWithFence();
      fdt.close(tl);
      return swSyncCreateFence(fdt, tl, 2);
    },
  },
  {
    entry: 'sw-sync.swSyncInc',
    case: 'negative inc',
    errno: 'EINVAL',
    message: /SW_SYNC_IOC_INC: inc -1 is not a u32/,
    call: () => {
      const { fdt, tl } = fdtWithFence();
      return swSyncInc(fdt, tl, -1);
    },
  },
  {
    entry: 'sw-sync.swSyncGetDeadline',
    case: 'no deadline set',
    errno: 'ENOENT',
    message: /SW_SYNC_GET_DEADLINE: no deadline set on fd 4/,
    call: () => {
      const { fdt, tl, fd } = fdtWithFence();
      return swSyncGetDeadline(fdt, tl, fd);
    },
  },
  {
    entry: 'sw-sync.swSyncGetDeadline',
    case: 'fence not a sw_sync point',
    errno: 'EINVAL',
    message: /SW_SYNC_GET_DEADLINE: fd 5 is not a sw_sync fence/,
    call: () => {
      const { fdt, tl } = fdtWithFence();
      return swSyncGetDeadline(fdt, tl, syncFileInstall(fdt, mockFence()));
    },
  },
  {
    entry: 'sw-sync.swSyncGetDeadline',
    case: 'timeline fd is a sync_file',
    errno: 'EINVAL',
    message: /SW_SYNC_GET_DEADLINE: fd 4 is a sync_file, not a SyncTimeline/,
    call: () => {
      const { fdt, fd } = fdtWithFence();
      return swSyncGetDeadline(fdt, fd, fd);
    },
  },
);

// ---------------------------------------------------------------------------------------------
// kernel: syncobj.ts

/** A syncobj file (handle table over its own fd table): handle 1 without a fence, 2 signalled. */
function syncobjs(): DrmSyncobjTable {
  const t = new DrmSyncobjTable(new FdTable());
  syncobjCreate(t);
  syncobjCreate(t, 1);
  return t;
}

rows.push(
  {
    entry: 'syncobj.drmSyncobjPut',
    case: 'released syncobj',
    errno: 'EINVAL',
    message: /drmSyncobjPut: syncobj already released/,
    call: () => {
      const s = new DrmSyncobj();
      drmSyncobjPut(s);
      drmSyncobjPut(s);
    },
  },
  {
    entry: 'syncobj.drmSyncobjGet',
    case: 'released syncobj',
    errno: 'EINVAL',
    message: /drmSyncobjGet: syncobj already released/,
    call: () => {
      const s = new DrmSyncobj();
      drmSyncobjPut(s);
      return drmSyncobjGet(s);
    },
  },
  {
    entry: 'syncobj.drmSyncobjFenceGet',
    case: 'not a syncobj',
    errno: 'EINVAL',
    message: /drmSyncobjFenceGet: syncobj is not a drm_syncobj/,
    call: () => drmSyncobjFenceGet(undefined as never),
  },
  {
    entry: 'syncobj.drmSyncobjReplaceFence',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /drmSyncobjReplaceFence: fence is not a DmaFence or null/,
    call: () => drmSyncobjReplaceFence(new DrmSyncobj(), notFence),
  },
  {
    entry: 'syncobj.drmSyncobjAddPoint',
    case: 'negative point',
    errno: 'EINVAL',
    message: /drmSyncobjAddPoint: point -1/,
    call: () => drmSyncobjAddPoint(new DrmSyncobj(), mockFence(), -1),
  },
  {
    entry: 'syncobj.syncobjDestroy',
    case: 'non-zero pad',
    errno: 'EINVAL',
    message: /syncobjDestroy: pad 1 must be 0/,
    call: () => syncobjDestroy(syncobjs(), 1, 1),
  },
  {
    entry: 'syncobj.syncobjHandleToFd',
    case: 'unknown flags',
    errno: 'EINVAL',
    message: /syncobjHandleToFd: bad flags or pad/,
    call: () => syncobjHandleToFd(syncobjs(), { handle: 1, flags: 8 }),
  },
  {
    entry: 'syncobj.syncobjHandleToFd',
    case: 'point without TIMELINE',
    errno: 'EINVAL',
    message: /syncobjHandleToFd: point without the TIMELINE flag/,
    call: () => syncobjHandleToFd(syncobjs(), { handle: 1, point: 3 }),
  },
  {
    entry: 'syncobj.syncobjHandleToFd',
    case: 'unknown handle (whole object)',
    errno: 'EINVAL',
    message: /syncobjHandleToFd: handle 9 is not a syncobj/,
    call: () => syncobjHandleToFd(syncobjs(), { handle: 9 }),
  },
  {
    entry: 'syncobj.syncobjHandleToFd',
    case: 'destroyed handle (sync_file export)',
    errno: 'ENOENT',
    message: /syncobjHandleToFd: handle 2 is not a syncobj/,
    call: () => {
      const t = syncobjs();
      syncobjDestroy(t, 2);
      return syncobjHandleToFd(t, { handle: 2, flags: DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS.EXPORT_SYNC_FILE });
    },
  },
  {
    entry: 'syncobj.syncobjFdToHandle',
    case: 'fd of a sync_file (whole object)',
    errno: 'EINVAL',
    message: /syncobjFdToHandle: fd 3 is not a syncobj fd/,
    call: () => {
      const t = syncobjs();
      return syncobjFdToHandle(t, { fd: syncFileInstall(t.fdt, mockFence()) });
    },
  },
  {
    entry: 'syncobj.syncobjFdToHandle',
    case: 'unknown flags',
    errno: 'EINVAL',
    message: /syncobjFdToHandle: bad flags or pad/,
    call: () => syncobjFdToHandle(syncobjs(), { fd: 3, flags: 4 }),
  },
  {
    entry: 'syncobj.syncobjFdToHandle',
    case: 'closed sync_file fd',
    errno: 'EINVAL',
    message: /syncobjFdToHandle: fd 3 is not a sync_file/,
    call: () => {
      const t = syncobjs();
      t.fdt.close(syncFileInstall(t.fdt, mockFence()));
      return syncobjFdToHandle(t, {
        fd: 3,
        handle: 1,
        flags: DRM_SYNCOBJ_FD_TO_HANDLE_FLAGS.IMPORT_SYNC_FILE,
      });
    },
  },
  {
    entry: 'syncobj.syncobjImportSyncFile',
    case: 'destroyed handle',
    errno: 'ENOENT',
    message: /syncobjFdToHandle: handle 1 is not a syncobj/,
    call: () => {
      const t = syncobjs();
      const fd = syncFileInstall(t.fdt, mockFence());
      syncobjDestroy(t, 1);
      return syncobjImportSyncFile(t, 1, fd);
    },
  },
  {
    entry: 'syncobj.drmSyncobjFindFence',
    case: 'unknown flags',
    errno: 'EINVAL',
    message: /drmSyncobjFindFence: flags 0x1/,
    call: () => drmSyncobjFindFence(syncobjs(), 2, 0, 1),
  },
  {
    entry: 'syncobj.drmSyncobjFindFence',
    case: 'unknown handle',
    errno: 'ENOENT',
    message: /drmSyncobjFindFence: handle 9 is not a syncobj/,
    call: () => drmSyncobjFindFence(syncobjs(), 9, 0),
  },
  {
    entry: 'syncobj.drmSyncobjFindFence',
    case: 'no fence',
    errno: 'EINVAL',
    message: /drmSyncobjFindFence: handle 1 has no fence for point 0/,
    call: () => drmSyncobjFindFence(syncobjs(), 1, 0),
  },
  {
    entry: 'syncobj.syncobjReset',
    case: 'non-zero pad',
    errno: 'EINVAL',
    message: /syncobjReset: pad 2 must be 0/,
    call: () => syncobjReset(syncobjs(), [1], 2),
  },
  {
    entry: 'syncobj.syncobjSignal',
    case: 'handles not an array',
    errno: 'EINVAL',
    message: /syncobjSignal: count_handles is 0/,
    call: () => syncobjSignal(syncobjs(), 1 as never),
  },
  {
    entry: 'syncobj.syncobjTimelineSignal',
    case: 'non-zero flags',
    errno: 'EINVAL',
    message: /syncobjTimelineSignal: flags 1 must be 0/,
    call: () => syncobjTimelineSignal(syncobjs(), [1], null, 1),
  },
  {
    entry: 'syncobj.syncobjQuery',
    case: 'no handles',
    errno: 'EINVAL',
    message: /syncobjQuery: count_handles is 0/,
    call: () => syncobjQuery(syncobjs(), []),
  },
  {
    entry: 'syncobj.syncobjTransfer',
    case: 'non-zero pad',
    errno: 'EINVAL',
    message: /syncobjTransfer: pad 1 must be 0/,
    call: () => syncobjTransfer(syncobjs(), { srcHandle: 2, dstHandle: 1, pad: 1 }),
  },
  {
    entry: 'syncobj.syncobjTransfer',
    case: 'unknown destination handle',
    errno: 'ENOENT',
    message: /syncobjTransfer: handle 9 is not a syncobj/,
    call: () => syncobjTransfer(syncobjs(), { srcHandle: 2, dstHandle: 9 }),
  },
  {
    entry: 'syncobj.syncobjTransfer',
    case: 'source without a fence',
    errno: 'EINVAL',
    message: /drmSyncobjFindFence: handle 1 has no fence for point 0/,
    call: () => syncobjTransfer(syncobjs(), { srcHandle: 1, dstHandle: 2 }),
  },
  {
    entry: 'syncobj.syncobjWait',
    case: 'signal already aborted',
    errno: 'ERESTARTSYS',
    message: /syncobjWait: interrupted/,
    call: () => {
      const t = syncobjs();
      syncobjImportSyncFile(t, 1, syncFileInstall(t.fdt, mockFence()));
      return syncobjWait(t, [1], null, 1000, 0, { signal: AbortSignal.abort() });
    },
  },
  {
    entry: 'syncobj.syncobjWait',
    case: 'negative point (timeline wait)',
    errno: 'EINVAL',
    message: /syncobjTimelineWait: points\[0\] = -3 is not a u64 point/,
    call: () => syncobjWait(syncobjs(), [2], [-3], 0),
  },
);

// ---------------------------------------------------------------------------------------------
// kernel: mock-exporter.ts and heaps/dma-heap.ts

/** A mock-exporter buffer of one page in VRAM on a fresh kernel. */
function mock(): MockExporter {
  return MockExporter.create(kernel().mockExporterEnv(1 << 20), PAGE_SIZE);
}

rows.push(
  {
    entry: 'mock-exporter.MockExporter.create',
    case: 'negative size',
    errno: 'EINVAL',
    message: /MockExporter\.create: size -4096 is not a positive multiple of PAGE_SIZE/,
    call: () => MockExporter.create(kernel().mockExporterEnv(1 << 20), -4096),
  },
  {
    entry: 'mock-exporter.MockExporter.create',
    case: 'larger than its VRAM',
    errno: 'ENOMEM',
    message: /region host0:mock-vram0 has 256 free pages, 512 requested/,
    call: () => MockExporter.create(kernel().mockExporterEnv(1 << 20), 2 << 20),
  },
  {
    entry: 'mock-exporter.MockExporter.move',
    case: 'resv held by the caller',
    errno: 'EDEADLK',
    message: /wwMutexLock\(dmabuf:mock-exporter\): task bad-input already holds it/,
    call: () => {
      const exp = mock();
      return holding(exp.dmabuf.resv, () => exp.move());
    },
  },
  {
    entry: 'mock-exporter.MockExporter.move',
    case: 'revoked buffer',
    errno: 'ENODEV',
    message: /MockExporter\.move: dmabuf mock-exporter:\d+ is revoked/,
    call: async () => (await revokedMock()).exp.move(),
  },
  {
    entry: 'mock-exporter.MockExporter.moveLocked',
    case: 'resv not held',
    errno: 'EPERM',
    message: /MockExporter\.moveLocked: dmabuf:mock-exporter lock must be held/,
    call: () => mock().moveLocked('system'),
  },
  {
    entry: 'mock-exporter.MockExporter.revoke',
    case: 'resv held by the caller',
    errno: 'EDEADLK',
    message: /wwMutexLock\(dmabuf:mock-exporter\): task bad-input already holds it/,
    call: () => {
      const exp = mock();
      return holding(exp.dmabuf.resv, () => exp.revoke());
    },
  },
  {
    entry: 'mock-exporter.MockExporter.unrevoke',
    case: 'resv held by the caller',
    errno: 'EDEADLK',
    message: /wwMutexLock\(dmabuf:mock-exporter\): task bad-input already holds it/,
    call: () => {
      const exp = mock();
      return holding(exp.dmabuf.resv, () => exp.unrevoke());
    },
  },
  {
    entry: 'heaps/dma-heap.DmaHeapRegistry.add',
    case: 'empty name',
    errno: 'EINVAL',
    message: /dmaHeapAdd: exp_info\.name missing/,
    call: () => new DmaHeapRegistry().add('', { allocate: () => probe() }, null),
  },
  {
    entry: 'heaps/dma-heap.DmaHeapRegistry.add',
    case: 'allocate op missing',
    errno: 'EINVAL',
    message: /dmaHeapAdd\(cma\): ops\.allocate missing/,
    call: () => new DmaHeapRegistry().add('cma', {} as never, null),
  },
  {
    entry: 'heaps/dma-heap.DmaHeapRegistry.add',
    case: 'name taken',
    errno: 'EEXIST',
    message: /dmaHeapAdd: heap system already exists/,
    call: () => kernel().heaps.add('system', { allocate: () => probe() }, null),
  },
  {
    entry: 'heaps/dma-heap.DmaHeapRegistry.find',
    case: 'unknown name',
    errno: 'ENOENT',
    message: /dma_heap: no heap named "reserved" \(have system\)/,
    call: () => kernel().heaps.find('reserved'),
  },
  {
    entry: 'heaps/dma-heap.dmaHeapBufferAlloc',
    case: 'len not an integer',
    errno: 'EINVAL',
    message: /DMA_HEAP_IOCTL_ALLOC\(system\): len 1\.5/,
    call: () => dmaHeapBufferAlloc(kernel().heaps.find('system'), 1.5, 0, 0),
  },
  {
    entry: 'heaps/dma-heap.dmaHeapBufferAlloc',
    case: 'fd_flags not a number',
    errno: 'EINVAL',
    message: /DMA_HEAP_IOCTL_ALLOC\(system\): fd_flags 0xNaN has invalid bits/,
    call: () => dmaHeapBufferAlloc(kernel().heaps.find('system'), 4096, 'rw' as never, 0),
  },
  {
    entry: 'heaps/dma-heap.dmaHeapBufferAlloc',
    case: 'not a heap',
    errno: 'EINVAL',
    message: /DMA_HEAP_IOCTL_ALLOC: heap is not a dma-heap/,
    call: () => dmaHeapBufferAlloc({} as DmaHeap, 4096, 0, 0),
  },
);

// ---------------------------------------------------------------------------------------------
// kernel: nodes/kernel/mm/{region,page-alloc,page-list,phys-map}.ts

/** A 16-page VRAM region named r. */
const region = (): MemRegion => memRegionCreate('r', MemRegionKind.VRAM, 16 * PAGE_SIZE);
/** A page allocator over a fresh 16-page region. */
const pages = (): PageAllocator => new PageAllocator(region());

rows.push(
  {
    entry: 'mm/region.memRegionCreate',
    case: 'empty name',
    errno: 'EINVAL',
    message: /memRegionCreate: name must be a non-empty string/,
    call: () => memRegionCreate('', MemRegionKind.RAM, PAGE_SIZE),
  },
  {
    entry: 'mm/region.memRegionCreate',
    case: 'unknown kind',
    errno: 'EINVAL',
    message: /memRegionCreate\(r\): kind must be a MemRegionKind, got 9/,
    call: () => memRegionCreate('r', 9 as never, PAGE_SIZE),
  },
  {
    entry: 'mm/region.memRegionCreate',
    case: 'size not a page multiple',
    errno: 'EINVAL',
    message: /memRegionCreate\(r\): size must be a positive multiple of 4096 up to 2\^32, got 100/,
    call: () => memRegionCreate('r', MemRegionKind.RAM, 100),
  },
  {
    entry: 'mm/region.memRegionCreate',
    case: 'size above 4 GiB',
    errno: 'EINVAL',
    message: /memRegionCreate\(r\): size must be .* got 8589934592/,
    call: () => memRegionCreate('r', MemRegionKind.RAM, 2 ** 33),
  },
  {
    entry: 'mm/region.MemRegion.view',
    case: 'negative offset',
    errno: 'EINVAL',
    message: /MemRegion\.view\(r\): offset and length must be non-negative integers/,
    call: () => region().view(-1, 1),
  },
  {
    entry: 'mm/region.MemRegion.view',
    case: 'range beyond the region',
    errno: 'EINVAL',
    message: /MemRegion\.view\(r\): \[0xf000, \+0x2000\) exceeds 0x10000/,
    call: () => region().view(15 * PAGE_SIZE, 2 * PAGE_SIZE),
  },
  {
    entry: 'mm/page-alloc.PageAllocator',
    case: 'region missing',
    errno: 'EINVAL',
    message: /PageAllocator: region is not a MemRegion/,
    call: () => new PageAllocator(undefined as never),
  },
  {
    entry: 'mm/page-alloc.PageAllocator.allocContigPages',
    case: 'count 0',
    errno: 'EINVAL',
    message: /allocContigPages\(r\): count must be a positive integer, got 0/,
    call: () => pages().allocContigPages(0),
  },
  {
    entry: 'mm/page-alloc.PageAllocator.allocContigPages',
    case: 'align 0',
    errno: 'EINVAL',
    message: /allocContigPages\(r\): align must be an integer in \[1, 16\], got 0/,
    call: () => pages().allocContigPages(1, 0),
  },
  {
    entry: 'mm/page-alloc.PageAllocator.allocContigPages',
    case: 'more pages than the region',
    errno: 'ENOMEM',
    message: /allocContigPages: region r has no run of 17 free pages \(16 free\)/,
    call: () => pages().allocContigPages(17),
  },
  {
    entry: 'mm/page-alloc.PageAllocator.allocContigPages',
    case: 'called from a thread that is not the owner',
    errno: 'EPERM',
    message: /allocContigPages\(r\): called from thread 0, owner is thread 99/,
    call: () => new PageAllocator(region(), 99).allocContigPages(1),
  },
  {
    entry: 'mm/page-alloc.PageAllocator.allocPagesBulk',
    case: 'maxRun 0',
    errno: 'EINVAL',
    message: /allocPagesBulk\(r\): maxRun must be a positive integer, got 0/,
    call: () => pages().allocPagesBulk(2, 0),
  },
  {
    entry: 'mm/page-alloc.PageAllocator.allocPagesBulk',
    case: 'more pages than are free',
    errno: 'ENOMEM',
    message: /allocPagesBulk: region r has 16 free pages, 20 requested/,
    call: () => pages().allocPagesBulk(20),
  },
  {
    entry: 'mm/page-alloc.PageAllocator.freeContigRange',
    case: 'double free',
    errno: 'EINVAL',
    message: /freeContigRange\(r\): page 0 is not allocated \(double free\?\)/,
    call: () => {
      const a = pages();
      const run = a.allocContigPages(2);
      a.freeContigRange(run.pfn, run.count);
      a.freeContigRange(run.pfn, run.count);
    },
  },
  {
    entry: 'mm/page-alloc.PageAllocator.freeContigRange',
    case: 'range beyond the region',
    errno: 'EINVAL',
    message: /freeContigRange\(r\): pfn 15 \+ count 2 outside 16 pages/,
    call: () => pages().freeContigRange(15, 2),
  },
  {
    entry: 'mm/page-alloc.PageAllocator.freePagesBulk',
    case: 'run not allocated',
    errno: 'EINVAL',
    message: /freePagesBulk\(r\): page 3 is not allocated/,
    call: () => pages().freePagesBulk([{ pfn: 3, count: 1 }]),
  },
  {
    entry: 'mm/page-alloc.PageAllocator.freePagesBulk',
    case: 'called from a thread that is not the owner',
    errno: 'EPERM',
    message: /freePagesBulk\(r\): called from thread 0, owner is thread 7/,
    call: () => new PageAllocator(region(), 7).freePagesBulk([]),
  },
  {
    entry: 'mm/page-list.PageList.allocate',
    case: 'size 0',
    errno: 'EINVAL',
    message: /PageList\.allocate: size 0/,
    call: () => PageList.allocate(pages(), 0),
  },
  {
    entry: 'mm/page-list.PageList.allocate',
    case: 'allocator missing',
    errno: 'EINVAL',
    message: /PageList\.allocate: alloc is not a PageAllocator/,
    call: () => PageList.allocate(undefined as never, PAGE_SIZE),
  },
  {
    entry: 'mm/page-list.PageList.allocate',
    case: 'more than the region (contiguous)',
    errno: 'ENOMEM',
    message: /allocContigPages: region r has no run of 32 free pages/,
    call: () => PageList.allocate(pages(), 32 * PAGE_SIZE, { contiguous: true }),
  },
  {
    entry: 'mm/page-list.PageList.read',
    case: 'range beyond the buffer',
    errno: 'EINVAL',
    message: /PageList\.read: \[4096, \+1\) outside 4096 bytes/,
    call: () => PageList.allocate(pages(), PAGE_SIZE).read(PAGE_SIZE, new Uint8Array(1)),
  },
  {
    entry: 'mm/page-list.PageList.write',
    case: 'pages freed',
    errno: 'EFAULT',
    message: /PageList\.write: pages were freed/,
    call: () => {
      const list = PageList.allocate(pages(), PAGE_SIZE);
      list.free();
      list.write(0, new Uint8Array(1));
    },
  },
  {
    entry: 'mm/page-list.PageList.fill',
    case: 'negative length',
    errno: 'EINVAL',
    message: /PageList\.fill: \[0, \+-1\) outside 4096 bytes/,
    call: () => PageList.allocate(pages(), PAGE_SIZE).fill(0, -1, 0),
  },
  {
    entry: 'mm/page-list.PageList.copyTo',
    case: 'destination too small',
    errno: 'EINVAL',
    message: /PageList\.copyTo: destination of 4096 bytes < 8192/,
    call: () => {
      const a = pages();
      PageList.allocate(a, 2 * PAGE_SIZE).copyTo(PageList.allocate(a, PAGE_SIZE));
    },
  },
  {
    entry: 'mm/page-list.PageList.physSegments',
    case: 'region not in the physical map',
    errno: 'EFAULT',
    message: /PageList: region r is not in the physical map/,
    call: () => PageList.allocate(pages(), PAGE_SIZE).physSegments(new PhysMap()),
  },
  {
    entry: 'mm/phys-map.PhysMap.setWindowTphStats',
    case: 'no window at phys',
    errno: 'ENOENT',
    message: /PhysMap\.setWindowTphStats: no window starts at 0x1000/,
    call: () => new PhysMap().setWindowTphStats(0x1000, null),
  },
  {
    entry: 'mm/phys-map.PhysMap.setWindowTphStats',
    case: 'tphStats not a statistics block',
    errno: 'EINVAL',
    message: /PhysMap\.setWindowTphStats: tphStats is not a TPH statistics block/,
    call: () => {
      const m = new PhysMap();
      const w = m.addWindow({ kind: PhysWindowKind.RAM, phys: 0, region: region() });
      m.setWindowTphStats(w.phys, new SharedArrayBuffer(8));
    },
  },
  {
    entry: 'mm/phys-map.PhysMap.addWindow',
    case: 'unknown kind',
    errno: 'EINVAL',
    message: /PhysMap\.addWindow\(r\): kind must be a PhysWindowKind, got 5/,
    call: () => new PhysMap().addWindow({ kind: 5 as never, phys: 0, region: region() }),
  },
  {
    entry: 'mm/phys-map.PhysMap.addWindow',
    case: 'phys not page aligned',
    errno: 'EINVAL',
    message: /PhysMap\.addWindow\(r\): phys 4097 must be page aligned/,
    call: () => new PhysMap().addWindow({ kind: PhysWindowKind.RAM, phys: 4097, region: region() }),
  },
  {
    entry: 'mm/phys-map.PhysMap.addWindow',
    case: 'regionOffset not page aligned',
    errno: 'EINVAL',
    message: /PhysMap\.addWindow\(r\): regionOffset 100 must be a page-aligned offset/,
    call: () =>
      new PhysMap().addWindow({ kind: PhysWindowKind.RAM, phys: 0, region: region(), regionOffset: 100 }),
  },
  {
    entry: 'mm/phys-map.PhysMap.addWindow',
    case: 'size beyond the region',
    errno: 'EINVAL',
    message: /PhysMap\.addWindow\(r\): regionOffset \+ size exceeds region r/,
    call: () =>
      new PhysMap().addWindow({ kind: PhysWindowKind.RAM, phys: 0, region: region(), size: 32 * PAGE_SIZE }),
  },
  {
    entry: 'mm/phys-map.PhysMap.addWindow',
    case: 'busOffset not page aligned',
    errno: 'EINVAL',
    message: /PhysMap\.addWindow\(r\): busOffset 7 must keep the bus range page aligned/,
    call: () =>
      new PhysMap().addWindow({ kind: PhysWindowKind.BAR, phys: 0, region: region(), busOffset: 7 }),
  },
  {
    entry: 'mm/phys-map.PhysMap.addWindow',
    case: 'overlaps a window',
    errno: 'EEXIST',
    message: /PhysMap\.addWindow\(r\): \[0x0, \+0x10000\) overlaps window r/,
    call: () => {
      const map = new PhysMap();
      map.addWindow({ kind: PhysWindowKind.RAM, phys: 0, region: region() });
      map.addWindow({ kind: PhysWindowKind.RAM, phys: 0, region: region() });
    },
  },
  {
    entry: 'mm/phys-map.PhysMap.addWindow',
    case: 'region missing',
    errno: 'EINVAL',
    message: /PhysMap\.addWindow: spec\.region is not a MemRegion/,
    call: () => new PhysMap().addWindow({ kind: PhysWindowKind.RAM, phys: 0 } as never),
  },
  {
    entry: 'mm/phys-map.PhysMap.addRam',
    case: 'region missing',
    errno: 'EINVAL',
    message: /PhysMap\.addWindow: spec\.region is not a MemRegion/,
    call: () => new PhysMap().addRam(undefined as never),
  },
  {
    entry: 'mm/phys-map.PhysMap.addBar',
    case: 'size 0',
    errno: 'EINVAL',
    message: /PhysMap\.addBar\(r\): size 0 invalid/,
    call: () => new PhysMap().addBar(region(), { size: 0 }),
  },
  {
    entry: 'mm/phys-map.PhysMap.addBar',
    case: 'region missing',
    errno: 'EINVAL',
    message: /PhysMap\.addBar: region is not a MemRegion/,
    call: () => new PhysMap().addBar(undefined as never),
  },
  {
    entry: 'mm/phys-map.PhysMap.removeWindow',
    case: 'no window there',
    errno: 'ENOENT',
    message: /PhysMap\.removeWindow: no window starts at 0x1000/,
    call: () => new PhysMap().removeWindow(0x1000),
  },
  {
    entry: 'mm/phys-map.PhysMap.removeWindow',
    case: 'window removed twice',
    errno: 'ENOENT',
    message: /PhysMap\.removeWindow: no window starts at 0x0/,
    call: () => {
      const map = new PhysMap();
      map.addRam(region());
      map.removeWindow(0);
      map.removeWindow(0);
    },
  },
);

// ---------------------------------------------------------------------------------------------
// kernel: nodes/kernel/iommu/{iommu,iova,dma-iommu}.ts

/** A DMA domain on a fresh IOMMU. */
function dmaDom(opts: { apertureBits?: number } = {}): IommuDomain {
  return iommuDomainAlloc(new Iommu(new PhysMap()), IommuDomainType.DMA, opts);
}

/** A domain of `type` that was freed. */
function freedDom(type: IommuDomainType = IommuDomainType.DMA): IommuDomain {
  const d = iommuDomainAlloc(new Iommu(new PhysMap()), type);
  iommuDomainFree(d);
  return d;
}

const RW = IOMMU_READ | IOMMU_WRITE;

rows.push(
  {
    entry: 'iommu/iommu.Iommu',
    case: 'fault ring not a power of two',
    errno: 'EINVAL',
    message: /IommuFaultLog: capacity must be a power of two in \[2, 2\^20\], got 3/,
    call: () => new Iommu(new PhysMap(), { faultRingSlots: 3 }),
  },
  {
    entry: 'iommu/iommu.Iommu.probeDevice',
    case: 'deviceId 0',
    errno: 'EINVAL',
    message: /iommuProbeDevice: deviceId must be an integer in \[1, 2\^31\), got 0/,
    call: () => new Iommu(new PhysMap()).probeDevice(0),
  },
  {
    entry: 'iommu/iommu.iommuDomainAlloc',
    case: 'unknown type',
    errno: 'EINVAL',
    message: /iommuDomainAlloc: type must be an IommuDomainType, got paging/,
    call: () => iommuDomainAlloc(new Iommu(new PhysMap()), 'paging' as never),
  },
  {
    entry: 'iommu/iommu.iommuDomainAlloc',
    case: 'apertureBits out of range',
    errno: 'EINVAL',
    message: /iommuDomainAlloc: apertureBits must be an integer in \[\d+, \d+\], got 64/,
    call: () => dmaDom({ apertureBits: 64 }),
  },
  {
    entry: 'iommu/iommu.iommuDomainFree',
    case: 'devices still attached',
    errno: 'EBUSY',
    message: /iommuDomainFree: domain \d+ still has devices 1/,
    call: () => {
      const d = dmaDom();
      iommuAttachDevice(d, 1);
      iommuDomainFree(d);
    },
  },
  {
    entry: 'iommu/iommu.iommuDomainFree',
    case: 'not a domain',
    errno: 'EINVAL',
    message: /iommuDomainFree: domain is not an IommuDomain/,
    call: () => iommuDomainFree(undefined as never),
  },
  {
    entry: 'iommu/iommu.iommuAttachDevice',
    case: 'freed domain',
    errno: 'EINVAL',
    message: /iommuAttachDevice: domain \d+ was freed/,
    call: () => iommuAttachDevice(freedDom(), 1),
  },
  {
    entry: 'iommu/iommu.iommuAttachDevice',
    case: 'device attached elsewhere',
    errno: 'EBUSY',
    message: /iommuAttachDevice: device 4 is attached to domain \d+; detach first/,
    call: () => {
      const iommu = new Iommu(new PhysMap());
      iommuAttachDevice(iommuDomainAlloc(iommu, IommuDomainType.DMA), 4);
      iommuAttachDevice(iommuDomainAlloc(iommu, IommuDomainType.DMA), 4);
    },
  },
  {
    entry: 'iommu/iommu.iommuAttachDevice',
    case: 'deviceId not an integer',
    errno: 'EINVAL',
    message: /iommuAttachDevice: deviceId must be an integer in \[1, 2\^31\), got 1\.5/,
    call: () => iommuAttachDevice(dmaDom(), 1.5),
  },
  {
    entry: 'iommu/iommu.iommuDetachDevice',
    case: 'device not attached to the domain',
    errno: 'EINVAL',
    message: /iommuDetachDevice: device 5 is not attached to domain \d+/,
    call: () => iommuDetachDevice(dmaDom(), 5),
  },
  {
    entry: 'iommu/iommu.iommuMap',
    case: 'freed domain',
    errno: 'EINVAL',
    message: /iommuMap: domain \d+ was freed/,
    call: () => iommuMap(freedDom(), 0, 0, PAGE_SIZE, RW),
  },
  {
    entry: 'iommu/iommu.iommuMap',
    case: 'not a domain',
    errno: 'EINVAL',
    message: /iommuMap: domain is not an IommuDomain/,
    call: () => iommuMap(null as never, 0, 0, PAGE_SIZE, RW),
  },
  {
    entry: 'iommu/iommu.iommuMap',
    case: 'identity domain',
    errno: 'EINVAL',
    message: /iommuMap: domain \d+ is not a paging domain/,
    call: () =>
      iommuMap(iommuDomainAlloc(new Iommu(new PhysMap()), IommuDomainType.IDENTITY), 0, 0, PAGE_SIZE, RW),
  },
  {
    entry: 'iommu/iommu.iommuMap',
    case: 'iova not page aligned',
    errno: 'EINVAL',
    message: /iommuMap: iova 4097 must be page aligned/,
    call: () => iommuMap(dmaDom(), 4097, 0, PAGE_SIZE, RW),
  },
  {
    entry: 'iommu/iommu.iommuMap',
    case: 'size 0',
    errno: 'EINVAL',
    message: /iommuMap: size 0 must be a positive multiple of 4096/,
    call: () => iommuMap(dmaDom(), 0, 0, 0, RW),
  },
  {
    entry: 'iommu/iommu.iommuMap',
    case: 'range beyond the aperture',
    errno: 'EINVAL',
    message: /iommuMap: iova range \[0xff000, \+0x2000\) exceeds the aperture 0x100000/,
    call: () => iommuMap(dmaDom({ apertureBits: 20 }), 0xff000, 0, 2 * PAGE_SIZE, RW),
  },
  {
    entry: 'iommu/iommu.iommuMap',
    case: 'paddr not page aligned',
    errno: 'EINVAL',
    message: /iommuMap: paddr 1 must be page aligned/,
    call: () => iommuMap(dmaDom(), 0, 1, PAGE_SIZE, RW),
  },
  {
    entry: 'iommu/iommu.iommuMap',
    case: 'prot without READ or WRITE',
    errno: 'EINVAL',
    message: /iommuMap: prot 0 must include IOMMU_READ or IOMMU_WRITE/,
    call: () => iommuMap(dmaDom(), 0, 0, PAGE_SIZE, 0),
  },
  {
    entry: 'iommu/iommu.iommuMap',
    case: 'iova already mapped',
    errno: 'EEXIST',
    message: /iommuMap: iova 0x1000 is already mapped/,
    call: () => {
      const d = dmaDom();
      iommuMap(d, 0x1000, 0, PAGE_SIZE, RW);
      iommuMap(d, 0x1000, 0x2000, PAGE_SIZE, RW);
    },
  },
  {
    entry: 'iommu/iommu.iommuUnmap',
    case: 'freed domain',
    errno: 'EINVAL',
    message: /iommuUnmap: domain \d+ was freed/,
    call: () => iommuUnmap(freedDom(), 0, PAGE_SIZE),
  },
  {
    entry: 'iommu/iommu.iommuUnmap',
    case: 'size not a page multiple',
    errno: 'EINVAL',
    message: /iommuUnmap: size 100 must be a positive multiple of 4096/,
    call: () => iommuUnmap(dmaDom(), 0, 100),
  },
  {
    entry: 'iommu/iommu.iommuIovaToPhys',
    case: 'freed domain',
    errno: 'EINVAL',
    message: /iommuIovaToPhys: domain \d+ was freed/,
    call: () => iommuIovaToPhys(freedDom(), 0x1000),
  },
  {
    entry: 'iommu/iommu.iommuDeviceDmaCtx',
    case: 'negative deviceId',
    errno: 'EINVAL',
    message: /iommuDeviceDmaCtx: deviceId must be an integer in \[1, 2\^31\), got -1/,
    call: () => iommuDeviceDmaCtx(new Iommu(new PhysMap()), -1),
  },
  {
    entry: 'iommu/iova.IovaDomain',
    case: 'granule not a power of two',
    errno: 'EINVAL',
    message: /initIovaDomain\(t\): granule must be a power of two >= 4096, got 5000/,
    call: () => new IovaDomain(5000, 1, 100, 't'),
  },
  {
    entry: 'iommu/iova.IovaDomain',
    case: 'negative startPfn',
    errno: 'EINVAL',
    message: /initIovaDomain\(t\): startPfn must be a non-negative integer, got -1/,
    call: () => new IovaDomain(PAGE_SIZE, -1, 100, 't'),
  },
  {
    entry: 'iommu/iova.IovaDomain',
    case: 'endPfn below startPfn',
    errno: 'EINVAL',
    message: /initIovaDomain\(t\): endPfn must be an integer in \[startPfn, 2\^40\), got 5/,
    call: () => new IovaDomain(PAGE_SIZE, 10, 5, 't'),
  },
  {
    entry: 'iommu/iova.IovaDomain.allocIova',
    case: 'size 0',
    errno: 'EINVAL',
    message: /allocIova\(t\): size must be a positive number of pfns, got 0/,
    call: () => new IovaDomain(PAGE_SIZE, 1, 100, 't').allocIova(0, 100),
  },
  {
    entry: 'iommu/iova.IovaDomain.allocIova',
    case: 'limitPfn below startPfn',
    errno: 'EINVAL',
    message: /allocIova\(t\): limitPfn must be an integer >= startPfn 10, got 3/,
    call: () => new IovaDomain(PAGE_SIZE, 10, 100, 't').allocIova(1, 3),
  },
  {
    entry: 'iommu/iova.IovaDomain.allocIova',
    case: 'no room',
    errno: 'ENOSPC',
    message: /allocIova\(t\): no 200-pfn range/,
    call: () => new IovaDomain(PAGE_SIZE, 1, 100, 't').allocIova(200, 100),
  },
  {
    entry: 'iommu/iova.IovaDomain.freeIova',
    case: 'freed twice',
    errno: 'EINVAL',
    message: /freeIova\(t\): pfn 0x[0-9a-f]+ is not in an allocated range/,
    call: () => {
      const iovad = new IovaDomain(PAGE_SIZE, 1, 100, 't');
      const r = iovad.allocIova(4, 100);
      iovad.freeIova(r.pfnLo);
      iovad.freeIova(r.pfnLo);
    },
  },
  {
    entry: 'iommu/iova.IovaDomain.reserveIova',
    case: 'pfnLo outside the domain',
    errno: 'EINVAL',
    message: /reserveIova\(t\): pfnLo 0 outside \[1, 100\]/,
    call: () => new IovaDomain(PAGE_SIZE, 1, 100, 't').reserveIova(0, 5),
  },
  {
    entry: 'iommu/iova.IovaDomain.reserveIova',
    case: 'pfnHi below pfnLo',
    errno: 'EINVAL',
    message: /reserveIova\(t\): pfnHi 3 must be in \[pfnLo, 100\]/,
    call: () => new IovaDomain(PAGE_SIZE, 1, 100, 't').reserveIova(5, 3),
  },
  {
    entry: 'iommu/iova.IovaDomain.reserveIova',
    case: 'overlaps a held range',
    errno: 'EEXIST',
    message: /reserveIova\(t\): \[0x8, 0xa\] overlaps a range already held/,
    call: () => {
      const iovad = new IovaDomain(PAGE_SIZE, 1, 100, 't');
      iovad.reserveIova(5, 9);
      iovad.reserveIova(8, 10);
    },
  },
  {
    entry: 'iommu/dma-iommu.iommuDmaAllocIova',
    case: 'freed domain',
    errno: 'EINVAL',
    message: /iommuDmaAllocIova: domain \d+ was freed/,
    call: () => iommuDmaAllocIova(freedDom(), PAGE_SIZE),
  },
  {
    entry: 'iommu/dma-iommu.iommuDmaAllocIova',
    case: 'unmanaged domain',
    errno: 'EINVAL',
    message: /iommuDmaAllocIova: domain \d+ is not a DMA-API domain/,
    call: () =>
      iommuDmaAllocIova(iommuDomainAlloc(new Iommu(new PhysMap()), IommuDomainType.UNMANAGED), PAGE_SIZE),
  },
  {
    entry: 'iommu/dma-iommu.iommuDmaAllocIova',
    case: 'size 0',
    errno: 'EINVAL',
    message: /iommuDmaAllocIova: size must be a positive integer, got 0/,
    call: () => iommuDmaAllocIova(dmaDom(), 0),
  },
  {
    entry: 'iommu/dma-iommu.iommuDmaAllocIova',
    case: 'dmaLimit below a page',
    errno: 'EINVAL',
    message: /iommuDmaAllocIova: dmaLimit must be an integer >= 4096, got 100/,
    call: () => iommuDmaAllocIova(dmaDom(), PAGE_SIZE, 100),
  },
  {
    entry: 'iommu/dma-iommu.iommuDmaAllocIova',
    case: 'larger than the aperture',
    errno: 'ENOSPC',
    message: /allocIova\(domain \d+\): no 512-pfn range/,
    call: () => iommuDmaAllocIova(dmaDom({ apertureBits: 20 }), 2 << 20),
  },
  {
    entry: 'iommu/dma-iommu.iommuDmaFreeIova',
    case: 'iova not allocated',
    errno: 'EINVAL',
    message: /iommuDmaFreeIova: iova 0x5000 does not start an allocated range/,
    call: () => iommuDmaFreeIova(dmaDom(), 0x5000),
  },
  {
    entry: 'iommu/dma-iommu.iommuDmaFreeIova',
    case: 'iova not page aligned',
    errno: 'EINVAL',
    message: /iommuDmaFreeIova: iova 10 must be page aligned/,
    call: () => iommuDmaFreeIova(dmaDom(), 10),
  },
  {
    entry: 'iommu/dma-iommu.iommuDmaFreeIova',
    case: 'freed domain',
    errno: 'EINVAL',
    message: /iommuDmaFreeIova: domain \d+ was freed/,
    call: () => iommuDmaFreeIova(freedDom(), 0x1000),
  },
  {
    entry: 'iommu/dma-iommu.iommuDmaMapSg',
    case: 'no segments',
    errno: 'EINVAL',
    message: /iommuDmaMapSg: segs must be a non-empty array/,
    call: () => iommuDmaMapSg(dmaDom(), [], RW),
  },
  {
    entry: 'iommu/dma-iommu.iommuDmaMapSg',
    case: 'segment not page aligned',
    errno: 'EINVAL',
    message: /iommuDmaMapSg: segs\[1\] \{addr 4097, length 4096\} must be page aligned/,
    call: () =>
      iommuDmaMapSg(
        dmaDom(),
        [
          { addr: 0, length: PAGE_SIZE },
          { addr: 4097, length: PAGE_SIZE },
        ],
        RW,
      ),
  },
  {
    entry: 'iommu/dma-iommu.iommuDmaMapSg',
    case: 'freed domain',
    errno: 'EINVAL',
    message: /iommuDmaMapSg: domain \d+ was freed/,
    call: () => iommuDmaMapSg(freedDom(), [{ addr: 0, length: PAGE_SIZE }], RW),
  },
  {
    entry: 'iommu/dma-iommu.iommuDmaMapSg',
    case: 'blocked domain',
    errno: 'EINVAL',
    message: /iommuDmaMapSg: domain \d+ is not a DMA-API domain/,
    call: () =>
      iommuDmaMapSg(
        iommuDomainAlloc(new Iommu(new PhysMap()), IommuDomainType.BLOCKED),
        [{ addr: 0, length: PAGE_SIZE }],
        RW,
      ),
  },
  {
    entry: 'iommu/dma-iommu.iommuDmaUnmapSg',
    case: 'unmapped twice',
    errno: 'EINVAL',
    message: /iommuDmaUnmapSg: 0x[0-9a-f]+ was not returned by iommuDmaMapSg/,
    call: () => {
      const d = dmaDom();
      const mapped = iommuDmaMapSg(d, [{ addr: 0, length: PAGE_SIZE }], RW);
      iommuDmaUnmapSg(d, mapped);
      iommuDmaUnmapSg(d, mapped);
    },
  },
  {
    entry: 'iommu/dma-iommu.iommuDmaUnmapSg',
    case: 'freed domain',
    errno: 'EINVAL',
    message: /iommuDmaUnmapSg: domain \d+ was freed/,
    call: () => iommuDmaUnmapSg(freedDom(), [{ addr: 0x1000, length: PAGE_SIZE }]),
  },
  {
    entry: 'iommu/dma-iommu.iommuDmaUnmapSg',
    case: 'mapped not an array',
    errno: 'EINVAL',
    message: /iommuDmaUnmapSg: mapped must be an array/,
    call: () => iommuDmaUnmapSg(dmaDom(), undefined as never),
  },
);

// ---------------------------------------------------------------------------------------------
// kernel: nodes/kernel/kernel.ts

rows.push(
  {
    entry: 'kernel.HostKernel',
    case: 'ramBytes not a page multiple',
    errno: 'EINVAL',
    message: /memRegionCreate\(host0:ram\): size must be a positive multiple of 4096 up to 2\^32, got 100/,
    call: () => new HostKernel({ ramBytes: 100 }),
  },
  {
    entry: 'kernel.HostKernel.addDevice',
    case: 'empty name',
    errno: 'EINVAL',
    message: /HostKernel\.addDevice: name missing/,
    call: () => kernel().addDevice(''),
  },
  {
    entry: 'kernel.HostKernel.addDevice',
    case: 'name taken',
    errno: 'EEXIST',
    message: /HostKernel\.addDevice: device nic0 exists/,
    call: () => {
      const k = kernel();
      k.addDevice('nic0');
      k.addDevice('nic0');
    },
  },
  {
    entry: 'kernel.HostKernel.addDevice',
    case: 'kernel closed',
    errno: 'ENODEV',
    message: /HostKernel\.addDevice: host host0 is closed/,
    call: () => {
      const k = kernel();
      k.close();
      k.addDevice('nic0');
    },
  },
  {
    entry: 'kernel.HostKernel.device',
    case: 'unknown name',
    errno: 'ENODEV',
    message: /host host0: no device named "gpu7"/,
    call: () => kernel().device('gpu7'),
  },
  {
    entry: 'kernel.HostKernel.device',
    case: 'kernel closed',
    errno: 'ENODEV',
    message: /host host0: no device named "nic0"/,
    call: () => {
      const k = kernel();
      k.addDevice('nic0');
      k.close();
      return k.device('nic0');
    },
  },
  {
    entry: 'kernel.HostKernel.domainOf',
    case: 'unknown name',
    errno: 'ENODEV',
    message: /host host0: no device named "gpu7"/,
    call: () => kernel().domainOf('gpu7'),
  },
  {
    entry: 'kernel.HostKernel.addDeviceMemory',
    case: 'size not a page multiple',
    errno: 'EINVAL',
    message: /memRegionCreate\(host0:vram\): size must be .* got 100/,
    call: () => kernel().addDeviceMemory('vram', 100),
  },
  {
    entry: 'kernel.HostKernel.mockExporterEnv',
    case: 'vramBytes 0',
    errno: 'EINVAL',
    message: /memRegionCreate\(host0:mock-vram0\): size must be .* got 0/,
    call: () => kernel().mockExporterEnv(0),
  },
);

// ---------------------------------------------------------------------------------------------
// Remaining exported helpers that take an object or a value.

rows.push(
  {
    entry: 'dma-buf.checkDmaBuf',
    case: 'not a dma-buf',
    errno: 'EINVAL',
    message: /probe-ioctl: dmabuf is not a dma-buf/,
    call: () => checkDmaBuf('probe-ioctl', undefined as never),
  },
  {
    entry: 'dma-buf.checkDmaBuf',
    case: 'released buffer',
    errno: 'EBADF',
    message: new RegExp(`probe-ioctl: ${B} was released`),
    call: () => checkDmaBuf('probe-ioctl', released()),
  },
  {
    entry: 'dma-resv.dmaResvUsageName',
    case: 'unknown usage',
    errno: 'EINVAL',
    message: /dmaResvUsageName: usage 9 is not a dma_resv_usage/,
    call: () => dmaResvUsageName(9 as never),
  },
  {
    entry: 'dma-fence.dmaFenceCheckAndSignal',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /dmaFenceIsSignaled: fence is not a DmaFence/,
    call: () => dmaFenceCheckAndSignal(notFence),
  },
  {
    entry: 'dma-fence.dmaFenceAllocatePrivateStub',
    case: 'timestamp not a number',
    errno: 'EINVAL',
    message: /dmaFenceAllocatePrivateStub: timestamp now is not a time in ns/,
    call: () => dmaFenceAllocatePrivateStub('now' as never),
  },
  {
    entry: 'dma-fence-chain.dmaFenceChainContained',
    case: 'not a fence',
    errno: 'EINVAL',
    message: /dmaFenceChainContained: fence is not a DmaFence/,
    call: () => dmaFenceChainContained(undefined as never),
  },
  {
    entry: 'sw-sync.swSyncTimelineCreate',
    case: 'name not a string',
    errno: 'EINVAL',
    message: /open\(sw_sync\): name is not a string/,
    call: () => swSyncTimelineCreate(new FdTable(), {} as never),
  },
  {
    entry: 'syncobj.drmSyncobjFind',
    case: 'not a syncobj table',
    errno: 'EINVAL',
    message: /drmSyncobjFind: file is not a DrmSyncobjTable/,
    call: () => drmSyncobjFind(new FdTable() as never, 1),
  },
  {
    entry: 'syncobj.syncobjCreate',
    case: 'flags not a number',
    errno: 'EINVAL',
    message: /syncobjCreate: flags 0xNaN/,
    call: () => syncobjCreate(syncobjs(), 'signaled' as never),
  },
  {
    entry: 'syncobj.syncobjExportSyncFile',
    case: 'unknown handle',
    errno: 'ENOENT',
    message: /syncobjHandleToFd: handle 4 is not a syncobj/,
    call: () => syncobjExportSyncFile(syncobjs(), 4),
  },
);

// ---------------------------------------------------------------------------------------------
// Verbs asynchronous events (nodes/uapi/verbs.ts). A context needs an HCA worker; these rows
// check the arguments before any device is touched, so a context-shaped object stands in.

/** A context-shaped object of process `p` (closed if asked). */
function fakeCtx(p: Process, closed = false): never {
  return { proc: p, device: { name: 'mlx5_x' }, closed, asyncEvents: [], asyncWaiters: new Set() } as never;
}

rows.push(
  {
    entry: 'uapi/verbs.ibvGetAsyncEvent',
    case: 'context not an ibv_context',
    errno: 'EINVAL',
    message: /ibv_get_async_event: context is not an ibv_context/,
    call: () => ibvGetAsyncEvent({} as never, 10),
  },
  {
    entry: 'uapi/verbs.ibvGetAsyncEvent',
    case: 'closed context',
    errno: 'EINVAL',
    message: /ibv_get_async_event: context was closed/,
    call: () => ibvGetAsyncEvent(fakeCtx(proc(), true), 10),
  },
  {
    entry: 'uapi/verbs.ibvGetAsyncEvent',
    case: 'exited process',
    errno: 'ESRCH',
    message: /ibv_get_async_event: process .* has exited/,
    call: async () => ibvGetAsyncEvent(fakeCtx(await exited()), 10),
  },
  {
    entry: 'uapi/verbs.ibvGetAsyncEvent',
    case: 'negative timeoutMs',
    errno: 'EINVAL',
    message: /ibv_get_async_event: timeoutMs -1 must be a number >= 0/,
    call: () => ibvGetAsyncEvent(fakeCtx(proc()), -1),
  },
  {
    entry: 'uapi/verbs.ibvGetAsyncEvent',
    case: 'timeoutMs not a number',
    errno: 'EINVAL',
    message: /ibv_get_async_event: timeoutMs soon must be a number >= 0/,
    call: () => ibvGetAsyncEvent(fakeCtx(proc()), 'soon' as never),
  },
  {
    entry: 'uapi/verbs.ibvAckAsyncEvent',
    case: 'event missing',
    errno: 'EINVAL',
    message: /ibv_ack_async_event: event is not an unacknowledged async event/,
    call: () => ibvAckAsyncEvent(null as never),
  },
  {
    entry: 'uapi/verbs.ibvAckAsyncEvent',
    case: 'event not returned by ibvGetAsyncEvent',
    errno: 'EINVAL',
    message: /ibv_ack_async_event: event is not an unacknowledged async event/,
    call: () => ibvAckAsyncEvent({ event_type: 0 }),
  },
);

// ---------------------------------------------------------------------------------------------
// kernel: nodes/kernel/pci/tph.ts, dma-buf-tph.ts, infiniband/mlx5 TPH (docs/tph.md)

const TPH_CAP: PciTphCap = {
  modes: [PciTphStMode.NS, PciTphStMode.IV, PciTphStMode.DS],
  extSt: true,
  stTable: PciTphLoc.CAP,
  stSize: 4,
};
let tphFns = 0;
/** A PCI function `tphfn<N>` with a TPH state (default: the capability above), on its own kernel. */
function tphFn(opts: PciTphOptions = { cap: TPH_CAP }, mode: number | null = null) {
  const kernel = {};
  const dev = directDevice(`tphfn${tphFns++}`);
  pciTphInit(kernel, dev, opts);
  if (mode !== null) pcieEnableTph(dev, mode);
  return { kernel, dev };
}
const F = String.raw`tphfn\d+`;
/** A dma-buf whose exporter's get_tph returns `tph` (or that has no get_tph). */
function tphBuf(tph?: { steeringTag: number; ph: number }): DmaBuf {
  const ops: DmaBufOps = {
    mapDmaBuf: () => ({ entries: [], cpu: [], origNents: 0, length: 0 }),
    unmapDmaBuf: () => {},
    release: () => {},
    ...(tph && { getTph: () => tph }),
  };
  return dmaBufExport({ expName: 'tph-exp', ops, size: PAGE_SIZE, priv: {} });
}

rows.push(
  {
    entry: 'pci/tph.pciTphInit',
    case: 'dev not a device',
    errno: 'EINVAL',
    message: /pci_tph_init: dev is not a device/,
    call: () => pciTphInit({}, null as never),
  },
  {
    entry: 'pci/tph.pciTphInit',
    case: 'cap.stSize past 2048',
    errno: 'EINVAL',
    message: /pci_tph_init: cap\.stSize 4096/,
    call: () => pciTphInit({}, directDevice('x'), { cap: { ...TPH_CAP, stSize: 4096 } }),
  },
  {
    entry: 'pci/tph.pciTphInit',
    case: 'cap.modes holding a non-mode',
    errno: 'EINVAL',
    message: /pci_tph_init: cap\.modes holds 7/,
    call: () => pciTphInit({}, directDevice('x'), { cap: { ...TPH_CAP, modes: [7 as never] } }),
  },
  {
    entry: 'pci/tph.pciTphInit',
    case: 'completer 2 (reserved encoding)',
    errno: 'EINVAL',
    message: /pci_tph_init: completer 2 is not a TPH completer type/,
    call: () => pciTphInit({}, directDevice('x'), { completer: 2 as never }),
  },
  {
    entry: 'pci/tph.pciTphInit',
    case: 'a function that already has a TPH state',
    errno: 'EEXIST',
    message: new RegExp(`pci_tph_init: ${F} already has a TPH state`),
    call: () => {
      const { kernel, dev } = tphFn();
      pciTphInit(kernel, dev, {});
    },
  },
  {
    entry: 'pci/tph.pciTphSetNoTph',
    case: 'kernel not an object',
    errno: 'EINVAL',
    message: /pci_no_tph: kernel is not a host kernel/,
    call: () => pciTphSetNoTph(null as never, true),
  },
  {
    entry: 'pci/tph.pcieEnableTph',
    case: 'dev not a device',
    errno: 'EINVAL',
    message: /pcie_enable_tph: dev is not a device/,
    call: () => pcieEnableTph(42 as never, PciTphStMode.DS),
  },
  {
    entry: 'pci/tph.pcieEnableTph',
    case: 'no TPH capability',
    errno: 'EINVAL',
    message: new RegExp(`pcie_enable_tph: ${F} has no TPH capability`),
    call: () => pcieEnableTph(tphFn({}).dev, PciTphStMode.NS),
  },
  {
    entry: 'pci/tph.pcieEnableTph',
    case: 'mode not an ST mode',
    errno: 'EINVAL',
    message: /pcie_enable_tph: mode 5 is not an ST mode/,
    call: () => pcieEnableTph(tphFn().dev, 5),
  },
  {
    entry: 'pci/tph.pcieEnableTph',
    case: 'a mode the function does not support',
    errno: 'EINVAL',
    message: new RegExp(`pcie_enable_tph: mode IV is not supported by ${F}`),
    call: () => pcieEnableTph(tphFn({ cap: { ...TPH_CAP, modes: [PciTphStMode.DS] } }).dev, PciTphStMode.IV),
  },
  {
    entry: 'pci/tph.pcieEnableTph',
    case: 'TPH disabled system-wide (notph)',
    errno: 'EINVAL',
    message: /pcie_enable_tph: TPH is disabled system-wide \(notph\)/,
    call: () => {
      const { kernel, dev } = tphFn();
      pciTphSetNoTph(kernel, true);
      pcieEnableTph(dev, PciTphStMode.DS);
    },
  },
  {
    entry: 'pci/tph.pcieEnableTph',
    case: 'a completer without TPH support',
    errno: 'EINVAL',
    message: new RegExp(`pcie_enable_tph: the completer of ${F} does not support TPH`),
    call: () => pcieEnableTph(tphFn({ cap: TPH_CAP, completer: PciTphReqType.DISABLE }).dev, PciTphStMode.DS),
  },
  {
    entry: 'pci/tph.pcieEnableTph',
    case: 'already enabled',
    errno: 'EBUSY',
    message: new RegExp(`pcie_enable_tph: TPH is already enabled on ${F}`),
    call: () => pcieEnableTph(tphFn(undefined, PciTphStMode.DS).dev, PciTphStMode.DS),
  },
  {
    entry: 'pci/tph.pcieTphGetCpuSt',
    case: 'memType not a tph_mem_type',
    errno: 'EINVAL',
    message: /pcie_tph_get_cpu_st: memType 2 is not a tph_mem_type/,
    call: () => pcieTphGetCpuSt(tphFn().dev, 2, 0),
  },
  {
    entry: 'pci/tph.pcieTphGetCpuSt',
    case: 'cpu not a CPU UID',
    errno: 'EINVAL',
    message: /pcie_tph_get_cpu_st: cpu 1\.5 is not a CPU UID/,
    call: () => pcieTphGetCpuSt(tphFn().dev, 0, 1.5),
  },
  {
    entry: 'pci/tph.pcieTphGetCpuSt',
    case: 'a CPU the root port _DSM does not know',
    errno: 'EINVAL',
    message: new RegExp(`pcie_tph_get_cpu_st: the root port _DSM of ${F} failed for cpu 99`),
    call: () => pcieTphGetCpuSt(tphFn().dev, 0, 99),
  },
  {
    entry: 'pci/tph.pcieTphGetCpuSt',
    case: 'no root port',
    errno: 'ENODEV',
    message: new RegExp(`pcie_tph_get_cpu_st: ${F} has no root port with a _DSM`),
    call: () => pcieTphGetCpuSt(tphFn({ cap: TPH_CAP, noRootPort: true }).dev, 0, 0),
  },
  {
    entry: 'pci/tph.pcieTphSetStEntry',
    case: 'TPH not enabled',
    errno: 'EINVAL',
    message: new RegExp(`pcie_tph_set_st_entry: TPH is not enabled on ${F}`),
    call: () => pcieTphSetStEntry(tphFn().dev, 1, 0x2a),
  },
  {
    entry: 'pci/tph.pcieTphSetStEntry',
    case: 'index not an unsigned int',
    errno: 'EINVAL',
    message: /pcie_tph_set_st_entry: index -1 is not an unsigned int/,
    call: () => pcieTphSetStEntry(tphFn(undefined, PciTphStMode.DS).dev, -1, 0x2a),
  },
  {
    entry: 'pci/tph.pcieTphSetStEntry',
    case: 'tag wider than 16 bits',
    errno: 'EINVAL',
    message: /pcie_tph_set_st_entry: tag 65536 is not a 16-bit steering tag/,
    call: () => pcieTphSetStEntry(tphFn(undefined, PciTphStMode.DS).dev, 1, 0x10000),
  },
  {
    entry: 'pci/tph.pcieTphSetStEntry',
    case: 'index past the capability ST table (TPH turned off)',
    errno: 'ENXIO',
    message: new RegExp(`pcie_tph_set_st_entry: index 4 is past the ST table of ${F} \\(4 entries\\)`),
    call: () => pcieTphSetStEntry(tphFn(undefined, PciTphStMode.DS).dev, 4, 1),
  },
  {
    entry: 'pci/tph.pcieTphSetStEntry',
    case: 'an MSI-X located entry with MSI-X off',
    errno: 'ENXIO',
    message: new RegExp(`pcie_tph_set_st_entry: MSI-X is not enabled on ${F}`),
    call: () =>
      pcieTphSetStEntry(
        tphFn({ cap: { ...TPH_CAP, stTable: PciTphLoc.MSIX }, msixEnabled: false }, PciTphStMode.IV).dev,
        0,
        1,
      ),
  },
  {
    entry: 'pci/tph.pcieTphSetStEntry',
    case: 'a function without an ST table',
    errno: 'EINVAL',
    message: new RegExp(`pcie_tph_set_st_entry: ${F} has no ST table \\(location NONE\\)`),
    call: () =>
      pcieTphSetStEntry(tphFn({ cap: { ...TPH_CAP, stTable: PciTphLoc.NONE } }, PciTphStMode.DS).dev, 0, 1),
  },
  {
    entry: 'dma-buf-tph.dmaBufGetTph',
    case: 'dmabuf not a dma-buf',
    errno: 'EINVAL',
    message: /dma_buf_get_tph: dmabuf is not a dma-buf/,
    call: () => dmaBufGetTph({} as never, 8),
  },
  {
    entry: 'dma-buf-tph.dmaBufGetTph',
    case: 'released dma-buf',
    errno: 'EBADF',
    message: /dma_buf_get_tph: dmabuf tph-exp:\d+ was released/,
    call: () => {
      const b = tphBuf({ steeringTag: 1, ph: 0 });
      dmaBufPut(b);
      dmaBufGetTph(b, 8);
    },
  },
  {
    entry: 'dma-buf-tph.dmaBufGetTph',
    case: 'stWidth 12',
    errno: 'EINVAL',
    message: /dma_buf_get_tph: stWidth 12 must be 8 or 16/,
    call: () => dmaBufGetTph(tphBuf({ steeringTag: 1, ph: 0 }), 12),
  },
  {
    entry: 'dma-buf-tph.dmaBufGetTph',
    case: 'an exporter without get_tph',
    errno: 'EOPNOTSUPP',
    message: /dma_buf_get_tph: exporter tph-exp of dmabuf tph-exp:\d+ has no get_tph/,
    call: () => dmaBufGetTph(tphBuf(), 8),
  },
  {
    entry: 'dma-buf-tph.dmaBufGetTph',
    case: 'an exporter answering a 16-bit tag to an 8-bit request',
    errno: 'EIO',
    message: /dma_buf_get_tph: exporter tph-exp returned steering tag 4660 for a 8-bit request/,
    call: () => dmaBufGetTph(tphBuf({ steeringTag: 0x1234, ph: 0 }), 8),
  },
  {
    entry: 'infiniband/mlx5/mlx5-st.mlx5StAllocIndex',
    case: 'TPH off on the HCA (no ST state)',
    errno: 'EINVAL',
    message: /mlx5_st_alloc_index: TPH is not enabled on mlx5_x/,
    call: () => mlx5StAllocIndex(null, directDevice('mlx5_x'), 0x2a),
  },
  {
    entry: 'infiniband/mlx5/mlx5-st.mlx5StAllocIndex',
    case: 'every index in use',
    errno: 'ENOSPC',
    message: new RegExp(`mlx5_st_alloc_index: the ST table of ${F} is full \\(1 indices\\)`),
    call: () => {
      const { dev } = tphFn({ cap: { ...TPH_CAP, stSize: 2 } }, PciTphStMode.DS);
      const st = new Mlx5St(dev, 1, 16);
      mlx5StAllocIndex(st, dev, 0x2a);
      mlx5StAllocIndex(st, dev, 0x2b);
    },
  },
  {
    entry: 'infiniband/mlx5/mlx5-st.mlx5StDeallocIndex',
    case: 'an index not allocated (double free)',
    errno: 'EINVAL',
    message: /mlx5_st_dealloc_index: index 3 of mlx5_x is not allocated/,
    call: () => mlx5StDeallocIndex(new Mlx5St(directDevice('mlx5_x'), 8, 8), directDevice('mlx5_x'), 3),
  },
  {
    entry: 'infiniband/mlx5/mlx5-mr.mlx5MkeyTph',
    case: 'key not an mkey of the HCA',
    errno: 'EINVAL',
    message: /mlx5_mkey_tph: key 0x501 is not an mkey of mlx5_x/,
    call: () => mlx5MkeyTph({ name: 'mlx5_x', hca: new Int32Array(MLX5_HCA_WORDS) } as never, 0x501),
  },
);

// ---------------------------------------------------------------------------------------------
// The runner.

async function outcome(row: Row): Promise<unknown> {
  try {
    const r = row.call();
    if (r instanceof Promise) await withDeadline(r, DEADLINE_MS, `${row.entry} (${row.case})`);
  } catch (e) {
    return e;
  }
  return undefined;
}

for (const row of rows) {
  it(`bad-input - ${row.entry}: ${row.case} gives ${row.errno}`, async () => {
    const e = await outcome(row);
    expect(e, 'an EmuError is thrown or rejected').toBeInstanceOf(EmuError);
    const ee = e as EmuError;
    expect(ee.code, ee.message).toBe(row.errno);
    expect(ee.message).toMatch(row.message);
  });
}
