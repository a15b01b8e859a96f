// Reading a FUSE trace (written by lessfs --trace; format in
// core/trace-format.ts) and turning it into the simulator's workload ops.
//
// parseTrace checks every line and throws a TraceError naming the line, the
// field and what was expected; a last line cut short (a killed mount) is
// dropped with a warning. convertTrace maps handles to paths and operations to
// workload Ops, running them on a reference model as it goes: the model says
// which path a handle's file has now (renames, hard links, unlinks) and which
// operations that succeeded when recorded fail here (the trace began on a
// filesystem that was not empty, or ops are missing). Operations with no
// simulator equivalent are counted as skipped, by reason.

import { S_IFMT, S_IFREG } from '../core/fs/schema.ts';
import {
  FINGERPRINT_RE,
  TRACE_FORMAT_VERSION,
  tracePieces,
  ZERO_FINGERPRINT,
  type TraceEntry,
  type TraceHeader,
  type TraceMarker,
  type TraceOpName,
} from '../core/trace-format.ts';
import { ModelFs, type ModelDir, type ModelNode } from './model.ts';
import { applyToModel, type Op } from './workload.ts';

/** A bad trace: the message names the file, line, field and what was expected. */
export class TraceError extends Error {
  readonly code = 'ETRACE';
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(message);
    this.name = 'TraceError';
  }
}

/** Largest trace read (a JavaScript string holds at most about 512 MiB). */
export const TRACE_CHARS_MAX = 256 * 1024 * 1024;

export interface ParsedTrace {
  name: string;
  header: TraceHeader;
  entries: Array<{ line: number; entry: TraceEntry }>;
  /** The end or stopped marker, if the trace has one. */
  marker: { line: number; marker: TraceMarker } | undefined;
  warnings: string[];
  /** Every line that parsed, header first (a failure capsule keeps them to replay the trace). */
  lines: string[];
}

// ---------------------------------------------------------------- fields

type FieldKind = 'path' | 'string' | 'uint' | 'int' | 'fh' | 'fingerprints';

/** Fields of each op: kind, and whether it may be absent. */
const OP_FIELDS: Record<TraceOpName, Record<string, { kind: FieldKind; optional?: true }>> = {
  create: { path: { kind: 'path' }, mode: { kind: 'uint' }, fh: { kind: 'fh', optional: true } },
  open: { path: { kind: 'path' }, flags: { kind: 'uint' }, fh: { kind: 'fh', optional: true } },
  release: { fh: { kind: 'fh' } },
  read: { fh: { kind: 'fh' }, off: { kind: 'uint' }, len: { kind: 'uint' } },
  write: { fh: { kind: 'fh' }, off: { kind: 'uint' }, len: { kind: 'uint' }, fp: { kind: 'fingerprints' } },
  ftruncate: { fh: { kind: 'fh' }, size: { kind: 'uint' } },
  fsync: { fh: { kind: 'fh', optional: true }, path: { kind: 'path', optional: true } },
  truncate: { path: { kind: 'path' }, size: { kind: 'uint' } },
  mknod: { path: { kind: 'path' }, mode: { kind: 'uint' } },
  mkdir: { path: { kind: 'path' }, mode: { kind: 'uint' } },
  symlink: { target: { kind: 'string' }, path: { kind: 'path' } },
  link: { path: { kind: 'path' }, to: { kind: 'path' } },
  rename: { path: { kind: 'path' }, to: { kind: 'path' } },
  chmod: { path: { kind: 'path' }, mode: { kind: 'uint' } },
  chown: { path: { kind: 'path' }, uid: { kind: 'int' }, gid: { kind: 'int' } },
  unlink: { path: { kind: 'path' } },
  rmdir: { path: { kind: 'path' } },
  readdir: { path: { kind: 'path' } },
  readlink: { path: { kind: 'path' } },
  fsyncdir: { path: { kind: 'path' } },
  utimens: { path: { kind: 'path' } },
};
const OP_NAMES = Object.keys(OP_FIELDS) as TraceOpName[];

