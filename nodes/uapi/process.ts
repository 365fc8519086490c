/**
 * A userspace process on an emulated host: its fd table and drm_syncobj handles. Every uapi call
 * takes the process first, as a syscall implicitly takes `current`.
 */
import { err } from '../../common/errno.ts';
import { DrmSyncobjTable } from '../kernel/dma-buf/syncobj.ts';
import type { TestImporter } from '../kernel/dma-buf/test-importer.ts';
import { FdTable } from '../kernel/fs/file.ts';
import type { HostKernel } from '../kernel/kernel.ts';
import { runInTask } from '../kernel/locking/task.ts';

let nextPid = 100;

export class Process {
  readonly pid = nextPid++;
  readonly name: string;
  readonly kernel: HostKernel;
  readonly fdt: FdTable;
  readonly syncobjs: DrmSyncobjTable;
  /** Test-importer instances this process opened (id -> importer). */
  readonly importers = new Map<number, TestImporter>();
  exited = false;
  /** Cleanups drivers registered for this process (their per-process state), run at exit. */
  private readonly exitHooks: Array<() => void | Promise<void>> = [];

  /**
   * Register `fn` to run at process exit, like a driver's release of its open files. Hooks run
   * in reverse order of registration, before the fd table is closed. Called by: uapi modules,
   * once per process, when they first create state for it.
   */
  atExit(fn: () => void | Promise<void>): void {
    this.exitHooks.push(fn);
  }

  /** @internal processExit() takes the hooks. */
  _takeExitHooks(): Array<() => void | Promise<void>> {
    return this.exitHooks.splice(0).reverse();
  }

  constructor(kernel: HostKernel, name: string) {
    this.kernel = kernel;
    this.name = name;
    this.fdt = new FdTable(`${name}[${this.pid}]`);
    this.syncobjs = new DrmSyncobjTable(this.fdt);
  }

  toString(): string {
    return `${this.name}[${this.pid}]`;
  }
}

/**
 * Run one syscall: checks the process is alive, runs `fn` as its own kernel task (so the locks it
 * takes are owned by this call). Errors are EmuErrors with errno codes.
 */
export function syscall<T>(proc: Process, name: string, fn: () => T): T {
  if (!(proc instanceof Process)) throw err('EINVAL', `${name}: proc is not a process`);
  if (proc.exited) throw err('ESRCH', `${name}: process ${proc} has exited`);
  return runInTask(`${proc}:${name}`, fn);
}

/** Process exit: close test importers, then every fd (last closes release their objects). */
export async function processExit(proc: Process): Promise<void> {
  if (!(proc instanceof Process)) throw err('EINVAL', 'processExit: proc is not a process');
  if (proc.exited) return;
  for (const hook of proc._takeExitHooks()) await runInTask(`${proc}:exit`, hook);
  for (const imp of proc.importers.values()) await runInTask(`${proc}:exit`, () => imp.close());
  proc.importers.clear();
  proc.fdt.closeAll();
  proc.exited = true;
}

/**
 * fcntl(2), the flag commands (F_GETFD, F_SETFD, F_GETFL: kernel/fs/file.ts). Throws EBADF,
 * EINVAL naming cmd or arg, ESRCH after exit.
 */
export function fcntl(proc: Process, fd: number, cmd: number, arg = 0): number {
  return syscall(proc, 'fcntl', () => proc.fdt.fcntl(fd, cmd, arg));
}

/**
 * What execve(2) does to the fd table: every fd with FD_CLOEXEC is closed (the last close of a
 * file releases it), the others stay. Throws ESRCH after exit.
 */
export function processExec(proc: Process): void {
  syscall(proc, 'execve', () => proc.fdt.exec());
}

export {
  F_GETFD,
  F_GETFL,
  F_SETFD,
  FD_CLOEXEC,
  O_ACCMODE,
  O_CLOEXEC,
  O_RDONLY,
  O_RDWR,
  O_WRONLY,
} from '../kernel/fs/file.ts';
