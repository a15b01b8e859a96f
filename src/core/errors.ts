// Typed errors with stable codes. Edges (FUSE, CLI, wire) map them to errno,
// exit codes and messages; core never exits.

/** POSIX errno names the filesystem returns, with their Linux numbers. */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  EROFS: 30,
  EMLINK: 31,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  ENOTSUP: 95,
  ECONNREFUSED: 111,
  ETIMEDOUT: 110,
  ECONNRESET: 104,
} as const;

export type ErrnoName = keyof typeof ERRNO;

/**
 * Errnos that are an ordinary answer about the tree (a lookup that misses, a
 * name that exists...), thrown on every such call: their FsError captures no
 * stack trace (its cost showed in profiles; the errno says everything).
 */
const ANSWER_ERRNOS: ReadonlySet<string> = new Set(['ENOENT', 'EEXIST', 'ENOTDIR', 'EISDIR', 'ENOTEMPTY']);

/** A filesystem operation failed with a POSIX error. */
export class FsError extends Error {
  readonly code: ErrnoName;
  constructor(code: ErrnoName, message: string) {
    if (ANSWER_ERRNOS.has(code)) {
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 0;
      super(`${code}: ${message}`);
      Error.stackTraceLimit = limit;
    } else {
      super(`${code}: ${message}`);
    }
    this.name = 'FsError';
    this.code = code;
  }
  get errno(): number {
    return ERRNO[this.code];
  }
}

/** A disk driver operation failed. */
export class DiskError extends Error {
  readonly code: string;
  readonly path: string;
  constructor(code: string, path: string, message?: string) {
    super(`${code}: ${message ?? 'disk operation failed'} (${path})`);
    this.name = 'DiskError';
    this.code = code;
    this.path = path;
  }
}

/** A network driver operation failed. */
export class NetError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(`${code}: ${message}`);
    this.name = 'NetError';
    this.code = code;
  }
}

/** lessfs.cfg or environment held something invalid. */
export class ConfigError extends Error {
  readonly code = 'ECONFIG';
  readonly key: string | undefined;
  constructor(message: string, key?: string) {
    super(message);
    this.name = 'ConfigError';
    this.key = key;
  }
}

/** The on-disk store does not match what was asked for, or is damaged. */
export class FormatError extends Error {
  readonly code: 'ENOTFORMATTED' | 'EFORMAT' | 'EBLKSIZE' | 'EVERSION' | 'EEXIST' | 'ECORRUPT' | 'ELOCKED';
  constructor(code: FormatError['code'], message: string) {
    super(message);
    this.name = 'FormatError';
    this.code = code;
  }
}

/** An internal invariant was violated: a bug, never bad input. */
export class AssertionError extends Error {
  readonly code = 'EASSERT';
  constructor(message: string) {
    super(`assertion failed: ${message}`);
    this.name = 'AssertionError';
  }
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}

export function errorCode(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return undefined;
}
