// What every Store driver accepts, checked identically by the simulated and
// the real driver, so that the simulator teaches core LMDB's real limits
// (an empty key or a 2 KiB key fails in the sim exactly as it would on LMDB).

import type { StoreOp, StoreOpenOptions, RangeOptions } from './drivers.ts';

/** LMDB's compiled-in maximum key size (lmdb-js 3.5: "maximum key size (1978)"). */
export const STORE_KEY_BYTES_MAX = 1978;
/** Largest value we accept; 1 GiB values were verified on lmdb-js 3.5.6. */
export const STORE_VALUE_BYTES_MAX = 1 << 30;
/** Bound on operations in one commit: a runaway write cache fails loudly. */
export const STORE_COMMIT_OPS_MAX = 1 << 20;
/** Bound on key+value bytes in one commit (LMDB keeps a txn's dirty pages in memory). */
export const STORE_COMMIT_BYTES_MAX = 1 << 30;
/** Bound on named tables per environment (the real driver's LMDB maxDbs). */
export const STORE_TABLES_MAX = 64;
/** LMDB stores table names as keys of its main table. */
export const STORE_TABLE_NAME_BYTES_MAX = 255;

export type StoreErrorCode =
  /** A caller passed something the store cannot take (a bug in the caller). */
  | 'EINVAL'
  /** The store (or its environment) is closed, or its process incarnation died. */
  | 'ECLOSED'
  /** The environment is already open in this runtime. */
  | 'EBUSY'
  /** The map (LMDB_MAPSIZE) or the disk is full; the commit applied nothing. */
  | 'ENOSPC'
  /** The medium failed; the commit applied nothing. */
  | 'EIO';

/** A Store driver operation failed. `path` names the environment. */
export class StoreError extends Error {
  readonly code: StoreErrorCode;
  readonly path: string;
  /** The driver's own code when it had one (e.g. MDB_MAP_FULL). */
  readonly detail: string | undefined;
  constructor(code: StoreErrorCode, path: string, message: string, options?: { detail?: string; cause?: unknown }) {
    super(`${code}: ${message} (store ${path})`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StoreError';
    this.code = code;
    this.path = path;
    this.detail = options?.detail;
  }
}

export function checkOpenOptions(options: StoreOpenOptions): void {
  const path = String(options.path);
  if (typeof options.path !== 'string' || options.path.length === 0) {
    throw new StoreError('EINVAL', path, 'open: path must be a non-empty string');
  }
  if (!Array.isArray(options.tables) || options.tables.length === 0) {
    throw new StoreError('EINVAL', path, 'open: tables must be a non-empty list');
  }
  if (options.tables.length > STORE_TABLES_MAX) {
    throw new StoreError('EINVAL', path, `open: ${options.tables.length} tables, at most ${STORE_TABLES_MAX}`);
  }
  const seen = new Set<string>();
  for (const table of options.tables) {
    if (typeof table !== 'string' || table.length === 0 || table.length > STORE_TABLE_NAME_BYTES_MAX) {
      throw new StoreError('EINVAL', path, `open: bad table name ${JSON.stringify(table)} (1..${STORE_TABLE_NAME_BYTES_MAX} chars)`);
    }
    if (seen.has(table)) throw new StoreError('EINVAL', path, `open: table ${table} listed twice`);
    seen.add(table);
  }
  const mapSizeBytes = options.mapSizeBytes ?? 0;
  if (!Number.isSafeInteger(mapSizeBytes) || mapSizeBytes < 0) {
    throw new StoreError('EINVAL', path, `open: mapSizeBytes must be an integer >= 0, got ${mapSizeBytes}`);
  }
}

export function checkTable(path: string, tables: ReadonlySet<string>, table: string): void {
  if (!tables.has(table)) {
    throw new StoreError('EINVAL', path, `table ${JSON.stringify(table)} was not opened (opened: ${[...tables].join(', ')})`);
  }
}

export function checkKey(path: string, key: Uint8Array, what: string): void {
  if (!(key instanceof Uint8Array)) throw new StoreError('EINVAL', path, `${what}: key must be a Uint8Array`);
  if (key.length === 0) throw new StoreError('EINVAL', path, `${what}: empty keys are not allowed (LMDB)`);
  if (key.length > STORE_KEY_BYTES_MAX) {
    throw new StoreError('EINVAL', path, `${what}: key of ${key.length} bytes, LMDB allows at most ${STORE_KEY_BYTES_MAX}`);
  }
}

/** Range bounds may be empty (an empty start is the table start, an empty end matches nothing). */
export function checkRange(path: string, options: RangeOptions | undefined): void {
  if (options === undefined) return;
  for (const name of ['start', 'end'] as const) {
    const bound = options[name];
    if (bound === undefined) continue;
    if (!(bound instanceof Uint8Array)) throw new StoreError('EINVAL', path, `range: ${name} must be a Uint8Array`);
    if (bound.length > STORE_KEY_BYTES_MAX) {
      throw new StoreError('EINVAL', path, `range: ${name} of ${bound.length} bytes, LMDB allows at most ${STORE_KEY_BYTES_MAX}`);
    }
  }
  if (options.limit !== undefined && (!Number.isSafeInteger(options.limit) || options.limit < 0)) {
    throw new StoreError('EINVAL', path, `range: limit must be an integer >= 0, got ${options.limit}`);
  }
}

/**
 * Validate a whole batch before anything is applied; returns its key+value
 * bytes. opsMax: a smaller bound on operations per commit (the simulated
 * store's `commitOpsMax`, so a test reaches it with a small tree).
 */
export function checkOps(path: string, tables: ReadonlySet<string>, ops: readonly StoreOp[], opsMax = STORE_COMMIT_OPS_MAX): number {
  if (!Array.isArray(ops)) throw new StoreError('EINVAL', path, 'commit: ops must be an array');
  if (ops.length > opsMax) {
    throw new StoreError('EINVAL', path, `commit: ${ops.length} ops, at most ${opsMax} per commit`);
  }
  let bytes = 0;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i];
    checkTable(path, tables, op.table);
    checkKey(path, op.key, `commit op ${i}`);
    bytes += op.key.length;
    if (op.value !== undefined) {
      if (!(op.value instanceof Uint8Array)) {
        throw new StoreError('EINVAL', path, `commit op ${i}: value must be a Uint8Array or undefined (delete)`);
      }
      if (op.value.length > STORE_VALUE_BYTES_MAX) {
        throw new StoreError('EINVAL', path, `commit op ${i}: value of ${op.value.length} bytes, at most ${STORE_VALUE_BYTES_MAX}`);
      }
      bytes += op.value.length;
    }
  }
  if (bytes > STORE_COMMIT_BYTES_MAX) {
    throw new StoreError('EINVAL', path, `commit: ${bytes} bytes of keys and values, at most ${STORE_COMMIT_BYTES_MAX} per commit`);
  }
  return bytes;
}
