// Bad input (foundation issue, acceptance item): every uapi and kernel entry point given a wrong
// argument, a released object or the wrong lock state returns an errno-coded EmuError whose
// message names the argument or object. One table row per case; each row becomes one test named
// "bad-input - <entry>: <case> gives <ERRNO>". Async rows run under a deadline so a hang fails.
// The conventions (which errno for which kind of mistake) are in docs/bad-input.md.
import { afterEach, expect, it } from 'vitest';
import { withDeadline } from '../common/deadline.ts';
import { EmuError, type ErrnoName } from '../common/errno.ts';
import { bootHost } from '../nodes/host.ts';
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
