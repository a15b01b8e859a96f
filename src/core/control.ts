// Control files under /.lessfs/, served virtually (never stored as data):
//   lessfs_stats                    INODE SIZE COMPRESSED_SIZE RATIO FILENAME
//   replication/enabled             0/1; write 0 stops, 1 starts replication
//   replication/backlog             1 while the slave lags, else 0
//   replication/rotate_replog       0; write 1 on a batch master rotates the log
//   replication/sequence            current log sequence number
//   replication/status              role, connection, txn ids, backlog, lag, last error
//   locks/                          one entry per inode write-locked by a truncation
//
// Content is generated when the kernel asks for attributes and reused by the
// open that follows, so the size the kernel caches always matches what is read.
// lessfs_stats walks every file: it is generated in slices of a few
// milliseconds (ControlOptions.pause between them), so the mount goes on
// serving other requests meanwhile, and requests that come while it is being
// generated share that generation. Before, one read of it with 240,000 files
// held every other operation of the mount for 18 s.

import { concat, utf8 } from './bytes.ts';
import { FsError } from './errors.ts';
import type { FsEngine } from './fs/engine.ts';
import { isDir, isReg, ROOT_INO, S_IFDIR, S_IFREG } from './fs/schema.ts';
import type { Stat } from './fs/types.ts';

export const CONTROL_DIR = '/.lessfs';
export const CONTROL_NAME = '.lessfs';

/** What the control files show of replication, and what writing them does. */
export interface ReplicationControl {
  readonly role: 'off' | 'master' | 'slave';
  enabled(): boolean;
  /** Start (true) or stop (false) replication without unmounting. */
  setEnabled(on: boolean): Promise<void>;
  backlog(): boolean;
  sequence(): number;
  /** Rotate the log now; undefined when this node cannot (not a batch master). */
  readonly rotate: (() => Promise<void>) | undefined;
  status(): string;
}

/** Replication is not configured: everything reads as off, writes are refused. */
export const REPLICATION_OFF: ReplicationControl = {
  role: 'off',
  enabled: () => false,
  setEnabled: () => Promise.reject(new FsError('EPERM', 'replication is not configured (REPLICATION=off)')),
  backlog: () => false,
  sequence: () => 0,
  rotate: undefined,
  status: () => 'role: off\nreplication is not configured (REPLICATION=off)\n',
};

type Node =
  | { kind: 'dir'; ino: number; children: () => string[] }
  | { kind: 'file'; ino: number; writable: boolean; content: () => string | Promise<Uint8Array>; write?: (text: string) => Promise<void> };

/** Virtual inode numbers: the top of the 32-bit range FUSE allows. */
const VINO_BASE = 0xffffff00;

export interface ControlOptions {
  /** How long generated content stays the content an open reads (> attr timeout). */
  contentTtlMs: number;
  nowMs: () => number;
  /** Let other work run (a macrotask: setImmediate on a real mount); a long generation calls it every SLICE_MS. */
  pause?: () => Promise<void>;
}

/** Work done between pauses while lessfs_stats is generated. */
const SLICE_MS = 10;
/** lessfs_stats is encoded in pieces of about this many bytes (no giant string of every line). */
const STATS_PIECE_BYTES = 64 * 1024;

export class ControlFiles {
  private readonly nodes = new Map<string, Node>();
  private readonly generated = new Map<string, { atMs: number; bytes: Uint8Array }>();
  /** Generations under way (lessfs_stats): later requests share them. */
  private readonly generating = new Map<string, Promise<Uint8Array>>();
  private readonly mountMs: number;

