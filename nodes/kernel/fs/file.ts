/**
 * Files and fd tables: what fd-based uapi objects (dma-buf, sync_file, sw_sync timelines,
 * drm_syncobj files) live in. Files are reference counted like struct file: dup(), fork() and fd
 * passing share one open file, and its release() runs when the last fd referring to it closes.
 *
 * Flags as Linux keeps them: the access mode (O_ACCMODE of the flags a file was opened with) is
 * the open file's, shared by every fd for it (F_GETFL); FD_CLOEXEC is the fd's own (F_GETFD):
 * set from O_CLOEXEC at install, cleared on dup(), kept across fork(), and exec() closes it.
 */
import { err } from '../../../common/errno.ts';

export const O_RDONLY = 0o0;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_ACCMODE = 0o3;
export const O_CLOEXEC = 0o2000000;
/** fcntl commands and the fd flag. */
export const F_GETFD = 1;
export const F_SETFD = 2;
export const F_GETFL = 3;
export const FD_CLOEXEC = 1;

/** What an fd can refer to (the struct file's private object plus its f_op->release). */
export interface FileObject {
  /** Short type name for messages ("sync_file", "sw_sync", "drm_syncobj"). */
  readonly kind: string;
  /** Last fd referring to the open file was closed. */
  release(): void;
}

// struct file: the open file shared by dup'd, forked and passed fds.
interface OpenFile {
  obj: FileObject;
  refs: number;
  /** File status flags: the access mode it was opened with (F_GETFL). */
  flags: number;
}

const inFlight = new Map<number, OpenFile>();
let nextToken = 1;

/**
 * A process's fd table. Lookups throw EBADF for an fd that is not open and EINVAL for an fd of
 * the wrong kind, naming the caller. New fds take the lowest free number from 3 (0-2 are stdio).
 */
export class FdTable {
  readonly name: string;
  private readonly fds = new Map<number, OpenFile>();
  /** FD_CLOEXEC per fd (absent: 0). */
  private readonly fdFlags = new Map<number, number>();

  constructor(name = 'host') {
    this.name = name;
  }

  /**
   * Open a new file for `obj` and return its fd. `flags`: the access mode (O_RDONLY, O_WRONLY,
   * O_RDWR) and O_CLOEXEC; default O_RDWR. Throws EINVAL for anything else.
   */
  install(obj: FileObject, flags: number = O_RDWR): number {
    if (!obj || typeof obj.release !== 'function')
      throw err('EINVAL', `fdInstall(${this.name}): obj is not a file object`);
    if (!Number.isInteger(flags) || (flags & ~(O_ACCMODE | O_CLOEXEC)) !== 0)
      throw err(
        'EINVAL',
        `fdInstall(${this.name}): flags 0o${Number(flags).toString(8)}: only an access mode and O_CLOEXEC`,
      );
    return this.installFile(
      { obj, refs: 0, flags: flags & O_ACCMODE },
      (flags & O_CLOEXEC) !== 0 ? FD_CLOEXEC : 0,
    );
  }

  private installFile(file: OpenFile, fdFlags = 0): number {
    let fd = 3;
    while (this.fds.has(fd)) fd++;
    file.refs++;
    this.fds.set(fd, file);
    if (fdFlags !== 0) this.fdFlags.set(fd, fdFlags);
    return fd;
  }

  /**
   * fcntl(2), the flag commands: F_GETFD (FD_CLOEXEC or 0), F_SETFD (`arg`: FD_CLOEXEC or 0),
   * F_GETFL (the access mode). Throws EBADF, or EINVAL naming cmd or arg.
   */
  fcntl(fd: number, cmd: number, arg = 0): number {
    const file = this.file(fd, 'fcntl');
    if (cmd === F_GETFD) return this.fdFlags.get(fd) ?? 0;
    if (cmd === F_GETFL) return file.flags;
    if (cmd === F_SETFD) {
      if (arg !== 0 && arg !== FD_CLOEXEC)
        throw err('EINVAL', `fcntl: F_SETFD arg ${arg} is not FD_CLOEXEC or 0`);
      if (arg === 0) this.fdFlags.delete(fd);
      else this.fdFlags.set(fd, arg);
      return 0;
    }
    throw err('EINVAL', `fcntl: cmd ${cmd} is not F_GETFD, F_SETFD or F_GETFL`);
  }

  /** execve(2)'s part: close every fd with FD_CLOEXEC. */
  exec(): void {
    for (const [fd, f] of [...this.fdFlags]) if ((f & FD_CLOEXEC) !== 0) this.close(fd);
  }

  private file(fd: number, who: string): OpenFile {
    const file = Number.isInteger(fd) ? this.fds.get(fd) : undefined;
    if (!file) throw err('EBADF', `${who}: fd ${fd} is not open in ${this.name}`);
    return file;
  }

  /** The object behind `fd`. Throws EBADF. */
  get(fd: number, who = 'fdget'): FileObject {
    return this.file(fd, who).obj;
  }

  /** The object behind `fd` if it is a `cls`. Throws EBADF, or EINVAL for another kind. */
  getAs<T extends FileObject>(fd: number, cls: abstract new (...args: never[]) => T, who: string): T {
    const obj = this.get(fd, who);
    if (!(obj instanceof cls)) throw err('EINVAL', `${who}: fd ${fd} is a ${obj.kind}, not a ${cls.name}`);
    return obj;
  }

  /** close(2). Throws EBADF. The file is released when its last fd goes. */
  close(fd: number): void {
    const file = this.file(fd, 'close');
    this.fds.delete(fd);
    this.fdFlags.delete(fd);
    putFile(file);
  }

  /** dup(2): a second fd for the same open file (without FD_CLOEXEC). */
  dup(fd: number): number {
    return this.installFile(this.file(fd, 'dup'));
  }

  /** fork(2): a child table with the same fds referring to the same open files. */
  fork(name = `${this.name}-child`): FdTable {
    const child = new FdTable(name);
    for (const [fd, file] of this.fds) {
      file.refs++;
      child.fds.set(fd, file);
    }
    for (const [fd, f] of this.fdFlags) child.fdFlags.set(fd, f);
    return child;
  }

  /** Process exit: close every fd. */
  closeAll(): void {
    for (const fd of [...this.fds.keys()]) this.close(fd);
  }

  /**
   * SCM_RIGHTS send: a token (a plain number, safe to postMessage) that holds a reference to
   * the open file until receiveFd() installs it in another table.
   */
  sendFd(fd: number): number {
    const file = this.file(fd, 'sendFd');
    file.refs++;
    const token = nextToken++;
    inFlight.set(token, file);
    return token;
  }

  /** SCM_RIGHTS receive: install the file a token stands for. Throws EINVAL for a stale token. */
  receiveFd(token: number): number {
    const file = inFlight.get(token);
    if (!file) throw err('EINVAL', `receiveFd: token ${token} is not in flight`);
    inFlight.delete(token);
    const fd = this.installFile(file);
    file.refs--; // the in-flight reference became the fd's
    return fd;
  }

  /** Number of open fds. */
  get size(): number {
    return this.fds.size;
  }
}

function putFile(file: OpenFile): void {
  if (--file.refs === 0) file.obj.release();
}
