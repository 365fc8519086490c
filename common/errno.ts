/**
 * EmuError: the one error type of p2pemu. `code` is a Linux errno name so callers branch on the
 * same condition the kernel would report; the message names the argument or object at fault.
 *
 * Errors cross worker and process boundaries as plain objects (`toWire`/`fromWire`), because
 * class identity does not survive postMessage or JSON.
 */

/** errno names and their Linux values (x86-64). Only names p2pemu reports are listed. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  ERANGE: 34,
  EDEADLK: 35,
  ENOSYS: 38,
  ETIME: 62,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  ECONNRESET: 104,
  ETIMEDOUT: 110,
  EALREADY: 114,
  ECANCELED: 125,
  ERESTARTSYS: 512,
} as const;
export type ErrnoName = keyof typeof Errno;

const kEmuError = Symbol.for('p2pemu.EmuError');

/** Wire form of an EmuError: what crosses postMessage, NATS and the TCP wire. */
export interface EmuErrorWire {
  name: 'EmuError';
  code: ErrnoName;
  message: string;
  cause?: EmuErrorWire | { name: string; message: string };
}

export class EmuError extends Error {
  override name = 'EmuError';
  readonly code: ErrnoName;

  constructor(code: ErrnoName, message: string, options?: ErrorOptions) {
    super(`${code}: ${message}`, options);
    this.code = code;
    (this as unknown as Record<symbol, boolean>)[kEmuError] = true;
  }

  /** Negative errno, as the kernel returns it (-22 for EINVAL). */
  get errno(): number {
    return -Errno[this.code];
  }

  /** Survives two copies of the module in one process (vitest, workers). */
  static override [Symbol.hasInstance](obj: unknown): boolean {
    return typeof obj === 'object' && obj !== null && (obj as Record<symbol, unknown>)[kEmuError] === true;
  }

  toWire(): EmuErrorWire {
    const wire: EmuErrorWire = { name: 'EmuError', code: this.code, message: this.message };
    if (this.cause instanceof EmuError) wire.cause = this.cause.toWire();
    else if (this.cause instanceof Error) wire.cause = { name: this.cause.name, message: this.cause.message };
    return wire;
  }

  static fromWire(wire: EmuErrorWire): EmuError {
    const bare = wire.message.startsWith(`${wire.code}: `)
      ? wire.message.slice(wire.code.length + 2)
      : wire.message;
    let cause: Error | undefined;
    if (wire.cause && wire.cause.name === 'EmuError') cause = EmuError.fromWire(wire.cause as EmuErrorWire);
    else if (wire.cause) cause = Object.assign(new Error(wire.cause.message), { name: wire.cause.name });
    return new EmuError(wire.code, bare, cause ? { cause } : undefined);
  }
}

/** Shorthand used at every argument check: `throw err('EINVAL', 'dmaBufExport: exp_info.ops.release missing')`. */
export function err(code: ErrnoName, message: string, options?: ErrorOptions): EmuError {
  return new EmuError(code, message, options);
}

/** errno name for a negative (or positive) errno value, or undefined if p2pemu does not know it. */
export function errnoName(value: number): ErrnoName | undefined {
  const v = Math.abs(value);
  for (const [name, n] of Object.entries(Errno)) if (n === v) return name as ErrnoName;
  return undefined;
}

/** True for a negative errno known to p2pemu (what dma_fence_set_error accepts). */
export function isNegErrno(value: number): boolean {
  return Number.isInteger(value) && value < 0 && errnoName(value) !== undefined;
}
