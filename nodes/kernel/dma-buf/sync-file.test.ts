// sync_file uapi and the fd table (kernel-semantics §2.4 rule 31). The igt sw_sync cases that go
// through sync_file live in sw-sync.test.ts; these cover the ioctls directly.
import { describe, expect, it } from 'vitest';
import { Latch, withDeadline } from '../../../common/deadline.ts';
import { DmaFenceTimeline, dmaFenceSetError, dmaFenceSignal } from './dma-fence.ts';
import { FdTable, type FileObject } from '../fs/file.ts';
import {
  POLLIN,
  SyncFile,
  syncFileCreate,
  syncFileGetFence,
  syncFileInfo,
  syncFileInstall,
  syncFileMerge,
  syncFilePoll,
  syncFileSetDeadline,
  syncFileWait,
} from './sync-file.ts';

class Dummy implements FileObject {
  readonly kind = 'dummy';
  released = 0;
  release(): void {
    this.released++;
  }
}

function timeline(name = 'tl') {
  const deadlines: number[] = [];
  const tl = new DmaFenceTimeline('mockdrv', name, { ops: { setDeadline: (_f, ms) => deadlines.push(ms) } });
  return { tl, deadlines };
}

describe('sync-file', () => {
  it('fd-table - bad fds are EBADF, the wrong kind is EINVAL, new fds take the lowest free number', () => {
    const fdt = new FdTable('t');
    const d = new Dummy();
    const fd = fdt.install(d);
    expect(fd).toBe(3);
    expect(() => fdt.get(-1)).toThrow(/EBADF/);
    expect(() => fdt.get(99)).toThrow(/EBADF/);
    expect(() => fdt.getAs(fd, SyncFile, 'test')).toThrow(/EINVAL: test: fd 3 is a dummy, not a SyncFile/);
    expect(fdt.install(new Dummy())).toBe(4);
    fdt.close(fd);
    expect(d.released).toBe(1);
    expect(fdt.install(new Dummy())).toBe(3);
    expect(() => fdt.close(fd + 10)).toThrow(/EBADF/);
  });

  it('fd-table - dup, fork and fd passing share one open file released by the last close', () => {
    const parent = new FdTable('parent');
    const d = new Dummy();
    const fd = parent.install(d);
    const fd2 = parent.dup(fd);
    const child = parent.fork();
    const other = new FdTable('other');
    const token = parent.sendFd(fd);
    parent.close(fd);
    parent.close(fd2);
    child.closeAll();
    expect(d.released).toBe(0); // the in-flight token still holds it
    const got = other.receiveFd(token);
    expect(other.get(got)).toBe(d);
    expect(() => other.receiveFd(token)).toThrow(/EINVAL/);
    other.close(got);
    expect(d.released).toBe(1);
  });

  it('sync_file - create and get_fence hand out references to the same fence', () => {
    const fdt = new FdTable();
    const { tl } = timeline();
    const f = tl.emit();
    const fd = syncFileInstall(fdt, f);
    expect(syncFileGetFence(fdt, fd)).toBe(f);
    expect(syncFileCreate(f).fence).toBe(f);
    expect(() => syncFileGetFence(fdt, fd + 1)).toThrow(/EBADF/);
    expect(() => syncFileGetFence(fdt, fdt.install(new Dummy()))).toThrow(/EINVAL/);
  });

  it('sync_file - merge signals only when both inputs have', async () => {
    const fdt = new FdTable();
    const [a, b] = [timeline('a').tl, timeline('b').tl];
    const fa = a.emit();
    const fb = b.emit();
    const merged = syncFileMerge(fdt, syncFileInstall(fdt, fa), syncFileInstall(fdt, fb), 'both');
    expect(syncFileInfo(fdt, merged).num_fences).toBe(2);
    a.signal(fa);
    expect(await syncFilePoll(fdt, merged, 0)).toBe(0);
    const ready = syncFilePoll(fdt, merged, 1000);
    b.signal(fb);
    expect(await withDeadline(ready, 1000, 'merged poll')).toBe(POLLIN);
  });

  it('sync_file - merge with itself, and of one timeline, keeps a single fence', () => {
    const fdt = new FdTable();
    const { tl } = timeline();
    const [f1, f2] = [tl.emit(), tl.emit()];
    const fd1 = syncFileInstall(fdt, f1);
    expect(syncFileGetFence(fdt, syncFileMerge(fdt, fd1, fd1, 'self'))).toBe(f1);
    const later = syncFileMerge(fdt, fd1, syncFileInstall(fdt, f2), 'later');
    expect(syncFileGetFence(fdt, later)).toBe(f2);
  });

  it('sync_file - merge errors: fd2 not a sync_file is ENOENT, bad fd1 EBADF, flags EINVAL', () => {
    const fdt = new FdTable();
    const fd = syncFileInstall(fdt, timeline().tl.emit());
    expect(() => syncFileMerge(fdt, fd, -1, 'x')).toThrow(/ENOENT/);
    expect(() => syncFileMerge(fdt, fd, fdt.install(new Dummy()), 'x')).toThrow(/ENOENT/);
    expect(() => syncFileMerge(fdt, 77, fd, 'x')).toThrow(/EBADF/);
    expect(() => syncFileMerge(fdt, fd, fd, 'x', 1)).toThrow(/EINVAL/);
  });

  it('sync_file - file_info two-call probe, per-fence records and errors', () => {
    const fdt = new FdTable();
    const a = timeline('ring-a').tl;
    const b = timeline('ring-b').tl;
    const [fa, fb] = [a.emit(), b.emit()];
    const fd = syncFileMerge(
      fdt,
      syncFileInstall(fdt, fa),
      syncFileInstall(fdt, fb),
      'a-name-longer-than-thirty-one-chars',
    );
    const probe = syncFileInfo(fdt, fd);
    expect(probe).toMatchObject({ num_fences: 2, status: 0, sync_fence_info: [] });
    expect(probe.name).toBe('a-name-longer-than-thirty-one-c');
    expect(() => syncFileInfo(fdt, fd, { num_fences: 1 })).toThrow(/EINVAL/);
    expect(() => syncFileInfo(fdt, fd, { flags: 1 })).toThrow(/EINVAL/);
    dmaFenceSetError(fb, -5);
    b.signal(fb);
    const info = syncFileInfo(fdt, fd, { num_fences: probe.num_fences });
    expect(info.status).toBe(0); // fa still active
    expect(info.sync_fence_info.map((i) => [i.obj_name, i.driver_name, i.status])).toEqual([
      ['ring-a', 'mockdrv', 0],
      ['ring-b', 'mockdrv', -5],
    ]);
    expect(info.sync_fence_info[0].timestamp_ns).toBe(0);
    expect(info.sync_fence_info[1].timestamp_ns).toBeGreaterThan(0);
    a.signal(fa);
    expect(syncFileInfo(fdt, fd, { num_fences: 4 }).status).toBe(-5);
    expect(syncFileInfo(fdt, fd).status).toBe(-5);
  });

  it('sync_file - file_info names an unnamed file after its fence', () => {
    const fdt = new FdTable();
    const f = timeline('r0').tl.emit();
    expect(syncFileInfo(fdt, syncFileInstall(fdt, f)).name).toBe(`mockdrv-r0${f.context}-${f.seqno}`);
  });

  it('sync_file - poll is 0 before the signal, POLLIN after it, and wakes every poller once', async () => {
    const fdt = new FdTable();
    const f = timeline().tl.emit();
    const fd = syncFileInstall(fdt, f);
    expect(await syncFilePoll(fdt, fd, 0)).toBe(0);
    expect(await withDeadline(syncFilePoll(fdt, fd, 5), 1000, 'poll timeout')).toBe(0);
    const latch = new Latch(3, 1000, 'pollers');
    for (let i = 0; i < 3; i++) void syncFilePoll(fdt, fd, 1000).then((r) => r === POLLIN && latch.unlock());
    setTimeout(() => dmaFenceSignal(f), 5); // a timer signalling inside the test, as test_wait_timeout does
    await latch.done;
    expect(await syncFileWait(fdt, fd, 0)).toBe('signaled');
  });

  it('sync_file - set_deadline forwards the hint; non-zero pad is EINVAL', () => {
    const fdt = new FdTable();
    const { tl, deadlines } = timeline();
    const fd = syncFileInstall(fdt, tl.emit());
    syncFileSetDeadline(fdt, fd, 123);
    expect(deadlines).toEqual([123]);
    expect(() => syncFileSetDeadline(fdt, fd, 1, 1)).toThrow(/EINVAL/);
  });

  it('sync_file - closing the last fd drops its fence reference; a poll in flight survives it', async () => {
    const fdt = new FdTable();
    const f = timeline().tl.emit();
    const fd = syncFileInstall(fdt, f);
    const refs = f.refcount;
    const ready = syncFilePoll(fdt, fd, 1000);
    fdt.close(fd);
    expect(f.refcount).toBe(refs); // -1 for the file, +1 held by the poll
    dmaFenceSignal(f);
    expect(await withDeadline(ready, 1000, 'poll after close')).toBe(POLLIN);
    expect(f.refcount).toBe(refs - 1);
    expect(f.pendingCallbacks).toBe(0);
  });
});