  constructor(
    private readonly engine: FsEngine,
    private readonly replication: ReplicationControl,
    private readonly options: ControlOptions,
  ) {
    this.mountMs = options.nowMs();
    let n = 0;
    const dir = (path: string, children: () => string[]): void => {
      this.nodes.set(path, { kind: 'dir', ino: VINO_BASE + n++, children });
    };
    const file = (path: string, content: () => string | Promise<Uint8Array>, write?: (text: string) => Promise<void>): void => {
      this.nodes.set(path, { kind: 'file', ino: VINO_BASE + n++, writable: write !== undefined, content, write });
    };
    dir(CONTROL_DIR, () => ['lessfs_stats', 'locks', 'replication']);
    dir(`${CONTROL_DIR}/replication`, () => ['backlog', 'enabled', 'rotate_replog', 'sequence', 'status']);
    dir(`${CONTROL_DIR}/locks`, () => engine.lockedInodes().map(String));
    file(`${CONTROL_DIR}/lessfs_stats`, () => this.stats());
    file(`${CONTROL_DIR}/replication/enabled`, () => (replication.enabled() ? '1\n' : '0\n'), (t) => replication.setEnabled(parseFlag(t, 'enabled')));
    file(`${CONTROL_DIR}/replication/backlog`, () => (replication.backlog() ? '1\n' : '0\n'));
    file(`${CONTROL_DIR}/replication/sequence`, () => `${replication.sequence()}\n`);
    file(`${CONTROL_DIR}/replication/status`, () => replication.status());
    file(`${CONTROL_DIR}/replication/rotate_replog`, () => '0\n', async (t) => {
      if (!parseFlag(t, 'rotate_replog')) return;
      if (!replication.rotate) throw new FsError('EPERM', 'rotate_replog: only a batch-mode replication master rotates its log');
      await replication.rotate();
    });
  }

  static isControl(path: string): boolean {
    // Called several times per FUSE operation: no string built per call.
    return path.startsWith(CONTROL_DIR) && (path.length === CONTROL_DIR.length || path.charCodeAt(CONTROL_DIR.length) === 0x2f);
  }

  private node(path: string): Node {
    const n = this.nodes.get(path);
    if (n) return n;
    const lock = /^\/\.lessfs\/locks\/(\d+)$/.exec(path);
    if (lock && this.engine.lockedInodes().includes(Number(lock[1]))) {
      return { kind: 'file', ino: VINO_BASE + 0xf0, writable: false, content: () => '' };
    }
    throw new FsError('ENOENT', `no control file ${path}`);
  }

  private content(path: string, regenerate: boolean): Uint8Array | Promise<Uint8Array> {
    const n = this.node(path);
    if (n.kind !== 'file') throw new FsError('EISDIR', `${path} is a directory`);
    const cached = this.generated.get(path);
    if (!regenerate && cached && this.options.nowMs() - cached.atMs <= this.options.contentTtlMs) return cached.bytes;
    const under = this.generating.get(path);
    if (under) return under;
    const made = n.content();
    if (typeof made === 'string') return this.keep(path, utf8(made));
    const p = made.then(
      (bytes) => {
        this.generating.delete(path);
        return this.keep(path, bytes);
      },
      (err: unknown) => {
        this.generating.delete(path);
        throw err;
      },
    );
    this.generating.set(path, p);
    return p;
  }

  private keep(path: string, bytes: Uint8Array): Uint8Array {
    this.generated.set(path, { atMs: this.options.nowMs(), bytes });
    return bytes;
  }

  getattr(path: string): Stat | Promise<Stat> {
    const n = this.node(path);
    const t = this.mountMs;
    const base = { ino: n.ino, uid: 0, gid: 0, atimeMs: t, mtimeMs: t, ctimeMs: t, rdev: 0, blockSizeBytes: 4096 };
    if (n.kind === 'dir') {
      return { ...base, mode: S_IFDIR | 0o755, nlink: 2, sizeBytes: 0, blocks512: 0 };
    }
    const stat = (size: number): Stat => ({ ...base, mode: S_IFREG | (n.writable ? 0o644 : 0o444), nlink: 1, sizeBytes: size, blocks512: Math.ceil(size / 512) });
    const bytes = this.content(path, true);
    return bytes instanceof Uint8Array ? stat(bytes.length) : bytes.then((b) => stat(b.length));
  }

  readdir(path: string): string[] {
    const n = this.node(path);
    if (n.kind !== 'dir') throw new FsError('ENOTDIR', `${path} is not a directory`);
    return n.children();
  }

