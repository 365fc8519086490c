/**
 * Files and fd tables: what fd-based uapi objects (dma-buf, sync_file, sw_sync timelines,
 * drm_syncobj files) live in. Files are reference counted like struct file: dup(), fork() and fd
 * passing share one open file, and its release() runs when the last fd referring to it closes.
 */
import { err } from '../../../common/errno.ts';

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

  constructor(name = 'host') {
    this.name = name;
  }

  /** Open a new file for `obj` and return its fd. */
  install(obj: FileObject): number {
    if (!obj || typeof obj.release !== 'function')
      throw err('EINVAL', `fdInstall(${this.name}): obj is not a file object`);
    return this.installFile({ obj, refs: 0 });
  }

  private installFile(file: OpenFile): number {
    let fd = 3;
    while (this.fds.has(fd)) fd++;
    file.refs++;
    this.fds.set(fd, file);
    return fd;
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
    putFile(file);
  }

  /** dup(2): a second fd for the same open file. */
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
