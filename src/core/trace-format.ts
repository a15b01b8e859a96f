// The FUSE trace format (lessfs --trace / TRACE_FILE, lessfs-sim replay-trace):
// one JSON object per line, a header first, then one line per completed
// operation, then an end marker. Shared by the recorder (src/real/fuse) and
// the parser (src/sim/trace.ts), so both split writes into the same pieces.
//
// No file content is recorded. A write records, for each BLKSIZE-aligned piece
// of the file it covers, a fingerprint: the first 8 bytes (16 hex digits) of
// HMAC-SHA256 of the piece under a random key the recorder never writes down,
// or "0" for an all-zero piece. Equal pieces within one trace have equal
// fingerprints (so a replay reproduces the dedup pattern); nothing else about
// the content can be learned or checked from them. Replay expands a
// fingerprint into deterministic bytes (pieceBytes).

/** The `lessfs_trace` value of the header line this code writes and reads. */
export const TRACE_FORMAT_VERSION = 1;
/** Fingerprint of an all-zero piece (the engine stores it as a hole). */
export const ZERO_FINGERPRINT = '0';
export const FINGERPRINT_RE = /^[0-9a-f]{16}$/;

export interface TraceHeader {
  lessfs_trace: typeof TRACE_FORMAT_VERSION;
  /** BLKSIZE of the recorded filesystem: the piece size of write fingerprints. */
  blksize: number;
  /** Wall-clock start of the recording (ISO 8601); informational. */
  started: string;
  /** Entries in the root directory when recording started (0: an empty filesystem, which a replay starts from). */
  root_entries: number;
  /** How fingerprints were made. */
  fingerprint: 'hmac-sha256-64';
}

/** 0 for success, else the errno name the operation returned (e.g. "ENOENT"). */
export type TraceResult = 0 | string;

/** A recorded operation, named as FUSE names it. `fh` is the handle lessfs gave the open or create. */
export type TraceOp =
  | { op: 'create'; path: string; mode: number; fh?: number }
  | { op: 'open'; path: string; flags: number; fh?: number }
  | { op: 'release'; fh: number }
  | { op: 'read'; fh: number; off: number; len: number }
  | { op: 'write'; fh: number; off: number; len: number; fp: string[] }
  | { op: 'ftruncate'; fh: number; size: number }
  /** By handle; by path when the kernel gave no handle of ours. */
  | { op: 'fsync'; fh: number }
  | { op: 'fsync'; path: string }
  | { op: 'truncate'; path: string; size: number }
  | { op: 'mknod'; path: string; mode: number }
  | { op: 'mkdir'; path: string; mode: number }
  | { op: 'symlink'; target: string; path: string }
  | { op: 'link'; path: string; to: string }
  | { op: 'rename'; path: string; to: string }
  | { op: 'chmod'; path: string; mode: number }
  | { op: 'chown'; path: string; uid: number; gid: number }
  | { op: 'unlink' | 'rmdir' | 'readdir' | 'readlink' | 'fsyncdir' | 'utimens'; path: string };

export type TraceOpName = TraceOp['op'];

/** One operation line: time offset in ms since the header, the operation, its result. */
export type TraceEntry = TraceOp & { t: number; r: TraceResult };

/** Last line: `end` at a clean unmount, `stopped` when recording stopped early (the reason says why). */
export interface TraceMarker {
  t: number;
  event: 'end' | 'stopped';
  /** Operation lines written before this marker. */
  ops: number;
  reason?: string;
}

/**
 * The BLKSIZE-aligned pieces of the file range [offsetBytes, offsetBytes +
 * lengthBytes), as [start, end) offsets relative to offsetBytes.
 */
export function tracePieces(offsetBytes: number, lengthBytes: number, blockSizeBytes: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let at = offsetBytes;
  const end = offsetBytes + lengthBytes;
  while (at < end) {
    const next = Math.min(end, (Math.floor(at / blockSizeBytes) + 1) * blockSizeBytes);
    out.push([at - offsetBytes, next - offsetBytes]);
    at = next;
  }
  return out;
}

/**
 * Deterministic bytes for a piece with this fingerprint: equal fingerprints
 * give equal bytes, "0" gives zeros. The stream is a 64-bit xorshift seeded
 * from the fingerprint (two 32-bit halves), so different fingerprints give
 * unrelated bytes.
 */
export function pieceBytes(fingerprint: string, lengthBytes: number): Uint8Array {
  const out = new Uint8Array(lengthBytes);
  if (fingerprint === ZERO_FINGERPRINT) return out;
  if (!FINGERPRINT_RE.test(fingerprint)) throw new RangeError(`bad fingerprint '${fingerprint}' (expected 16 hex digits or "0")`);
  let hi = parseInt(fingerprint.slice(0, 8), 16) | 0;
  let lo = parseInt(fingerprint.slice(8), 16) | 0;
  // xorshift64 must not start at zero; any fixed non-zero substitute will do.
  if (hi === 0 && lo === 0) lo = 0x9e3779b9;
  for (let i = 0; i < lengthBytes; i += 4) {
    // xorshift64 (13, 7, 17) on the 64-bit word (hi, lo).
    let t = (hi << 13) | (lo >>> 19);
    lo ^= lo << 13;
    hi ^= t;
    t = hi >>> 7;
    lo ^= (lo >>> 7) | (hi << 25);
    hi ^= t;
    t = (hi << 17) | (lo >>> 15);
    lo ^= lo << 17;
    hi ^= t;
    const word = (lo ^ hi) >>> 0;
    for (let k = 0; k < 4 && i + k < lengthBytes; k++) out[i + k] = (word >>> (8 * k)) & 0xff;
  }
  return out;
}

/** The bytes a replayed write stores: each piece expanded from its fingerprint. */
export function fingerprintData(offsetBytes: number, lengthBytes: number, fingerprints: readonly string[], blockSizeBytes: number): Uint8Array {
  const pieces = tracePieces(offsetBytes, lengthBytes, blockSizeBytes);
  if (pieces.length !== fingerprints.length) {
    throw new RangeError(`a write of ${lengthBytes} bytes at ${offsetBytes} has ${pieces.length} pieces of BLKSIZE ${blockSizeBytes}, but ${fingerprints.length} fingerprints`);
  }
  const out = new Uint8Array(lengthBytes);
  pieces.forEach(([a, b], i) => out.set(pieceBytes(fingerprints[i], b - a), a));
  return out;
}