const EXPECTED: Record<FieldKind, string> = {
  path: 'an absolute path (a string starting with /)',
  string: 'a string',
  uint: 'an integer >= 0',
  int: 'an integer',
  fh: 'a handle number (an integer >= 1)',
  fingerprints: 'an array of fingerprints (16 hex digits, or "0" for an all-zero piece), one per BLKSIZE-aligned piece',
};

const ERRNO_NAME_RE = /^(E[A-Z0-9]+|errno [0-9]+)$/;

function shown(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 60)}…` : s;
}

function fits(kind: FieldKind, v: unknown): boolean {
  switch (kind) {
    case 'path':
      return typeof v === 'string' && v.startsWith('/');
    case 'string':
      return typeof v === 'string';
    case 'uint':
      return Number.isSafeInteger(v) && (v as number) >= 0;
    case 'int':
      return Number.isSafeInteger(v);
    case 'fh':
      return Number.isSafeInteger(v) && (v as number) >= 1;
    case 'fingerprints':
      return Array.isArray(v) && v.every((f) => typeof f === 'string');
  }
}

// ---------------------------------------------------------------- parsing

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseHeader(v: unknown, err: (field: string, msg: string) => TraceError): TraceHeader {
  if (!isObject(v) || !('lessfs_trace' in v)) throw err('', `expected the trace header (an object with "lessfs_trace": ${TRACE_FORMAT_VERSION}), got ${shown(v)}`);
  if (v.lessfs_trace !== TRACE_FORMAT_VERSION) throw err('lessfs_trace', `expected ${TRACE_FORMAT_VERSION} (the trace version this lessfs-sim reads), got ${shown(v.lessfs_trace)}`);
  const bs = v.blksize;
  if (!Number.isSafeInteger(bs) || (bs as number) < 4096 || (bs as number) > 131072 || ((bs as number) & ((bs as number) - 1)) !== 0) {
    throw err('blksize', `expected a power of two between 4096 and 131072 (the recorded filesystem's BLKSIZE), got ${shown(bs)}`);
  }
  if (!fits('uint', v.root_entries)) throw err('root_entries', `expected ${EXPECTED.uint} (entries in / when recording started), got ${shown(v.root_entries)}`);
  if (typeof v.started !== 'string') throw err('started', `expected the start time as a string, got ${shown(v.started)}`);
  if (v.fingerprint !== 'hmac-sha256-64') throw err('fingerprint', `expected "hmac-sha256-64", got ${shown(v.fingerprint)}`);
  return v as unknown as TraceHeader;
}

function parseMarker(v: Record<string, unknown>, err: (field: string, msg: string) => TraceError): TraceMarker {
  if (v.event !== 'end' && v.event !== 'stopped') throw err('event', `expected "end" or "stopped", got ${shown(v.event)}`);
  if (!fits('uint', v.ops)) throw err('ops', `expected ${EXPECTED.uint} (operations recorded), got ${shown(v.ops)}`);
  if (v.reason !== undefined && typeof v.reason !== 'string') throw err('reason', `expected a string, got ${shown(v.reason)}`);
  return v as unknown as TraceMarker;
}

