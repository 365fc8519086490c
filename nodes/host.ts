/**
 * Boot one emulated host: its kernel (memory, IOMMU, heaps) and the processes userspace runs.
 * Later issues boot it from a topology slice and spawn device workers here.
 */
import { HostKernel, type HostKernelOptions } from './kernel/kernel.ts';
import { Process, processExit } from './uapi/process.ts';

export interface Host {
  readonly kernel: HostKernel;
  /** Start a userspace process on this host. */
  spawn(name: string): Process;
  /** Exit every process (closing its fds and importers), then stop the kernel. Idempotent. */
  shutdown(): Promise<void>;
}

export function bootHost(opts: HostKernelOptions = {}): Host {
  const kernel = new HostKernel(opts);
  const procs: Process[] = [];
  let down = false;
  return {
    kernel,
    spawn(name) {
      const p = new Process(kernel, name);
      procs.push(p);
      return p;
    },
    async shutdown() {
      if (down) return;
      down = true;
      for (const p of procs) await processExit(p);
      kernel.close();
    },
  };
}
