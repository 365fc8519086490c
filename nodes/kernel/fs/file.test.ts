// The fd table's flags (kernel/fs/file.ts): the access mode belongs to the open file and is shared
// by its fds (F_GETFL); FD_CLOEXEC belongs to one fd (F_GETFD): set from O_CLOEXEC at install,
// cleared by dup, kept by fork, honoured by exec, which closes those fds and releases the files.
import { describe, expect, it } from 'vitest';
import {
  F_GETFD,
  F_GETFL,
  F_SETFD,
  FD_CLOEXEC,
  FdTable,
  type FileObject,
  O_CLOEXEC,
  O_RDONLY,
  O_RDWR,
} from './file.ts';

function file(): FileObject & { released: number } {
  return {
    kind: 'test',
    released: 0,
    release() {
      this.released++;
    },
  };
}

describe('fd table flags', () => {
  it('fd - O_CLOEXEC marks only that fd; dup clears it, fork keeps it; exec closes it and releases the file when it was the last fd', () => {
    const t = new FdTable('t');
    const a = file();
    const b = file();
    const fa = t.install(a, O_RDWR | O_CLOEXEC);
    const fb = t.install(b, O_RDONLY);
    expect(t.fcntl(fa, F_GETFD)).toBe(FD_CLOEXEC);
    expect(t.fcntl(fa, F_GETFL)).toBe(O_RDWR);
    expect(t.fcntl(fb, F_GETFD)).toBe(0);
    expect(t.fcntl(fb, F_GETFL)).toBe(O_RDONLY);
    const fa2 = t.dup(fa);
    expect(t.fcntl(fa2, F_GETFD)).toBe(0);
    expect(t.fcntl(fa2, F_GETFL)).toBe(O_RDWR); // the open file's, shared
    const child = t.fork();
    expect(child.fcntl(fa, F_GETFD)).toBe(FD_CLOEXEC);
    t.exec();
    expect(() => t.fcntl(fa, F_GETFD)).toThrow(/EBADF/);
    expect(t.fcntl(fa2, F_GETFL)).toBe(O_RDWR);
    expect(a.released).toBe(0); // the dup and the child still hold it
    child.exec(); // the child's copy of fa; its copy of the dup stays
    t.close(fa2);
    expect(a.released).toBe(0);
    child.close(fa2);
    expect(a.released).toBe(1);
    expect(t.fcntl(fb, F_GETFL)).toBe(O_RDONLY);
    t.fcntl(fb, F_SETFD, FD_CLOEXEC);
    t.exec();
    expect(b.released).toBe(0); // the child's fd
    child.closeAll();
    expect(b.released).toBe(1);
  });

  it('fd - bad flags and fcntl arguments are EINVAL naming them; a closed fd is EBADF', () => {
    const t = new FdTable('t');
    expect(() => t.install(file(), 0o100)).toThrow(/EINVAL.*flags 0o100/);
    const fd = t.install(file());
    expect(t.fcntl(fd, F_GETFL)).toBe(O_RDWR);
    expect(() => t.fcntl(fd, 99)).toThrow(/EINVAL.*cmd 99/);
    expect(() => t.fcntl(fd, F_SETFD, 7)).toThrow(/EINVAL.*F_SETFD arg 7/);
    t.close(fd);
    expect(() => t.fcntl(fd, F_GETFD)).toThrow(/EBADF/);
  });
});