function parseEntry(v: Record<string, unknown>, blockSizeBytes: number, err: (field: string, msg: string) => TraceError): TraceEntry {
  if (typeof v.op !== 'string' || !(v.op in OP_FIELDS)) throw err('op', `expected one of ${OP_NAMES.join(', ')}, got ${shown(v.op)}`);
  const op = v.op as TraceOpName;
  if (v.r !== 0 && !(typeof v.r === 'string' && ERRNO_NAME_RE.test(v.r))) throw err('r', `expected 0 or an errno name such as "ENOENT", got ${shown(v.r)}`);
  for (const [name, spec] of Object.entries(OP_FIELDS[op])) {
    const value = v[name];
    if (value === undefined) {
      if (spec.optional) continue;
      throw err(name, `missing (a ${op} line has ${Object.keys(OP_FIELDS[op]).join(', ')}; expected ${EXPECTED[spec.kind]})`);
    }
    if (!fits(spec.kind, value)) throw err(name, `expected ${EXPECTED[spec.kind]}, got ${shown(value)}`);
  }
  if ((op === 'open' || op === 'create') && v.r === 0 && v.fh === undefined) throw err('fh', `missing (a successful ${op} returns a handle; expected ${EXPECTED.fh})`);
  if (op === 'fsync' && (v.fh === undefined) === (v.path === undefined)) throw err('fh', 'expected either fh or path on an fsync line, not both or neither');
  if (op === 'write') {
    const fp = v.fp as string[];
    const pieces = tracePieces(v.off as number, v.len as number, blockSizeBytes).length;
    if (fp.length !== pieces) {
      throw err('fp', `expected ${pieces} fingerprints (one per BLKSIZE-aligned piece of ${v.len} bytes at offset ${v.off}, BLKSIZE ${blockSizeBytes}), got ${fp.length}`);
    }
    const bad = fp.findIndex((f) => f !== ZERO_FINGERPRINT && !FINGERPRINT_RE.test(f));
    if (bad >= 0) throw err(`fp[${bad}]`, `expected 16 hex digits or "0" (an all-zero piece), got ${shown(fp[bad])}`);
  }
  return v as unknown as TraceEntry;
}

/** Parse and check a whole trace. Throws TraceError; a truncated last line is a warning. */
export function parseTrace(text: string, name = 'trace'): ParsedTrace {
  if (text.length > TRACE_CHARS_MAX) throw new TraceError(`${name}: ${text.length} characters; at most ${TRACE_CHARS_MAX} are read`, 0);
  const raw = text.split('\n');
  const terminated = raw[raw.length - 1] === '';
  if (terminated) raw.pop();
  const warnings: string[] = [];
  const entries: ParsedTrace['entries'] = [];
  const lines: string[] = [];
  let header: TraceHeader | undefined;
  let marker: ParsedTrace['marker'];
  let lastT = 0;
  for (let i = 0; i < raw.length; i++) {
    const lineNo = i + 1;
    const err = (field: string, msg: string): TraceError => new TraceError(`${name} line ${lineNo}: ${field ? `${field}: ` : ''}${msg}`, lineNo);
    const lineText = raw[i];
    let v: unknown;
    try {
      v = JSON.parse(lineText);
    } catch (e) {
      if (i === raw.length - 1 && !terminated && i > 0) {
        warnings.push(`${name} line ${lineNo}: the last line is cut short (the recording mount was killed?); ignored`);
        break;
      }
      throw err('', lineText.trim() === '' ? 'empty line (expected one JSON object per line)' : `not JSON (${(e as Error).message})`);
    }
    if (header === undefined) {
      header = parseHeader(v, err);
      lines.push(lineText);
      continue;
    }
    if (!isObject(v)) throw err('', `expected a JSON object, got ${shown(v)}`);
    if (marker) throw err('', `a line after the ${marker.marker.event} marker of line ${marker.line} (expected nothing after it)`);
    if (typeof v.t !== 'number' || !Number.isFinite(v.t) || v.t < lastT) {
      throw err('t', `expected the time offset in ms, a number >= ${lastT} (the previous line's), got ${shown(v.t)}`);
    }
    lastT = v.t;
    if ('event' in v) marker = { line: lineNo, marker: parseMarker(v, err) };
    else entries.push({ line: lineNo, entry: parseEntry(v, header.blksize, err) });
    lines.push(lineText);
  }
  if (header === undefined) throw new TraceError(`${name} line 1: the trace is empty (expected the header line {"lessfs_trace":${TRACE_FORMAT_VERSION},...})`, 1);
  if (!marker) {
    warnings.push(`${name}: no end marker: the recording mount did not unmount cleanly (killed?), or the trace was cut`);
  } else {
    if (marker.marker.event === 'stopped') warnings.push(`${name} line ${marker.line}: recording stopped early: ${marker.marker.reason ?? 'no reason given'}`);
    if (marker.marker.ops !== entries.length) {
      warnings.push(`${name} line ${marker.line}: the marker counts ${marker.marker.ops} operations, the trace has ${entries.length}`);
    }
  }
  if (header.root_entries > 0) {
    warnings.push(`${name}: recording began on a filesystem with ${header.root_entries} entries in /; the replay starts empty, so operations on what was there fail`);
  }
  return { name, header, entries, marker, warnings, lines };
}