  /** Content as of open: what the following reads return. */
  open(path: string, writing: boolean): Uint8Array | Promise<Uint8Array> {
    const n = this.node(path);
    if (n.kind !== 'file') throw new FsError('EISDIR', `${path} is a directory`);
    if (writing && !n.writable) throw new FsError('EPERM', `${path} is read-only`);
    return this.content(path, false);
  }

  async write(path: string, data: Uint8Array): Promise<void> {
    const n = this.node(path);
    if (n.kind !== 'file' || !n.write) throw new FsError('EPERM', `${path} cannot be written`);
    await n.write(new TextDecoder().decode(data));
    // A write changes what other files show (rotate_replog: sequence; enabled: status).
    this.generated.clear();
  }

  /** truncate(2) of a control file: allowed (a no-op) where writing is. */
  truncate(path: string): void {
    const n = this.node(path);
    if (n.kind !== 'file' || !n.writable) throw new FsError('EPERM', `${path} cannot be truncated`);
  }

  /**
   * lessfs_stats: one line per regular file (a file with several names once).
   * Generated in slices (see the head of this file); a file or directory
   * removed meanwhile is left out.
   */
  private async stats(): Promise<Uint8Array> {
    const pieces: Uint8Array[] = [];
    let lines: string[] = [`${'INODE'.padStart(10)} ${'SIZE'.padStart(16)} ${'COMPRESSED_SIZE'.padStart(16)} ${'RATIO'.padStart(8)} FILENAME`];
    let lineBytes = lines[0].length;
    const flush = (): void => {
      pieces.push(utf8(`${lines.join('\n')}\n`));
      lines = [];
      lineBytes = 0;
    };
    const stack: Array<{ ino: number; path: string }> = [{ ino: ROOT_INO, path: '' }];
    // Only inodes with more than one name can be met twice.
    const seen = new Set<number>();
    let sliceStart = this.options.nowMs();
    const pause = this.options.pause;
    let sinceCheck = 0;
    while (stack.length > 0) {
      const { ino, path } = stack.pop() as { ino: number; path: string };
      const entries = this.gone(() => this.engine.readdir(ino));
      for (const e of entries ?? []) {
        if (pause && ++sinceCheck >= 64) {
          sinceCheck = 0;
          if (this.options.nowMs() - sliceStart >= SLICE_MS) {
            await pause();
            sliceStart = this.options.nowMs();
          }
        }
        const p = `${path}/${e.name}`;
        if (isDir(e.type)) {
          stack.push({ ino: e.ino, path: p });
          continue;
        }
        if (!isReg(e.type) || seen.has(e.ino)) continue;
        const st = this.gone(() => this.engine.getattr(e.ino));
        if (!st) continue;
        if (st.nlink > 1) seen.add(e.ino);
        const stored = this.engine.fileStoredBytes(e.ino);
        const ratio = stored === 0 ? (st.sizeBytes === 0 ? 1 : Infinity) : st.sizeBytes / stored;
        const r = Number.isFinite(ratio) ? ratio.toFixed(2) : 'inf';
        const line = `${String(e.ino).padStart(10)} ${String(st.sizeBytes).padStart(16)} ${String(stored).padStart(16)} ${r.padStart(8)} ${p}`;
        lines.push(line);
        lineBytes += line.length + 1;
        if (lineBytes >= STATS_PIECE_BYTES) flush();
      }
    }
    flush();
    return concat(...pieces);
  }

  /** fn's result, or undefined when what it reads was removed while lessfs_stats was generated. */
  private gone<T>(fn: () => T): T | undefined {
    try {
      return fn();
    } catch (err) {
      if (err instanceof FsError && (err.code === 'ENOENT' || err.code === 'ENOTDIR')) return undefined;
      throw err;
    }
  }
}

function parseFlag(text: string, what: string): boolean {
  const t = text.trim();
  if (t === '1') return true;
  if (t === '0') return false;
  throw new FsError('EINVAL', `${what}: expected 0 or 1, got '${t.slice(0, 20)}'`);
}
