/**
 * nats-server launcher: the embedded default broker. Starts the distribution's nats-server on a
 * kernel-chosen loopback port (`-p -1`), learns the port from its ports file (as nats.js's test
 * launcher does), and stops it on close(). A run never leaves a server behind: the child is
 * killed on close() and on process exit.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { err } from '../common/errno.ts';

/** Where Debian and others put the binary; /usr/sbin is often not on a user's PATH. */
const EXTRA_DIRS = ['/usr/sbin', '/usr/local/sbin', '/usr/local/bin', '/usr/bin'];

/** Absolute path of nats-server (env NATS_SERVER, then PATH, then the usual sbin dirs), or null. */
export function findNatsServer(): string | null {
  const forced = process.env.NATS_SERVER;
  if (forced) return existsSync(forced) ? forced : null;
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...EXTRA_DIRS];
  for (const d of dirs) {
    const p = join(d, 'nats-server');
    if (existsSync(p)) return p;
  }
  return null;
}

export interface NatsServerHandle {
  /** nats://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  /** Stop the server and remove its temporary folder. Idempotent; resolves when it exited. */
  close(): Promise<void>;
}

export interface LaunchOptions {
  /** How long to wait for the ports file (ms). */
  startTimeoutMs?: number;
  /** Extra command-line arguments (e.g. ['-js'] for JetStream). */
  args?: string[];
}

/**
 * Start nats-server on 127.0.0.1 with a free port.
 * Throws: ENOENT if nats-server is not installed (the message says how to install it),
 * ETIMEDOUT if it does not report its port in time, EIO if it exits early (with its output).
 */
export async function launchNatsServer(opts: LaunchOptions = {}): Promise<NatsServerHandle> {
  const bin = findNatsServer();
  if (!bin) throw err('ENOENT', 'nats-server not found on PATH or in /usr/sbin: apt-get install nats-server');
  const dir = mkdtempSync(join(tmpdir(), 'p2pemu-nats-'));
  const child = spawn(bin, ['-a', '127.0.0.1', '-p', '-1', '--ports_file_dir', dir, ...(opts.args ?? [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d) => (output += String(d)));
  child.stderr?.on('data', (d) => (output += String(d)));
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  try {
    const port = await waitForPort(child, dir, opts.startTimeoutMs ?? 10_000, () => output);
    return handle(child, dir, port, killOnExit);
  } catch (e) {
    child.kill('SIGKILL');
    process.removeListener('exit', killOnExit);
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

function waitForPort(
  child: ChildProcess,
  dir: string,
  timeoutMs: number,
  output: () => string,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    let timer: NodeJS.Timeout;
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      reject(
        err('EIO', `nats-server exited (code ${code}) before listening: ${output().trim().slice(-400)}`),
      );
    };
    child.once('exit', onExit);
    // The ports file appears once the listener is up; poll its folder (no event for it).
    const poll = () => {
      const f = readdirSync(dir).find((n) => n.endsWith('.ports'));
      if (f) {
        const ports = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { nats?: string[] };
        const m = /:(\d+)$/.exec(ports.nats?.[0] ?? '');
        if (m) {
          child.removeListener('exit', onExit);
          resolve(Number(m[1]));
          return;
        }
      }
      if (Date.now() > deadline) {
        child.removeListener('exit', onExit);
        reject(err('ETIMEDOUT', `nats-server did not report a port within ${timeoutMs} ms`));
        return;
      }
      timer = setTimeout(poll, 20);
    };
    poll();
  });
}

function handle(child: ChildProcess, dir: string, port: number, killOnExit: () => void): NatsServerHandle {
  let closing: Promise<void> | null = null;
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    pid: child.pid ?? -1,
    close() {
      closing ??= new Promise<void>((resolve) => {
        const done = () => {
          process.removeListener('exit', killOnExit);
          rmSync(dir, { recursive: true, force: true });
          resolve();
        };
        // 'close', not 'exit': the process handle and its stdio pipes are released only then.
        if ((child.exitCode !== null || child.signalCode !== null) && child.stdout?.closed !== false)
          return done();
        child.once('close', done);
        child.kill('SIGTERM');
        // A server that ignores SIGTERM is killed: close() must not hang.
        setTimeout(() => child.kill('SIGKILL'), 3_000).unref();
      });
      return closing;
    },
  };
}