// ---------------------------------------------------------------- conversion

export interface ConvertedTrace {
  name: string;
  blockSizeBytes: number;
  /** The workload, in trace order. */
  ops: Op[];
  /** Trace line of each op. */
  opLines: number[];
  /** Operation lines in the trace. */
  recordedOps: number;
  /** open and release lines (they map handles to paths; nothing to replay). */
  handleOps: number;
  /** Operations not replayed, by reason. */
  skipped: Record<string, number>;
  /** Operations that succeeded when recorded but fail on the reference model. */
  divergent: number;
  /** The first few of them, with their lines. */
  divergentExamples: string[];
  warnings: string[];
  /** The parsed lines (see ParsedTrace.lines). */
  lines: string[];
}

const DIVERGENT_EXAMPLES_MAX = 5;

interface OpenFile {
  /** Where the file was last seen; undefined once no name of it is left. */
  path: string | undefined;
  /** The file in the model, when the model had it (a file that existed before the trace has none). */
  node: ModelNode | undefined;
  line: number;
}

/** Some path of node in the model (the first in name order), or undefined. */
function pathOf(model: ModelFs, node: ModelNode): string | undefined {
  const visit = (dir: ModelDir, prefix: string): string | undefined => {
    for (const name of [...dir.entries.keys()].sort()) {
      const child = dir.entries.get(name) as ModelNode;
      const p = `${prefix}/${name}`;
      if (child === node) return p;
      if (child.kind === 'dir') {
        const found = visit(child, p);
        if (found) return found;
      }
    }
    return undefined;
  };
  return visit(model.root, '');
}

function resolves(model: ModelFs, path: string): ModelNode | undefined {
  try {
    return model.resolve(path);
  } catch (err) {
    void err; // ENOENT/ENOTDIR: not there
    return undefined;
  }
}

