// Mounting with fuse-native: the option string (fuse-native maps only a fixed
// set of options, so big_writes/max_write/use_ino need our own builder), stale
// mount detection and unmount.

import { execFile } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import Fuse, { type FuseOps } from 'fuse-native';
import type { AttrHandoff, ReadHandoff } from './ops.ts';

const run = promisify(execFile);

export interface MountOptions {
  blockSizeBytes: number;
  /** Seconds the kernel may cache attributes and names (0 on a slave, whose tree changes underneath). */
  attrTimeoutS: number;
  entryTimeoutS: number;
  /** Extra -o options from the command line. */
  extra: string[];
  fsname: string;
}

/** The -o list lessfs mounts with (lessfs's defaults plus ours). */
export function mountOptionList(o: MountOptions): string[] {
  const list = [
    `fsname=${o.fsname}`,
    'subtype=lessfs',
    'big_writes',
    `max_read=${o.blockSizeBytes}`,
    `max_write=${o.blockSizeBytes}`,
    'use_ino',
    'default_permissions',
    'allow_other',
    `attr_timeout=${o.attrTimeoutS}`,
    `entry_timeout=${o.entryTimeoutS}`,
    `negative_timeout=${o.entryTimeoutS}`,
  ];
  for (const opt of o.extra) {
    const key = opt.split('=')[0];
    const i = list.findIndex((x) => x.split('=')[0] === key);
    if (i >= 0) list[i] = opt;
    else list.push(opt);
  }
  return list;
}

/**
 * The patched addon's table of listed attributes (scripts/build-fuse-native.mjs,
 * sixth patch set), or undefined with an addon built without it.
 */
export function fuseAttrHandoff(): AttrHandoff | undefined {
  return (Fuse as unknown as { attrHandoff?: AttrHandoff }).attrHandoff;
}

/**
 * The patched addon's reads from the data file (scripts/build-fuse-native.mjs,
 * seventh patch set), or undefined with an addon built without it.
 */
export function fuseReadHandoff(): ReadHandoff | undefined {
  return (Fuse as unknown as { readHandoff?: ReadHandoff }).readHandoff;
}

/** The mounted Fuse (one per process); its `context` is set by our fuse-native build. */
let activeFuse: Fuse | undefined;

/**
 * uid/gid of the process whose request is being handled: fuse-native (patched
 * by scripts/build-fuse-native.mjs) sets `context` just before each handler
 * call. Without the patch there is none, and new files belong to root.
 */
export function fuseCaller(): { uid: number; gid: number } {
  const c = (activeFuse as { context?: { uid: number; gid: number } } | undefined)?.context;
  return c ? { uid: c.uid, gid: c.gid } : { uid: 0, gid: 0 };
}

/**
 * The request being handled: its sequence number (what an interrupt names)
 * and whether the kernel has already interrupted it. Valid synchronously at
 * handler entry; undefined without the patched addon (no interrupts then).
 */
export function fuseRequest(): FuseRequest | undefined {
  // The patched addon's context object is the request (no copy per operation).
  const c = (activeFuse as { context?: Partial<FuseRequest> } | undefined)?.context;
  return c?.seq === undefined ? undefined : (c as FuseRequest);
}

export interface FuseRequest {
  seq: number;
  interrupted: boolean;
  /** The caller's thread id (0: not known). */
  pid: number;
}

class LessfsFuse extends Fuse {
  constructor(
    mnt: string,
    ops: FuseOps,
    private readonly optionList: string[],
    private readonly interrupted: ((seq: number) => void) | undefined,
  ) {
    // No per-operation timeout: a write waiting for cache room or a frozen
    // filesystem may wait long, and every handler always answers.
    super(mnt, ops, { timeout: false });
  }
  protected override _fuseOptions(): string {
    return `-o${this.optionList.join(',')}`;
  }
  /** Called by the patched addon: the kernel interrupted request seq (its caller got a signal). */
  onInterrupt(seq: number): void {
    this.interrupted?.(seq);
  }
}

/** Mount points in /proc/mounts, decoded. */
export function mountedAt(mnt: string): { fstype: string } | undefined {
  const target = resolve(mnt);
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f.length < 3) continue;
    const point = f[1].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (point === target) return { fstype: f[2] };
  }
  return undefined;
}

/**
 * A FUSE mount left by a killed process answers ENOTCONN. Clear it (fusermount
 * -uz) and say so; refuse a mount point that is in use by a live filesystem.
 */
export async function clearStaleMount(mnt: string, log: (msg: string) => void): Promise<void> {
  const m = mountedAt(mnt);
  if (!m) return;
  let stale = false;
  try {
    // A name nobody has looked up: the kernel cannot answer from its caches
    // (the mount root's attributes may be cached for attr_timeout), so this
    // reaches the daemon, or fails with ENOTCONN if it is gone.
    statSync(`${mnt}/.lessfs-stale-probe-${process.pid}-${Date.now()}`);
  } catch (err) {
    const code = (err as { code?: string }).code;
    stale = code === 'ENOTCONN' || code === 'ECONNABORTED' || code === 'EIO';
  }
  if (!stale) throw new Error(`mount point ${mnt} is already in use (a ${m.fstype} filesystem is mounted there)`);
  log(`mount point ${mnt} holds a stale FUSE mount (its process died): clearing it with fusermount -uz`);
  await run('fusermount', ['-uz', mnt]);
}

export interface Mounted {
  readonly mnt: string;
  unmount(): Promise<void>;
}

/**
 * fuse-native failed the mount. Its native side has then already registered a
 * libuv handle that keeps the event loop alive for good, so a process that
 * gets this error must exit by itself (lessfs does).
 */
export class MountRefusedError extends Error {}

/** `onInterrupt`: the kernel interrupted a request still being handled (see fuseRequest). */
export async function mountFuse(mnt: string, ops: FuseOps, options: MountOptions, onInterrupt?: (seq: number) => void): Promise<Mounted> {
  const st = statSync(mnt, { throwIfNoEntry: false });
  if (!st) throw new Error(`mount point ${mnt} does not exist`);
  if (!st.isDirectory()) throw new Error(`mount point ${mnt} is not a directory`);
  const fuse = new LessfsFuse(mnt, ops, mountOptionList(options), onInterrupt);
  activeFuse = fuse;
  try {
    await new Promise<void>((resolveMount, reject) => fuse.mount((err) => (err ? reject(err) : resolveMount())));
  } catch (err) {
    // libfuse mounts first and parses the rest of the -o list after (fuse_new):
    // a refused option leaves a kernel mount with no daemon behind it. Clear it.
    const left = mountedAt(mnt) !== undefined;
    if (left) await run('fusermount', ['-uz', mnt]);
    throw new MountRefusedError(
      `FUSE refused to mount ${mnt} (${(err as Error).message})${left ? ', the half-made mount was cleared' : ''}: ` +
        `libfuse's reason is printed just above, e.g. an unknown or malformed -o option`,
    );
  }
  let unmounted = false;
  return {
    mnt: fuse.mnt,
    unmount: async () => {
      if (unmounted) return;
      unmounted = true;
      if (!mountedAt(mnt)) return;
      await new Promise<void>((res, rej) => fuse.unmount((err) => (err ? rej(err) : res())));
    },
  };
}