/** Turn a parsed trace into workload ops (see the file comment). Throws TraceError for handle misuse. */
export function convertTrace(t: ParsedTrace): ConvertedTrace {
  const bs = t.header.blksize;
  const model = new ModelFs();
  const out: ConvertedTrace = {
    name: t.name,
    blockSizeBytes: bs,
    ops: [],
    opLines: [],
    recordedOps: t.entries.length,
    handleOps: 0,
    skipped: {},
    divergent: 0,
    divergentExamples: [],
    warnings: [...t.warnings],
    lines: t.lines,
  };
  const handles = new Map<number, OpenFile>();
  const skip = (why: string): void => {
    out.skipped[why] = (out.skipped[why] ?? 0) + 1;
  };
  const emit = (op: Op, line: number): void => {
    out.ops.push(op);
    out.opLines.push(line);
    const r = applyToModel(model, op, bs);
    if ('err' in r) {
      out.divergent++;
      if (out.divergentExamples.length < DIVERGENT_EXAMPLES_MAX) out.divergentExamples.push(`line ${line}: ${JSON.stringify(op)} succeeded when recorded, fails with ${r.err} here`);
    }
  };
  /** The current path of an open handle's file, or undefined when it has no name left. */
  const handlePath = (fh: number, line: number, op: string): string | undefined => {
    const h = handles.get(fh);
    if (!h) throw new TraceError(`${t.name} line ${line}: fh: ${op} of handle ${fh}, which is not open (expected the fh of an earlier open or create, not yet released)`, line);
    if (h.node && (h.path === undefined || resolves(model, h.path) !== h.node)) h.path = pathOf(model, h.node);
    return h.path;
  };
  const viaHandle = (fh: number, line: number, op: string, make: (path: string) => Op): void => {
    const path = handlePath(fh, line, op);
    if (path === undefined) skip(`${op} of an unlinked open file`);
    else emit(make(path), line);
  };

  for (const { line, entry: e } of t.entries) {
    if (e.op === 'release') {
      // The handle is gone whatever release returned.
      if (!handles.delete(e.fh)) throw new TraceError(`${t.name} line ${line}: fh: release of handle ${e.fh}, which is not open (expected the fh of an earlier open or create, not yet released)`, line);
      out.handleOps++;
      continue;
    }
    if (e.r !== 0) {
      skip('failed when recorded');
      continue;
    }
    switch (e.op) {
      case 'open':
      case 'create': {
        if (e.op === 'create') emit({ op: 'create', path: e.path }, line);
        else out.handleOps++;
        const fh = e.fh as number;
        const prev = handles.get(fh);
        if (prev) throw new TraceError(`${t.name} line ${line}: fh: handle ${fh} opened again while open since line ${prev.line} (expected a release first)`, line);
        handles.set(fh, { path: e.path, node: resolves(model, e.path), line });
        break;
      }
      case 'read':
        viaHandle(e.fh, line, 'read', (path) => ({ op: 'read', path, offsetBytes: e.off, lengthBytes: e.len }));
        break;
      case 'write':
        viaHandle(e.fh, line, 'write', (path) => ({ op: 'write', path, offsetBytes: e.off, lengthBytes: e.len, pool: 0, fingerprints: e.fp }));
        break;
      case 'ftruncate':
        viaHandle(e.fh, line, 'ftruncate', (path) => ({ op: 'truncate', path, sizeBytes: e.size }));
        break;
      case 'fsync':
        if ('fh' in e) viaHandle(e.fh, line, 'fsync', (path) => ({ op: 'fsync', path }));
        else emit({ op: 'fsync', path: e.path }, line);
        break;
      case 'fsyncdir':
        emit({ op: 'fsync', path: e.path }, line);
        break;
      case 'truncate':
        emit({ op: 'truncate', path: e.path, sizeBytes: e.size }, line);
        break;
      case 'mknod':
        if ((e.mode & S_IFMT) === 0 || (e.mode & S_IFMT) === S_IFREG) emit({ op: 'create', path: e.path }, line);
        else skip('mknod of a device, fifo or socket (no simulator equivalent)');
        break;
      case 'symlink':
        emit({ op: 'symlink', target: e.target, path: e.path }, line);
        break;
      case 'link':
        emit({ op: 'link', from: e.path, to: e.to }, line);
        break;
      case 'rename': {
        // Handles on files the model does not know follow the rename by name.
        for (const h of handles.values()) {
          if (h.node || h.path === undefined) continue;
          if (h.path === e.to) h.path = undefined;
          else if (h.path === e.path || h.path.startsWith(`${e.path}/`)) h.path = e.to + h.path.slice(e.path.length);
        }
        emit({ op: 'rename', from: e.path, to: e.to }, line);
        break;
      }
      case 'unlink':
        for (const h of handles.values()) if (!h.node && h.path === e.path) h.path = undefined;
        emit({ op: 'unlink', path: e.path }, line);
        break;
      case 'mkdir':
      case 'rmdir':
      case 'readdir':
      case 'readlink':
        emit({ op: e.op, path: e.path }, line);
        break;
      case 'chmod':
      case 'chown':
      case 'utimens':
        skip(`${e.op} (no simulator equivalent)`);
        break;
    }
  }
  if (out.divergent > 0) {
    out.warnings.push(`${t.name}: ${out.divergent} operations succeeded when recorded but fail on an empty filesystem replaying the trace (first: ${out.divergentExamples[0]})`);
  }
  return out;
}

/** parseTrace then convertTrace. */
export function loadTrace(text: string, name = 'trace'): ConvertedTrace {
  return convertTrace(parseTrace(text, name));
}
