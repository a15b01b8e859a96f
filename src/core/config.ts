// lessfs.cfg: KEY=VALUE lines, any key overridable from the environment, as the
// C lessfs reads them. Pure: the caller passes the text and the environment map,
// so the simulator, the CLI and the tests parse exactly the same way.
//
// One table, CONFIG_KEYS, drives parsing, validation, rendering, the embedded
// quick-start config and docs/config.md, so the four cannot drift apart.

import type { LogLevel } from './drivers.ts';
import { AssertionError, ConfigError, assert } from './errors.ts';

// ---------------------------------------------------------------- The config

export type Compression = 'none' | 'deflate' | 'lz4';
export type HashName = 'sha256' | 'sha512' | 'blake2b512' | 'sha1';
export type SyncRelax = 0 | 1 | 2;

export interface LessfsConfig {
  /** BLKSIZE: power of two 4096..131072; fixed when formatted. */
  blockSizeBytes: number;
  /** BLOCKDATA_PATH: directory of block data files and replication logs (absolute). */
  blockDataPath: string;
  /** META_PATH: directory of the LMDB environment (absolute). */
  metaPath: string;
  compression: Compression;
  deduplication: boolean;
  hashName: HashName;
  cacheSizeMB: number;
  commitIntervalS: number;
  syncRelax: SyncRelax;
  /** Always atomic in lessfs-ts; `false` is accepted with a warning. */
  enableTransactions: boolean;
  /** 0 = the store driver's default. */
  lmdbMapSizeBytes: number;
  debug: LogLevel;
  listenIp: string;
  /** Management port; 0 = disabled. */
  listenPort: number;
  minSpaceFreePercent: number;
  backgroundDelete: boolean;
  /** FUSE_ATTR_TABLE: lookups and attributes answered on the libfuse threads (the addon's listed-attributes table). */
  fuseAttrTable: boolean;
  /** FUSE_READ_TABLE: reads of uncompressed blocks answered on the libfuse threads from the data file. */
  fuseReadTable: boolean;
  /** TRACE_FILE: record FUSE operations here (absolute path); undefined = off. */
  traceFile: string | undefined;
  replication: 'off' | 'masterslave';
  replicationRole: 'master' | 'slave';
  /** Undefined when unset or in batch mode (REPLICATION_PARTNER_IP=-1). */
  replicationPartnerIp: string | undefined;
  /** REPLICATION_PARTNER_IP=-1: write log files, never connect. */
  replicationBatchMode: boolean;
  replicationPartnerPort: number;
  replicationListenIp: string;
  /** 0 = the slave does not listen. */
  replicationListenPort: number;
  replicationWatchdir: string | undefined;
  replicationEnabled: boolean;
  /** 0 = no rotation by size. */
  rotateReplogSizeBytes: number;
  /** 0 = no rotation on a timer. */
  rotateReplogIntervalS: number;
  /** 0 = unlimited. */
  maxBacklogSizeBytes: number;
  replicationSecret: string | undefined;
}

export type ConfigSource = 'file' | 'env' | 'default';

export interface ParsedConfig {
  config: LessfsConfig;
  warnings: string[];
  /** Where each key of CONFIG_KEYS came from, by key name. */
  sources: Record<string, ConfigSource>;
}

export interface ParseConfigOptions {
  /** The process environment, passed in by the caller; only variables named like a key of CONFIG_KEYS count. */
  env?: Record<string, string | undefined>;
  /** Used in messages (default "lessfs.cfg"). */
  fileName?: string;
}

/** What a node does for replication, derived from the replication keys. */
export type ReplicationMode =
  | 'off'
  | 'master-live' // connects to REPLICATION_PARTNER_IP:PORT and streams
  | 'master-batch' // writes and rotates replog.dta-SEQUENCE files only
  | 'slave-listen' // accepts a master on REPLICATION_LISTEN_IP:PORT
  | 'slave-watchdir' // applies files from REPLICATION_WATCHDIR
  | 'slave-replogtool'; // receives nothing itself; files are applied with replogtool -c

// ---------------------------------------------------------------- Limits

export const CONFIG_TEXT_CHARS_MAX = 1024 * 1024;
export const CONFIG_LINE_CHARS_MAX = 8192;
const KEY_CHARS_MAX = 128;
const PATH_CHARS_MAX = 4095;
const SECRET_CHARS_MIN = 16;
const SECRET_CHARS_MAX = 1024;
/** Longest value echoed back in a message. */
const SHOWN_VALUE_CHARS_MAX = 120;

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
const PiB = 1024 * TiB;

/** Replaced by the caller (see defaultConfigText) in DEFAULT_CONFIG_TEXT. */
export const DATA_DIR_PLACEHOLDER = '${DATA_DIR}';

// ---------------------------------------------------------------- Key table

export type ConfigGroup = 'storage' | 'cache' | 'management' | 'replication';
export type ConfigValueType = 'size' | 'integer' | 'boolean' | 'choice' | 'path' | 'address' | 'secret';

export interface ConfigKey {
  readonly name: string;
  readonly group: ConfigGroup;
  readonly type: ConfigValueType;
  /** Fields of LessfsConfig this key sets. */
  readonly fields: readonly (keyof LessfsConfig)[];
  readonly required: boolean;
  /** An empty value means "unset" (optional keys without a default value). */
  readonly emptyMeansUnset: boolean;
  /** Field values when the key is absent; `{}` for required keys. */
  readonly defaults: Partial<LessfsConfig>;
  /** The default as written in lessfs.cfg, or "(required)" / "(unset)". */
  readonly defaultText: string;
  /** What is allowed, as a phrase after "expected". */
  readonly allowed: string;
  readonly description: string;
  /** How this key differs from the C lessfs, if it does. */
  readonly lessfsNote: string | undefined;
  /** Never echo the value in messages. */
  readonly secret: boolean;
  /** In DEFAULT_CONFIG_TEXT: an active line, or a commented example. */
  readonly sample: { readonly active: boolean; readonly value: string | undefined };
  /** Parse a trimmed, unquoted value; throws ValueRejected. `note` collects warnings. */
  parse(raw: string, note: (warning: string) => void): Partial<LessfsConfig>;
  /** The value text for lessfs.cfg, or undefined to leave the key out. */
  format(config: LessfsConfig): string | undefined;
}

/** A value failed its key's rule; the caller adds key, value and location. */
class ValueRejected extends Error {
  readonly reason: string;
  constructor(reason: string) {
    super(reason);
    this.name = 'ValueRejected';
    this.reason = reason;
  }
}

function reject(reason: string): never {
  throw new ValueRejected(reason);
}

interface FieldKeySpec<F extends keyof LessfsConfig> {
  name: string;
  field: F;
  group: ConfigGroup;
  type: ConfigValueType;
  allowed: string;
  description: string;
  lessfsNote?: string;
  secret?: boolean;
  required?: boolean;
  emptyMeansUnset?: boolean;
  /** Ignored when required. */
  default?: LessfsConfig[F];
  sample?: { active: boolean; value?: string };
  parse(raw: string, note: (warning: string) => void): LessfsConfig[F];
  format?(value: LessfsConfig[F]): string | undefined;
}

/** A key that sets exactly one field. */
function fieldKey<F extends keyof LessfsConfig>(spec: FieldKeySpec<F>): ConfigKey {
  const required = spec.required ?? false;
  const format = (value: LessfsConfig[F]): string | undefined =>
    spec.format ? spec.format(value) : value === undefined ? undefined : String(value);
  const defaults = required ? {} : ({ [spec.field]: spec.default } as Partial<LessfsConfig>);
  const defaultText = required ? '(required)' : (format(spec.default as LessfsConfig[F]) ?? '(unset)');
  return {
    name: spec.name,
    group: spec.group,
    type: spec.type,
    fields: [spec.field],
    required,
    emptyMeansUnset: spec.emptyMeansUnset ?? false,
    defaults,
    defaultText,
    allowed: spec.allowed,
    description: spec.description,
    lessfsNote: spec.lessfsNote,
    secret: spec.secret ?? false,
    sample: { active: spec.sample?.active ?? true, value: spec.sample?.value },
    parse: (raw, note) => ({ [spec.field]: spec.parse(raw, note) }) as Partial<LessfsConfig>,
    format: (config) => format(config[spec.field]),
  };
}

// ---------------------------------------------------------------- Value rules

const INTEGER_RE = /^[0-9]{1,16}$/;
const SIZE_RE = /^([0-9]{1,16})(?:([KMGT])(?:I?B)?)?$/;
const SIZE_MULTIPLIERS: Record<string, number> = { K: KiB, M: MiB, G: GiB, T: TiB };
const SIZE_SYNTAX = 'in bytes, or with a K, M, G or T suffix (1K = 1024)';

function parseIntegerIn(raw: string, min: number, max: number, allowed: string): number {
  if (!INTEGER_RE.test(raw)) reject(`expected ${allowed}`);
  const n = Number(raw);
  if (n < min || n > max) reject(`expected ${allowed}`);
  return n;
}

function parseSizeBytes(raw: string, allowed: string): number {
  const m = SIZE_RE.exec(raw.toUpperCase());
  if (!m) reject(`expected ${allowed}`);
  const n = Number(m[1]) * (m[2] ? SIZE_MULTIPLIERS[m[2]] : 1);
  if (!Number.isSafeInteger(n)) reject(`expected ${allowed}`);
  return n;
}

/** 0 (meaning off) or a size in [min, max]. */
function parseOptionalSize(raw: string, minBytes: number, maxBytes: number, allowed: string): number {
  const n = parseSizeBytes(raw, allowed);
  if (n !== 0 && (n < minBytes || n > maxBytes)) reject(`expected ${allowed}`);
  return n;
}

const BOOLEAN_ALLOWED = 'on or off (also yes/no, true/false, 1/0, enabled/disabled)';
const TRUE_WORDS = new Set(['on', 'yes', 'true', '1', 'enabled', 'enable']);
const FALSE_WORDS = new Set(['off', 'no', 'false', '0', 'disabled', 'disable']);

function parseBoolean(raw: string): boolean {
  const word = raw.toLowerCase();
  if (TRUE_WORDS.has(word)) return true;
  if (FALSE_WORDS.has(word)) return false;
  return reject(`expected ${BOOLEAN_ALLOWED}`);
}

function formatBoolean(value: boolean): string {
  return value ? 'on' : 'off';
}

// Control characters would corrupt the one-line-per-key file and the logs that
// echo values.
const CONTROL_RE = /[\u0000-\u001f\u007f]/;

/** lessfs.cfg can hold the value: unquoted, or quoted with a quote it lacks. */
function representable(value: string): boolean {
  if (value !== value.trim()) return false;
  return !needsQuotes(value) || !value.includes('"') || !value.includes("'");
}

function needsQuotes(value: string): boolean {
  return /^["'#]/.test(value) || /\s#/.test(value);
}

const PATH_ALLOWED = 'an absolute path (starting with /)';

function parsePath(raw: string): string {
  if (raw.includes(DATA_DIR_PLACEHOLDER)) {
    reject(`expected ${PATH_ALLOWED}; replace the placeholder ${DATA_DIR_PLACEHOLDER} with a directory`);
  }
  if (!raw.startsWith('/')) reject(`expected ${PATH_ALLOWED}`);
  if (raw.length > PATH_CHARS_MAX) reject(`expected ${PATH_ALLOWED} of at most ${PATH_CHARS_MAX} characters`);
  if (CONTROL_RE.test(raw)) reject(`expected ${PATH_ALLOWED} without control characters`);
  if (!representable(raw)) reject(`expected ${PATH_ALLOWED} that lessfs.cfg can hold (not both quote characters together with " #")`);
  return raw;
}

// ---- IP addresses and host names (syntax only: core does no name lookups)

function parseIpv4(text: string): number[] | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const octets: number[] = [];
  for (const part of parts) {
    // Leading zeros are refused: inet_aton would read them as octal.
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part)) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    octets.push(n);
  }
  return octets;
}

function parseIpv6Groups(part: string, allowIpv4Tail: boolean): number[] | undefined {
  if (part === '') return [];
  const items = part.split(':');
  const groups: number[] = [];
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    if (allowIpv4Tail && i === items.length - 1 && item.includes('.')) {
      const v4 = parseIpv4(item);
      if (!v4) return undefined;
      groups.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      continue;
    }
    if (!/^[0-9a-fA-F]{1,4}$/.test(item)) return undefined;
    groups.push(parseInt(item, 16));
  }
  return groups;
}

/** The eight 16-bit groups of an IPv6 address, or undefined. */
function parseIpv6(text: string): number[] | undefined {
  if (text.length > 45) return undefined;
  const gap = text.indexOf('::');
  if (gap === -1) {
    const groups = parseIpv6Groups(text, true);
    return groups && groups.length === 8 ? groups : undefined;
  }
  if (text.indexOf('::', gap + 1) !== -1) return undefined;
  const head = parseIpv6Groups(text.slice(0, gap), false);
  const tail = parseIpv6Groups(text.slice(gap + 2), true);
  if (!head || !tail || head.length + tail.length > 7) return undefined;
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

function isIpAddress(text: string): boolean {
  return parseIpv4(text) !== undefined || parseIpv6(text) !== undefined;
}

function isHostName(text: string): boolean {
  if (text.length === 0 || text.length > 253) return false;
  const labels = text.split('.');
  if (!labels.every((l) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l))) return false;
  // An all-numeric last label is a mistyped IPv4 address, not a name.
  return !/^[0-9]+$/.test(labels[labels.length - 1]);
}

type AddressClass = 'loopback' | 'wildcard' | 'other';

function classifyIp(ip: string): { canonical: string; kind: AddressClass } {
  const v4 = parseIpv4(ip);
  if (v4) {
    const kind = v4[0] === 127 ? 'loopback' : v4.every((o) => o === 0) ? 'wildcard' : 'other';
    return { canonical: v4.join('.'), kind };
  }
  const v6 = parseIpv6(ip);
  assert(v6 !== undefined, `classifyIp: ${ip} is not an IP address`);
  const zeroHead = v6.slice(0, 7).every((g) => g === 0);
  const mappedV4 = v6.slice(0, 5).every((g) => g === 0) && v6[5] === 0xffff;
  if (mappedV4) return classifyIp(`${v6[6] >> 8}.${v6[6] & 255}.${v6[7] >> 8}.${v6[7] & 255}`);
  const kind = zeroHead && v6[7] === 1 ? 'loopback' : zeroHead && v6[7] === 0 ? 'wildcard' : 'other';
  return { canonical: v6.map((g) => g.toString(16)).join(':'), kind };
}

/** Could a listener on `a` and one on `b` (same port) collide? */
function addressesOverlap(a: string, b: string): boolean {
  const ca = classifyIp(a);
  const cb = classifyIp(b);
  return ca.kind === 'wildcard' || cb.kind === 'wildcard' || ca.canonical === cb.canonical;
}

const IP_ALLOWED = 'an IPv4 address (e.g. 127.0.0.1) or an IPv6 address (e.g. ::1), without brackets';

function parseIp(raw: string): string {
  if (!isIpAddress(raw)) reject(`expected ${IP_ALLOWED}`);
  return raw;
}

// ---- Choices with lessfs's spellings

const COMPRESSION_ALLOWED = 'none, deflate or lz4 (also disabled = none; zlib and gzip = deflate)';
const COMPRESSION_ALIASES: Record<string, Compression> = {
  none: 'none',
  disabled: 'none',
  deflate: 'deflate',
  zlib: 'deflate',
  gzip: 'deflate',
  lz4: 'lz4',
};
const LESSFS_ONLY_CODECS = new Set(['qlz', 'qlz15', 'lzo', 'snappy', 'bzip', 'bzip2']);

function parseCompression(raw: string): Compression {
  const word = raw.toLowerCase();
  const codec = COMPRESSION_ALIASES[word];
  if (codec !== undefined) return codec;
  if (LESSFS_ONLY_CODECS.has(word)) {
    reject(`${raw} is a lessfs codec that lessfs-ts does not support; allowed: ${COMPRESSION_ALLOWED}`);
  }
  return reject(`expected ${COMPRESSION_ALLOWED}`);
}

const HASH_ALLOWED = 'sha256, sha512, blake2b512 or sha1 (lessfs names MHASH_SHA256, MHASH_SHA512, MHASH_SHA1 too)';
const HASH_ALIASES: Record<string, HashName> = {
  sha256: 'sha256',
  'sha-256': 'sha256',
  mhash_sha256: 'sha256',
  sha512: 'sha512',
  'sha-512': 'sha512',
  mhash_sha512: 'sha512',
  blake2b512: 'blake2b512',
  blake2b: 'blake2b512',
  'blake2b-512': 'blake2b512',
  sha1: 'sha1',
  'sha-1': 'sha1',
  mhash_sha1: 'sha1',
};
const LESSFS_ONLY_HASHES = new Set([
  'tiger192',
  'mhash_tiger192',
  'mhash_tiger',
  'mhash_whirlpool',
  'mhash_haval256',
  'mhash_snefru256',
  'mhash_ripemd256',
  'blake3',
]);

function parseHashName(raw: string): HashName {
  const word = raw.toLowerCase();
  const hash = HASH_ALIASES[word];
  if (hash !== undefined) return hash;
  if (LESSFS_ONLY_HASHES.has(word)) {
    reject(`${raw} is a lessfs hash that lessfs-ts does not support; allowed: ${HASH_ALLOWED}`);
  }
  return reject(`expected ${HASH_ALLOWED}`);
}

function choice<T extends string>(raw: string, values: readonly T[], allowed: string): T {
  const word = raw.toLowerCase();
  const found = values.find((v) => v === word);
  return found ?? reject(`expected ${allowed}`);
}

// ---------------------------------------------------------------- The keys

const BLKSIZE_ALLOWED = 'a power of two between 4096 and 131072';
const MAPSIZE_ALLOWED = `0 (driver default) or a size between 1M and 1024T, ${SIZE_SYNTAX}`;
const ROTATE_SIZE_ALLOWED = `0 (off) or a size between 4K and 1T, ${SIZE_SYNTAX}`;
const BACKLOG_ALLOWED = `0 (unlimited) or a size between 4K and 1024T, ${SIZE_SYNTAX}`;
const PARTNER_ALLOWED = 'an IPv4 or IPv6 address, a host name, or -1 for batch mode';
const SECRET_ALLOWED = `${SECRET_CHARS_MIN} to ${SECRET_CHARS_MAX} characters without control characters`;

function portAllowed(min: number): string {
  return min === 0 ? 'an integer between 0 (off) and 65535' : `an integer between ${min} and 65535`;
}

export const CONFIG_KEYS: readonly ConfigKey[] = [
  // -- storage
  fieldKey({
    name: 'BLKSIZE',
    field: 'blockSizeBytes',
    group: 'storage',
    type: 'size',
    allowed: BLKSIZE_ALLOWED,
    default: 128 * KiB,
    description:
      'Block size in bytes: the unit of deduplication, compression and hashing. Fixed when the filesystem is formatted; mounting with a different BLKSIZE is refused.',
    parse: (raw) => {
      const n = parseSizeBytes(raw, BLKSIZE_ALLOWED);
      if (n < 4 * KiB || n > 128 * KiB || (n & (n - 1)) !== 0) reject(`expected ${BLKSIZE_ALLOWED}`);
      return n;
    },
  }),
  fieldKey({
    name: 'BLOCKDATA_PATH',
    field: 'blockDataPath',
    group: 'storage',
    type: 'path',
    allowed: PATH_ALLOWED,
    required: true,
    sample: { active: true, value: `${DATA_DIR_PLACEHOLDER}/dta` },
    description:
      'Directory holding the block data files and the replication logs (replog.dta, replog.dta-SEQUENCE). May be the same directory as META_PATH.',
    lessfsNote: 'Always a directory; lessfs\'s file_io form naming a single data file is not used.',
    parse: parsePath,
  }),
  fieldKey({
    name: 'META_PATH',
    field: 'metaPath',
    group: 'storage',
    type: 'path',
    allowed: PATH_ALLOWED,
    required: true,
    sample: { active: true, value: `${DATA_DIR_PLACEHOLDER}/mta` },
    description: 'Directory holding the LMDB environment with all metadata (inodes, directories, block map, block index).',
    lessfsNote: 'Replaces lessfs\'s per-database `*_PATH` keys, which are ignored.',
    parse: parsePath,
  }),
  fieldKey({
    name: 'COMPRESSION',
    field: 'compression',
    group: 'storage',
    type: 'choice',
    allowed: COMPRESSION_ALLOWED,
    default: 'none',
    description:
      'Codec for newly stored blocks. Each block records its codec, so this may be changed between mounts; lz4 is the fast codec, deflate compresses better.',
    lessfsNote: 'qlz, qlz15, lzo, snappy and bzip are refused with an error.',
    parse: parseCompression,
  }),
  fieldKey({
    name: 'DEDUPLICATION',
    field: 'deduplication',
    group: 'storage',
    type: 'boolean',
    allowed: BOOLEAN_ALLOWED,
    default: true,
    description: 'on: a block whose content is already stored is kept once and referenced. off: every block is stored as new.',
    parse: parseBoolean,
    format: formatBoolean,
  }),
  fieldKey({
    name: 'HASHNAME',
    field: 'hashName',
    group: 'storage',
    type: 'choice',
    allowed: HASH_ALLOWED,
    default: 'sha256',
    description:
      'Hash that identifies block contents. Fixed when the filesystem is formatted. sha1 is accepted with a warning: SHA-1 collisions can be constructed, so a user who can write files could make two different blocks deduplicate.',
    lessfsNote: 'Names are case-insensitive; TIGER192, WHIRLPOOL, HAVAL, SNEFRU, RIPEMD and BLAKE3 are refused with an error.',
    parse: parseHashName,
  }),
  fieldKey({
    name: 'LMDB_MAPSIZE',
    field: 'lmdbMapSizeBytes',
    group: 'storage',
    type: 'size',
    allowed: MAPSIZE_ALLOWED,
    default: 0,
    description: 'Upper bound on the LMDB map size. 0 leaves it to the store driver (lmdb-js grows the map as needed).',
    parse: (raw) => parseOptionalSize(raw, MiB, PiB, MAPSIZE_ALLOWED),
  }),
  fieldKey({
    name: 'MIN_SPACE_FREE',
    field: 'minSpaceFreePercent',
    group: 'storage',
    type: 'integer',
    allowed: 'an integer between 0 and 99 (percent)',
    default: 10,
    description:
      "Percentage of the disk that must stay free. While free space on the disk of BLOCKDATA_PATH or META_PATH is below it (checked every 2 s), operations that add data fail with ENOSPC and the log says so; deletes still work. On BLOCKDATA_PATH's disk the free extents inside the data file count as free: the file never shrinks, but the blocks of deleted data are reused, so once a delete is committed (at the next commit interval or fsync) writes resume. 0 disables the check.",
    parse: (raw) => parseIntegerIn(raw, 0, 99, 'an integer between 0 and 99 (percent)'),
  }),
  fieldKey({
    name: 'BACKGROUND_DELETE',
    field: 'backgroundDelete',
    group: 'storage',
    type: 'boolean',
    allowed: BOOLEAN_ALLOWED,
    default: false,
    description:
      "Accepted for compatibility with lessfs; lessfs-ts does not act on it. Whatever its value, a deleted file of more than 65,536 blocks (8 GiB at BLKSIZE 128K, 256 MiB at 4K) has its blocks released in steps by a background task after the delete returns (an orphan until then; a crash leaves it to the next mount), so that no commit carries more changes than the store takes; a smaller file's blocks are released in the call's own transaction. A truncation that cuts more than 65,536 blocks releases them from the end in steps with commits between, before it returns, and changes the size last. on is accepted with a warning.",
    parse: parseBoolean,
    format: formatBoolean,
  }),
  // -- cache and commits
  fieldKey({
    name: 'CACHESIZE',
    field: 'cacheSizeMB',
    group: 'cache',
    type: 'integer',
    allowed: 'an integer between 1 and 65536 (MiB)',
    default: 128,
    description: 'Write cache size in MiB: partly written blocks and new blocks not yet in the data file, of the open and the committing transaction, each byte counted once. A commit starts at half of it; a full cache makes writers wait for one. A live replication master also keeps up to this much of its newest blocks in memory for its sender (and reads of them), a read cache holds a quarter of it. So lessfs holds at most about 1.25 × CACHESIZE of file data (2.25 × on a live master) whatever the number of writers, plus 32 MiB of acknowledged writes queued in the mount; measured peak RSS and what else it counts: docs/architecture.md, "Memory".',
    parse: (raw) => parseIntegerIn(raw, 1, 65536, 'an integer between 1 and 65536 (MiB)'),
  }),
  fieldKey({
    name: 'COMMIT_INTERVAL',
    field: 'commitIntervalS',
    group: 'cache',
    type: 'integer',
    allowed: 'an integer between 1 and 3600 (seconds)',
    default: 30,
    description: 'Seconds between commits of the write cache. Data is also committed on fsync, on cache pressure and at unmount.',
    parse: (raw) => parseIntegerIn(raw, 1, 3600, 'an integer between 1 and 3600 (seconds)'),
  }),
  fieldKey({
    name: 'SYNC_RELAX',
    field: 'syncRelax',
    group: 'cache',
    type: 'choice',
    allowed: '0, 1 or 2',
    default: 0,
    description:
      '0: fsync commits the file\'s data and waits until it is durable. 1: fsync commits without waiting for the disk (survives a crash of lessfs, not a power loss). 2: fsync returns at once; the data becomes durable at the next commit (often chosen for NFS exports).',
    parse: (raw) => parseIntegerIn(raw, 0, 2, '0, 1 or 2') as SyncRelax,
  }),
  fieldKey({
    name: 'ENABLE_TRANSACTIONS',
    field: 'enableTransactions',
    group: 'cache',
    type: 'boolean',
    allowed: BOOLEAN_ALLOWED,
    default: true,
    description: 'Accepted for compatibility. lessfs-ts always commits atomically; off is accepted with a warning and changes nothing.',
    lessfsNote: 'In lessfs, off meant a crash needed lessfsck; here a crash always leaves a transaction boundary.',
    parse: parseBoolean,
    format: formatBoolean,
  }),
  fieldKey({
    name: 'FUSE_ATTR_TABLE',
    field: 'fuseAttrTable',
    group: 'cache',
    type: 'boolean',
    allowed: BOOLEAN_ALLOWED,
    default: true,
    description:
      "on: the mount's libfuse threads answer lookups and attribute requests themselves from a table of what directory listings and the mount's own changes handed over (every name listed, what a create or chmod just made, and ENOENT for a name absent from a directory the table holds whole), instead of a round trip through lessfs's JS thread for each: `ls -l` of 10,000 files ~3x faster, creates ~1.4x (BENCHMARKS.md). Every change invalidates what it touches before it is answered, so answers are the same as without it (docs/architecture.md, \"Listed attributes\"). off: every request reaches lessfs, for diagnosis. Needs lessfs's build of fuse-native (npm ci); without it this is off.",
    lessfsNote: 'New in lessfs-ts.',
    parse: parseBoolean,
    format: formatBoolean,
  }),
  fieldKey({
    name: 'FUSE_READ_TABLE',
    field: 'fuseReadTable',
    group: 'cache',
    type: 'boolean',
    allowed: BOOLEAN_ALLOWED,
    default: true,
    description:
      "on: the mount's libfuse threads answer reads of a file themselves, with pread(2) of the data file straight into the kernel's buffer, for the blocks lessfs handed over after its own last read of that file (where each uncompressed block is in the data file; compressed blocks, blocks not yet written and files with writes queued stay with lessfs): a cold sequential read no longer takes a round trip through lessfs's JS thread per 128 KiB (BENCHMARKS.md). Every change to a file's blocks invalidates what was handed over before it is made, and a read checks that before and after its pread, so answers are the same as without it (docs/architecture.md, \"Reads from the data file\"). Off while the mount records a trace (TRACE_FILE). off: every read reaches lessfs. Needs lessfs's build of fuse-native (npm ci); without it this is off.",
    lessfsNote: 'New in lessfs-ts.',
    parse: parseBoolean,
    format: formatBoolean,
  }),
  // -- logging and the management port
  fieldKey({
    name: 'DEBUG',
    field: 'debug',
    group: 'management',
    type: 'integer',
    allowed: 'an integer between 0 and 5',
    default: 1,
    description: 'Log level: 0 critical errors only, 1 errors and warnings, 2 also informational messages, 3 also debug messages, 4 and 5 more detail still.',
    lessfsNote: 'Default 1 (errors and warnings); lessfs\'s sample config used 2.',
    parse: (raw) => parseIntegerIn(raw, 0, 5, 'an integer between 0 and 5') as LogLevel,
  }),
  fieldKey({
    name: 'LISTEN_IP',
    field: 'listenIp',
    group: 'management',
    type: 'address',
    allowed: IP_ALLOWED,
    default: '127.0.0.1',
    description:
      'Address of the management port (freeze, defrost, lockstatus, help, quit). It has no authentication: keep it on loopback; any other address gives a warning.',
    parse: parseIp,
  }),
  fieldKey({
    name: 'LISTEN_PORT',
    field: 'listenPort',
    group: 'management',
    type: 'integer',
    allowed: portAllowed(0),
    default: 100,
    description:
      'TCP port of the management interface; 0 disables it. The default 100 is lessfs\'s; ports below 1024 need root (or CAP_NET_BIND_SERVICE), so choose a higher port or 0 when running unprivileged.',
    parse: (raw) => parseIntegerIn(raw, 0, 65535, portAllowed(0)),
  }),
  fieldKey({
    name: 'TRACE_FILE',
    field: 'traceFile',
    group: 'management',
    type: 'path',
    allowed: PATH_ALLOWED,
    emptyMeansUnset: true,
    default: undefined,
    sample: { active: false, value: '/var/log/lessfs.trace' },
    description:
      'Record every completed FUSE operation of the mount to this file, one JSON line each, for lessfs-sim replay-trace (see docs/lessfs-sim.md); unset: no recording. The trace holds names, sizes, offsets, modes, results and times, never file contents: a write records one keyed fingerprint per BLKSIZE-aligned piece, which shows only which pieces are equal. Recording is asynchronous with bounded memory; if it fails or falls behind it stops with one log message and the mount goes on. Each mount starts a new trace (an existing one is renamed to FILE.1). Must not be inside the mount point. The --trace FILE option of lessfs overrides it.',
    lessfsNote: 'New in lessfs-ts.',
    parse: parsePath,
  }),
  // -- replication
  fieldKey({
    name: 'REPLICATION',
    field: 'replication',
    group: 'replication',
    type: 'choice',
    allowed: 'off or masterslave',
    default: 'off',
    description: 'masterslave: this node replicates, in the role given by REPLICATION_ROLE. off: no replication; the other REPLICATION_* keys are ignored.',
    lessfsNote: 'dualmaster (named in lessfs\'s manual as a future mode) is refused.',
    parse: (raw) => choice(raw, ['off', 'masterslave'] as const, 'off or masterslave'),
  }),
  fieldKey({
    name: 'REPLICATION_ROLE',
    field: 'replicationRole',
    group: 'replication',
    type: 'choice',
    allowed: 'master or slave',
    default: 'master',
    sample: { active: false },
    description: 'master: logs every committed transaction and ships it. slave: applies what the master sends; its mount is read-only.',
    parse: (raw) => choice(raw, ['master', 'slave'] as const, 'master or slave'),
  }),
  {
    name: 'REPLICATION_PARTNER_IP',
    group: 'replication',
    type: 'address',
    fields: ['replicationPartnerIp', 'replicationBatchMode'],
    required: false,
    emptyMeansUnset: true,
    defaults: { replicationPartnerIp: undefined, replicationBatchMode: false },
    defaultText: '(unset)',
    allowed: PARTNER_ALLOWED,
    description:
      'On a master: the slave to connect to, or -1 for batch mode (write and rotate replog.dta-SEQUENCE files in BLOCKDATA_PATH, never connect). On a slave, -1 means files are applied with replogtool when REPLICATION_WATCHDIR is unset.',
    lessfsNote: 'A host name is accepted as well as an address.',
    secret: false,
    sample: { active: false, value: '192.0.2.10' },
    parse: (raw) => {
      if (raw === '-1') return { replicationPartnerIp: undefined, replicationBatchMode: true };
      if (!isIpAddress(raw) && !isHostName(raw)) reject(`expected ${PARTNER_ALLOWED}`);
      return { replicationPartnerIp: raw, replicationBatchMode: false };
    },
    format: (config) => (config.replicationBatchMode ? '-1' : config.replicationPartnerIp),
  },
  fieldKey({
    name: 'REPLICATION_PARTNER_PORT',
    field: 'replicationPartnerPort',
    group: 'replication',
    type: 'integer',
    allowed: portAllowed(1),
    default: 101,
    sample: { active: false },
    description: 'On a live master: the port the slave listens on (its REPLICATION_LISTEN_PORT).',
    parse: (raw) => parseIntegerIn(raw, 1, 65535, portAllowed(1)),
  }),
  fieldKey({
    name: 'REPLICATION_LISTEN_IP',
    field: 'replicationListenIp',
    group: 'replication',
    type: 'address',
    allowed: `${IP_ALLOWED}; lessfs's -1 means REPLICATION_LISTEN_PORT=0`,
    default: '127.0.0.1',
    sample: { active: false, value: '0.0.0.0' },
    description:
      'On a slave: the address to accept the master on. A slave on another machine needs its own address or 0.0.0.0 here, and then should have REPLICATION_SECRET set (a warning says so otherwise).',
    lessfsNote: 'Default 127.0.0.1 (lessfs: 0.0.0.0), so nothing is exposed until asked for. -1 (lessfs: do not listen) is read as REPLICATION_LISTEN_PORT=0.',
    // -1 is rewritten before parsing (see applyLessfsSpellings).
    parse: parseIp,
  }),
  fieldKey({
    name: 'REPLICATION_LISTEN_PORT',
    field: 'replicationListenPort',
    group: 'replication',
    type: 'integer',
    allowed: portAllowed(0),
    default: 101,
    sample: { active: false },
    description: 'On a slave: the port to accept the master on; 0 means the slave does not listen. A slave with REPLICATION_WATCHDIR set does not listen either.',
    parse: (raw) => parseIntegerIn(raw, 0, 65535, portAllowed(0)),
  }),
  fieldKey({
    name: 'REPLICATION_WATCHDIR',
    field: 'replicationWatchdir',
    group: 'replication',
    type: 'path',
    allowed: PATH_ALLOWED,
    emptyMeansUnset: true,
    default: undefined,
    sample: { active: false, value: '/data/incoming' },
    description:
      'On a slave: a directory where replog.dta-SEQUENCE files from a batch-mode master arrive. They are applied strictly in sequence and each is renamed to replog.dta-SEQUENCE-processed. Copy files in under another name and rename them when complete. A slave with a watchdir does not listen.',
    parse: parsePath,
  }),
  fieldKey({
    name: 'REPLICATION_ENABLED',
    field: 'replicationEnabled',
    group: 'replication',
    type: 'boolean',
    allowed: BOOLEAN_ALLOWED,
    default: true,
    sample: { active: false },
    description:
      'off: the master keeps logging but does not send, and the slave does not apply; on drains the backlog. Can be switched without unmounting by writing 0 or 1 to /.lessfs/replication/enabled.',
    lessfsNote: 'Default on (lessfs: off), so a configured replication replicates.',
    parse: parseBoolean,
    format: formatBoolean,
  }),
  fieldKey({
    name: 'REPLICATION_SECRET',
    field: 'replicationSecret',
    group: 'replication',
    type: 'secret',
    allowed: SECRET_ALLOWED,
    emptyMeansUnset: true,
    secret: true,
    default: undefined,
    sample: { active: false, value: 'change-me-to-a-long-random-string' },
    description:
      'Shared secret of master and slave (the same on both). When set, both prove they know it when the master connects (HMAC-SHA256 challenge and response), every frame then carries a MAC, and either side refuses a peer without it. Unset: frames carry only their CRC (as in lessfs) and the log says the link is unauthenticated. Never echoed in messages; keep lessfs.cfg readable by root only, or pass it in the environment.',
    lessfsNote: 'New in lessfs-ts.',
    parse: (raw) => {
      if (raw.length < SECRET_CHARS_MIN || raw.length > SECRET_CHARS_MAX || CONTROL_RE.test(raw)) {
        reject(`expected ${SECRET_ALLOWED}`);
      }
      if (!representable(raw)) reject(`expected ${SECRET_ALLOWED}, not both quote characters together with " #"`);
      return raw;
    },
  }),
  fieldKey({
    name: 'ROTATE_REPLOG_SIZE',
    field: 'rotateReplogSizeBytes',
    group: 'replication',
    type: 'size',
    allowed: ROTATE_SIZE_ALLOWED,
    default: GiB,
    sample: { active: false },
    description: 'On a batch-mode master: rotate replog.dta to replog.dta-SEQUENCE once it grows past this size; 0 turns rotation by size off.',
    lessfsNote: 'K, M, G and T suffixes are accepted too.',
    parse: (raw) => parseOptionalSize(raw, 4 * KiB, TiB, ROTATE_SIZE_ALLOWED),
  }),
  fieldKey({
    name: 'ROTATE_REPLOG_INTERVAL',
    field: 'rotateReplogIntervalS',
    group: 'replication',
    type: 'integer',
    allowed: 'an integer between 0 (off) and 604800 (seconds)',
    default: 900,
    sample: { active: false },
    description:
      'On a batch-mode master: rotate a non-empty replog.dta at least this often, in seconds; 0 turns timed rotation off. Writing 1 to /.lessfs/replication/rotate_replog rotates at once.',
    lessfsNote: 'New in lessfs-ts; the default is lessfs\'s 15 minutes.',
    parse: (raw) => parseIntegerIn(raw, 0, 604800, 'an integer between 0 (off) and 604800 (seconds)'),
  }),
  fieldKey({
    name: 'MAX_BACKLOG_SIZE',
    field: 'maxBacklogSizeBytes',
    group: 'replication',
    type: 'size',
    allowed: BACKLOG_ALLOWED,
    default: 0,
    sample: { active: false },
    description: 'On a master: writes (and, through a mount, tree changes) pause while the log not yet acknowledged by the slave exceeds this size, and resume below it; 0 means unlimited. The log passes the limit by what was admitted before it did: the transaction whose commit passed it and the one taking writes meanwhile, each at most CACHESIZE of new blocks plus the partly written blocks its commit hashes (at most CACHESIZE more; none when every write covers whole blocks, as dd bs=1M does) plus one write per file being written, and the writes that had passed the hold and were waiting for cache room (one per file): at most 4 × CACHESIZE + 3 writes per file being written (2 × CACHESIZE + 3 writes with whole-block writes; a write is at most BLKSIZE through a mount), plus the records that describe them. The mount\'s queue of acknowledged writes (32 MiB) does not add to this: its writes wait at the same hold before they enter the cache, and none is acknowledged while it holds.',
    parse: (raw) => parseOptionalSize(raw, 4 * KiB, PiB, BACKLOG_ALLOWED),
  }),
];

const KEYS_BY_NAME: ReadonlyMap<string, ConfigKey> = new Map(CONFIG_KEYS.map((k) => [k.name, k]));

/** Keys of lessfs's own samples and manual that have no meaning here: warned about, then ignored. */
export const LESSFS_IGNORED_KEYS: readonly string[] = [
  'HASHLEN',
  'BLOCKDATA_IO_TYPE',
  'BLOCKDATA_BS',
  'BLOCKUSAGE_PATH',
  'BLOCKUSAGE_BS',
  'DIRENT_PATH',
  'DIRENT_BS',
  'FILEBLOCK_PATH',
  'FILEBLOCK_BS',
  'META_BS',
  'HARDLINK_PATH',
  'HARDLINK_BS',
  'SYMLINK_PATH',
  'SYMLINK_BS',
  'FREELIST_PATH',
  'FREELIST_BS',
  'MAX_THREADS',
  'DYNAMIC_DEFRAGMENTATION',
  'COREDUMPSIZE',
  'MIN_SPACE_CLEAN',
  'CLEAN_PROGRAM',
  'STICKY_ON_LOCKED',
  'ENCRYPT_META',
  'PASSWORD',
  'BDB_PRIVATE',
  'TUNEFORSIZE',
  'HAMSTERDB_CACHESIZE',
];
const IGNORED_KEY_SET = new Set(LESSFS_IGNORED_KEYS);

/** Refused rather than ignored: silently storing data unencrypted would betray the user. */
const ENCRYPT_KEY = 'ENCRYPT_DATA';

// Every field is set by exactly one key, except the ones that share a key.
(function checkKeyTable() {
  const seen = new Map<string, string>();
  for (const key of CONFIG_KEYS) {
    assert(/^[A-Z][A-Z0-9_]*$/.test(key.name), `key name ${key.name}`);
    assert(!IGNORED_KEY_SET.has(key.name) && key.name !== ENCRYPT_KEY, `${key.name} is both used and ignored`);
    assert(key.required === (key.defaultText === '(required)'), `${key.name} default`);
    for (const field of key.fields) {
      assert(!seen.has(field), `${field} set by both ${seen.get(field)} and ${key.name}`);
      seen.set(field, key.name);
    }
  }
  assert(seen.size === Object.keys(emptyFieldSet()).length, 'every LessfsConfig field has a key');
})();

/** All fields, so the table check above fails to compile when a field is added without a key. */
function emptyFieldSet(): Record<keyof LessfsConfig, true> {
  return {
    blockSizeBytes: true, blockDataPath: true, metaPath: true, compression: true, deduplication: true,
    hashName: true, cacheSizeMB: true, commitIntervalS: true, syncRelax: true, enableTransactions: true,
    lmdbMapSizeBytes: true, debug: true, listenIp: true, listenPort: true, minSpaceFreePercent: true,
    backgroundDelete: true, fuseAttrTable: true, fuseReadTable: true, traceFile: true, replication: true, replicationRole: true, replicationPartnerIp: true,
    replicationBatchMode: true, replicationPartnerPort: true, replicationListenIp: true,
    replicationListenPort: true, replicationWatchdir: true, replicationEnabled: true,
    rotateReplogSizeBytes: true, rotateReplogIntervalS: true, maxBacklogSizeBytes: true,
    replicationSecret: true,
  };
}

/** Every default, with the required paths filled in by the caller. */
export function defaultConfig(paths: { blockDataPath: string; metaPath: string }): LessfsConfig {
  const config: Partial<LessfsConfig> = { ...paths };
  for (const key of CONFIG_KEYS) Object.assign(config, key.defaults);
  Object.assign(config, paths);
  return config as LessfsConfig;
}

// ---------------------------------------------------------------- Parsing

interface RawValue {
  value: string;
  source: 'file' | 'env';
  /** 1-based line in the file (file values only). */
  line: number;
}

function shownValue(key: ConfigKey | undefined, value: string): string {
  if (key?.secret) return `(${value.length} characters, hidden)`;
  if (value === '') return '""';
  return value.length > SHOWN_VALUE_CHARS_MAX ? `${value.slice(0, SHOWN_VALUE_CHARS_MAX)}…` : value;
}

/** Split the text after '=' into the value, handling quotes and trailing comments. */
function valueText(afterEquals: string, where: string, key: string): string {
  const text = afterEquals.trim();
  if (text === '' || text.startsWith('#')) return '';
  const quote = text[0];
  if (quote === '"' || quote === "'") {
    const close = text.indexOf(quote, 1);
    if (close === -1) throw new ConfigError(`${where}: ${key} has an unterminated ${quote} quote`, key);
    const rest = text.slice(close + 1).trim();
    if (rest !== '' && !rest.startsWith('#')) {
      throw new ConfigError(`${where}: ${key} has text after its closing quote: ${rest.slice(0, 40)}`, key);
    }
    return text.slice(1, close).trim();
  }
  const comment = /\s#/.exec(text);
  return (comment ? text.slice(0, comment.index) : text).trim();
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length];
}

/** The known key closest to a mistyped one, when it is close enough to be a typo. */
function closestKey(name: string): string | undefined {
  if (name.length > KEY_CHARS_MAX) return undefined;
  const upper = name.toUpperCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const key of CONFIG_KEYS) {
    const d = editDistance(upper, key.name);
    if (d < bestDistance) {
      best = key.name;
      bestDistance = d;
    }
  }
  const limit = name.length >= 12 ? 3 : 2;
  return bestDistance <= limit ? best : undefined;
}

/**
 * Parse lessfs.cfg text, then let the environment override it. Throws one
 * ConfigError listing every problem found; returns warnings for what was
 * accepted but deserves attention.
 */
export function parseConfig(text: string, options: ParseConfigOptions = {}): ParsedConfig {
  const fileName = options.fileName ?? 'lessfs.cfg';
  const env = options.env ?? {};
  if (text.length > CONFIG_TEXT_CHARS_MAX) {
    throw new ConfigError(`${fileName} is ${text.length} characters long; at most ${CONFIG_TEXT_CHARS_MAX} are read`);
  }
  const warnings: string[] = [];
  const raw = new Map<string, RawValue>();
  const ignored: string[] = [];

  const lines = text.replace(/^\uFEFF/, '').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const where = `${fileName} line ${lineNo}`;
    const line = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i];
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    if (line.length > CONFIG_LINE_CHARS_MAX) {
      throw new ConfigError(`${where}: line is ${line.length} characters long; at most ${CONFIG_LINE_CHARS_MAX} are allowed`);
    }
    const equals = trimmed.indexOf('=');
    if (equals === -1) {
      throw new ConfigError(`${where}: expected KEY=VALUE, got: ${shownValue(undefined, trimmed)}`);
    }
    const name = trimmed.slice(0, equals).trim();
    if (name === '') throw new ConfigError(`${where}: expected KEY=VALUE, the key is missing in: ${shownValue(undefined, trimmed)}`);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || name.length > KEY_CHARS_MAX) {
      throw new ConfigError(`${where}: "${shownValue(undefined, name)}" is not a key name (expected KEY=VALUE, got: ${shownValue(undefined, trimmed)})`);
    }
    const key = KEYS_BY_NAME.get(name);
    const value = valueText(trimmed.slice(equals + 1), where, name);
    const previous = raw.get(name);
    if (previous) {
      warnings.push(`${where}: ${name} is set again (first on line ${previous.line}); the value on line ${lineNo} is used`);
    }
    raw.set(name, { value, source: 'file', line: lineNo });
    if (key) continue;
    if (name === ENCRYPT_KEY) continue; // checked below, once the last value is known
    if (IGNORED_KEY_SET.has(name)) {
      ignored.push(`${name} (line ${lineNo})`);
      continue;
    }
    const suggestion = closestKey(name);
    warnings.push(`${where}: unknown key ${name} ignored${suggestion ? ` (did you mean ${suggestion}?)` : ''}`);
  }
  if (ignored.length > 0) {
    warnings.push(`${fileName}: lessfs settings that lessfs-ts does not use were ignored: ${ignored.join(', ')}`);
  }
  const encrypt = raw.get(ENCRYPT_KEY);
  if (encrypt && !FALSE_WORDS.has(encrypt.value.toLowerCase()) && encrypt.value !== '') {
    throw new ConfigError(
      `${ENCRYPT_KEY}=${shownValue(undefined, encrypt.value)} is invalid: lessfs-ts does not encrypt data; expected off (or remove the line) (${fileName} line ${encrypt.line})`,
      ENCRYPT_KEY,
    );
  }

  for (const key of CONFIG_KEYS) {
    const value = env[key.name];
    if (value !== undefined) raw.set(key.name, { value: value.trim(), source: 'env', line: 0 });
  }
  applyLessfsSpellings(raw);

  const draft: Partial<LessfsConfig> = {};
  const sources: Record<string, ConfigSource> = {};
  const errors: ConfigError[] = [];
  const missing: string[] = [];
  for (const key of CONFIG_KEYS) {
    const given = raw.get(key.name);
    sources[key.name] = given ? given.source : 'default';
    if (!given) {
      if (key.required) missing.push(key.name);
      Object.assign(draft, key.defaults);
      continue;
    }
    const where = given.source === 'env' ? 'from the environment' : `${fileName} line ${given.line}`;
    if (given.value === '' && key.emptyMeansUnset) {
      Object.assign(draft, key.defaults);
      continue;
    }
    try {
      Object.assign(draft, key.parse(given.value, (w) => warnings.push(`${key.name} (${where}): ${w}`)));
    } catch (err) {
      if (!(err instanceof ValueRejected)) throw err;
      errors.push(new ConfigError(`${key.name}=${shownValue(key, given.value)} is invalid: ${err.reason} (${where})`, key.name));
    }
  }
  if (missing.length > 0) {
    errors.push(
      new ConfigError(
        `missing required key${missing.length > 1 ? 's' : ''} ${missing.join(', ')}: set ${missing.length > 1 ? 'them' : 'it'} in ${fileName} or in the environment`,
        missing[0],
      ),
    );
  }
  throwAll(errors);

  const config = draft as LessfsConfig;
  warnings.push(...validateConfig(config));
  return { config, warnings, sources };
}

/** lessfs wrote "do not listen" as REPLICATION_LISTEN_IP=-1; we keep that in the port. */
function applyLessfsSpellings(raw: Map<string, RawValue>): void {
  const listenIp = raw.get('REPLICATION_LISTEN_IP');
  if (listenIp?.value === '-1') {
    raw.delete('REPLICATION_LISTEN_IP');
    raw.set('REPLICATION_LISTEN_PORT', { ...listenIp, value: '0' });
  }
}

function throwAll(errors: ConfigError[]): void {
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) {
    throw new ConfigError(`${errors.length} configuration errors:\n  ${errors.map((e) => e.message).join('\n  ')}`, errors[0].key);
  }
}

// ---------------------------------------------------------------- Validation

export function replicationModeOf(config: LessfsConfig): ReplicationMode {
  if (config.replication === 'off') return 'off';
  if (config.replicationRole === 'master') return config.replicationBatchMode ? 'master-batch' : 'master-live';
  if (config.replicationWatchdir !== undefined) return 'slave-watchdir';
  // lessfs's REPLICATION_LISTEN_IP=-1 (read as port 0): a slave fed by replogtool.
  if (config.replicationBatchMode || config.replicationListenPort === 0) return 'slave-replogtool';
  return 'slave-listen';
}

/** Cross-key rules, as documented in docs/config.md. Kept beside the code that enforces them. */
const CROSS_KEY_RULES: readonly { level: 'error' | 'warning'; text: string }[] = [
  { level: 'error', text: 'REPLICATION=masterslave with REPLICATION_ROLE=master needs REPLICATION_PARTNER_IP (the slave\'s address, or -1 for batch mode).' },
  { level: 'error', text: 'A listening slave cannot use the management port\'s address and port (LISTEN_IP:LISTEN_PORT equal to, or overlapping through 0.0.0.0 or ::, REPLICATION_LISTEN_IP:REPLICATION_LISTEN_PORT).' },
  { level: 'warning', text: 'A slave without REPLICATION_WATCHDIR that does not listen (REPLICATION_PARTNER_IP=-1, or REPLICATION_LISTEN_PORT=0 / lessfs\'s REPLICATION_LISTEN_IP=-1) receives nothing by itself: log files must be applied with replogtool -c.' },
  { level: 'warning', text: 'REPLICATION_WATCHDIR on a master is ignored.' },
  { level: 'warning', text: 'A batch-mode master with ROTATE_REPLOG_SIZE=0 and ROTATE_REPLOG_INTERVAL=0 rotates its log only when asked through /.lessfs/replication/rotate_replog.' },
  { level: 'warning', text: 'A slave listening on an address other than loopback without REPLICATION_SECRET accepts any master.' },
  { level: 'warning', text: 'The management port on an address other than loopback is reachable without authentication.' },
  { level: 'warning', text: 'REPLICATION=off with other REPLICATION_*, ROTATE_REPLOG_* or MAX_BACKLOG_SIZE keys changed from their defaults: those keys are ignored.' },
  { level: 'warning', text: 'ENABLE_TRANSACTIONS=off changes nothing: lessfs-ts always commits atomically.' },
  { level: 'warning', text: 'BACKGROUND_DELETE=on changes nothing: deletes and truncations release their blocks in their own transaction.' },
  { level: 'warning', text: 'HASHNAME=sha1: SHA-1 collisions can be constructed.' },
];

/**
 * Check a whole config, whether parsed or built in code (the simulator builds
 * them directly): every field must be a value its key accepts, and the keys must
 * not contradict each other. Throws ConfigError; returns warnings.
 */
export function validateConfig(config: LessfsConfig): string[] {
  const errors: ConfigError[] = [];
  for (const key of CONFIG_KEYS) {
    const problem = fieldProblem(key, config);
    if (problem !== undefined) errors.push(new ConfigError(problem, key.name));
  }
  throwAll(errors);

  const warnings: string[] = [];
  const mode = replicationModeOf(config);
  if (mode === 'master-live' && config.replicationPartnerIp === undefined) {
    errors.push(
      new ConfigError(
        'REPLICATION_ROLE=master needs REPLICATION_PARTNER_IP: the slave\'s address, or -1 for batch mode (write log files, never connect)',
        'REPLICATION_PARTNER_IP',
      ),
    );
  }
  if (
    mode === 'slave-listen' &&
    config.replicationListenPort !== 0 &&
    config.listenPort === config.replicationListenPort &&
    addressesOverlap(config.listenIp, config.replicationListenIp)
  ) {
    errors.push(
      new ConfigError(
        `REPLICATION_LISTEN_IP=${config.replicationListenIp} REPLICATION_LISTEN_PORT=${config.replicationListenPort} clashes with the management port LISTEN_IP=${config.listenIp} LISTEN_PORT=${config.listenPort}: choose another port for one of them`,
        'REPLICATION_LISTEN_PORT',
      ),
    );
  }
  throwAll(errors);

  if (mode === 'slave-replogtool') {
    warnings.push('REPLICATION_ROLE=slave without REPLICATION_WATCHDIR that does not listen (REPLICATION_PARTNER_IP=-1 or REPLICATION_LISTEN_PORT=0): this slave receives nothing itself; apply log files with replogtool -c');
  }
  if (config.replication === 'masterslave' && config.replicationRole === 'master' && config.replicationWatchdir !== undefined) {
    warnings.push('REPLICATION_WATCHDIR is used only by a slave; it is ignored on a master');
  }
  if (mode === 'master-batch' && config.rotateReplogSizeBytes === 0 && config.rotateReplogIntervalS === 0) {
    warnings.push('ROTATE_REPLOG_SIZE=0 and ROTATE_REPLOG_INTERVAL=0: this batch-mode master rotates replog.dta only when 1 is written to /.lessfs/replication/rotate_replog');
  }
  if (mode === 'slave-listen' && classifyIp(config.replicationListenIp).kind !== 'loopback' && config.replicationSecret === undefined) {
    warnings.push(`REPLICATION_LISTEN_IP=${config.replicationListenIp} without REPLICATION_SECRET: this slave accepts any master that can reach it; set REPLICATION_SECRET on both nodes`);
  }
  if (config.listenPort !== 0 && classifyIp(config.listenIp).kind !== 'loopback') {
    warnings.push(`LISTEN_IP=${config.listenIp}: the management port (freeze, defrost) has no authentication and is reachable from the network; prefer 127.0.0.1 or LISTEN_PORT=0`);
  }
  if (config.replication === 'off') {
    const changed = CONFIG_KEYS.filter(
      (k) => k.group === 'replication' && k.name !== 'REPLICATION' && k.fields.some((f) => !Object.is(config[f], k.defaults[f])),
    ).map((k) => k.name);
    if (changed.length > 0) warnings.push(`REPLICATION=off: ${changed.join(', ')} ignored`);
  }
  if (!config.enableTransactions) {
    warnings.push('ENABLE_TRANSACTIONS=off changes nothing: lessfs-ts always commits atomically');
  }
  if (config.backgroundDelete) {
    warnings.push('BACKGROUND_DELETE=on changes nothing: deletes and truncations release their blocks in their own transaction (not implemented in lessfs-ts)');
  }
  if (config.hashName === 'sha1') {
    warnings.push('HASHNAME=sha1: SHA-1 collisions can be constructed, so a user who can write files could make two different blocks deduplicate; prefer sha256');
  }
  return warnings;
}

/** Why a config's fields are not what this key would parse from its own rendering, if they are not. */
function fieldProblem(key: ConfigKey, config: LessfsConfig): string | undefined {
  const fields = key.fields.map((f) => `${f}=${key.secret ? '(hidden)' : String(config[f])}`).join(', ');
  const text = key.format(config);
  let parsed: Partial<LessfsConfig>;
  if (text === undefined) {
    if (key.required) return `${key.name} is required (${fields})`;
    parsed = key.defaults;
  } else if (text === '' && key.emptyMeansUnset) {
    parsed = key.defaults;
  } else {
    try {
      parsed = key.parse(text, () => undefined);
    } catch (err) {
      if (!(err instanceof ValueRejected)) throw err;
      return `${key.name}=${shownValue(key, text)} is invalid: ${err.reason} (${fields})`;
    }
  }
  for (const field of key.fields) {
    if (!Object.is(parsed[field], config[field])) {
      return `${key.name}: ${fields} cannot be written as ${key.name}=${shownValue(key, text ?? '')}; expected ${key.allowed}`;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------- Rendering

function quoteValue(value: string): string {
  if (!needsQuotes(value)) return value;
  if (!value.includes('"')) return `"${value}"`;
  assert(!value.includes("'"), 'a value needing quotes holds both quote characters');
  return `'${value}'`;
}

function wrap(text: string, prefix: string, width = 78): string[] {
  const lines: string[] = [];
  let line = prefix;
  for (const word of text.split(/\s+/)) {
    if (line.length > prefix.length && line.length + 1 + word.length > width) {
      lines.push(line);
      line = prefix;
    }
    line += (line.length > prefix.length ? ' ' : '') + word;
  }
  if (line.length > prefix.length) lines.push(line);
  return lines;
}

const GROUP_TITLES: Record<ConfigGroup, string> = {
  storage: 'Storage',
  cache: 'Write cache and commits',
  management: 'Logging and the management port',
  replication: 'Replication',
};

/**
 * lessfs.cfg text for a config; parseConfig gives back an equal config. Keys
 * whose value is unset are left out. Throws AssertionError for a config that
 * no lessfs.cfg could express (check such configs with validateConfig first).
 */
export function renderConfig(config: LessfsConfig): string {
  const out = ['# lessfs.cfg written by lessfs-ts. Keys are described in docs/config.md.'];
  for (const key of CONFIG_KEYS) {
    const problem = fieldProblem(key, config);
    if (problem !== undefined) throw new AssertionError(`renderConfig: ${problem}`);
    const text = key.format(config);
    if (text !== undefined) out.push(`${key.name}=${quoteValue(text)}`);
  }
  return `${out.join('\n')}\n`;
}

function renderSample(): string {
  const out: string[] = [
    '# lessfs-ts configuration (lessfs.cfg).',
    '#',
    '# One KEY=VALUE per line; spaces around = are allowed; # starts a comment.',
    '# Every key may also be set in the environment, which overrides this file.',
    '# Keys left out take the default shown. Full reference: docs/config.md.',
  ];
  let group: ConfigGroup | undefined;
  for (const key of CONFIG_KEYS) {
    if (key.group !== group) {
      group = key.group;
      out.push('', `# ==== ${GROUP_TITLES[group]}`);
      if (group === 'replication') {
        out.push(
          '# To replicate, set REPLICATION=masterslave and uncomment what applies:',
          '#  master, live:   REPLICATION_ROLE=master, REPLICATION_PARTNER_IP=<slave>',
          '#  master, batch:  REPLICATION_ROLE=master, REPLICATION_PARTNER_IP=-1',
          '#  slave, live:    REPLICATION_ROLE=slave, REPLICATION_LISTEN_IP/PORT',
          '#  slave, batch:   REPLICATION_ROLE=slave, REPLICATION_WATCHDIR=<dir>',
        );
      }
    }
    out.push('#');
    out.push(...wrap(`${key.name}: ${key.description}`, '# '));
    const defaultPhrase = key.required ? 'Required.' : `Default: ${key.defaultText === '(unset)' ? 'unset' : key.defaultText}.`;
    out.push(...wrap(`Allowed: ${key.allowed}. ${defaultPhrase}`, '# '));
    const value = key.sample.value ?? key.defaultText;
    assert(!value.startsWith('('), `${key.name} needs a sample value`);
    out.push(`${key.sample.active ? '' : '#'}${key.name}=${value}`);
  }
  return `${out.join('\n')}\n`;
}

/**
 * The quick-start lessfs.cfg, commented like lessfs's sample. BLOCKDATA_PATH and
 * META_PATH are `${DATA_DIR}/dta` and `${DATA_DIR}/mta`: substitute DATA_DIR
 * (see defaultConfigText) before parsing; unsubstituted, parseConfig refuses them.
 */
export const DEFAULT_CONFIG_TEXT: string = renderSample();

/** DEFAULT_CONFIG_TEXT with the placeholder replaced by an absolute directory. */
export function defaultConfigText(dataDir: string): string {
  if (!dataDir.startsWith('/') || CONTROL_RE.test(dataDir) || /["'#]/.test(dataDir) || dataDir.includes(DATA_DIR_PLACEHOLDER)) {
    throw new ConfigError(`data directory ${shownValue(undefined, dataDir)} is invalid: expected an absolute path without quotes, # or control characters`);
  }
  const dir = dataDir.length > 1 ? dataDir.replace(/\/+$/, '') : '';
  return DEFAULT_CONFIG_TEXT.split(DATA_DIR_PLACEHOLDER).join(dir);
}

// ---------------------------------------------------------------- Docs

function defaultCell(key: ConfigKey): string {
  if (key.required) return 'required';
  return key.defaultText === '(unset)' ? 'unset' : `\`${key.defaultText}\``;
}

function cell(text: string): string {
  return markdownText(text).replace(/\|/g, '\\|');
}

/** Plain text in markdown: `REPLICATION_*` must not open emphasis. */
function markdownText(text: string): string {
  return text.replace(/\*/g, '\\*');
}

/** docs/config.md, generated so that it cannot disagree with the parser. */
export function renderConfigDocs(): string {
  const out: string[] = [
    '# lessfs.cfg reference',
    '',
    '<!-- Generated from CONFIG_KEYS by renderConfigDocs() in src/core/config.ts; do not edit by hand.',
    '     test/unit/config.test.ts fails when this file differs. Regenerate with:',
    '     LESSFS_UPDATE_DOCS=1 npx vitest run test/unit/config.test.ts -->',
    '',
    'lessfs-ts reads the same `lessfs.cfg` as lessfs: the commands take its path',
    '(`mklessfs -c CFG`, `lessfs CFG MOUNTPOINT`, `lessfsck -c CFG`, `replogtool -c CFG`).',
    '',
    '## Syntax',
    '',
    '- One `KEY=VALUE` per line. Spaces around `=` are allowed; keys are case-sensitive.',
    '- `#` at the start of a line makes it a comment. After a value, `#` starts a comment when',
    '  whitespace precedes it (`CACHESIZE=256  # MiB`); `a#b` is an ordinary value.',
    '- A value may be quoted with `"` or `\'`; quotes are needed only for a value that contains',
    '  ` #`. Leading and trailing spaces are dropped, inside quotes too. There are no escapes.',
    '- Blank lines are ignored; CRLF line ends and a UTF-8 byte order mark are accepted.',
    '- An empty value (`KEY=`) unsets an optional key without a default value',
    `  (${CONFIG_KEYS.filter((k) => k.emptyMeansUnset).map((k) => k.name).join(', ')}); for any other key it is an error.`,
    '- A line without `=` is an error naming the line.',
    '- A key given twice: the last one wins, with a warning naming both lines.',
    '- An unknown key: a warning naming it and its line (suggesting the closest key when it looks',
    '  like a typo), then it is ignored. The settings of lessfs that have no meaning here are ignored',
    '  with one warning listing them (see below).',
    '- Sizes are bytes, or a number with a `K`, `M`, `G` or `T` suffix (binary: `1K` = 1024;',
    '  `KB` and `KiB` mean the same). Booleans are `on`/`off`; `yes`/`no`, `true`/`false`, `1`/`0` and',
    '  `enabled`/`disabled` are accepted too. Choices are case-insensitive.',
    '- At most ' + `${CONFIG_TEXT_CHARS_MAX} characters are read, and a line may hold at most ${CONFIG_LINE_CHARS_MAX}.`,
    '',
    '## The environment',
    '',
    'Every key may instead be set as an environment variable of the same name (lessfs reads its',
    'settings through the environment too). A variable overrides the file. Only variables named',
    'like a key below are read, and their values are trimmed. This is how to keep',
    '`REPLICATION_SECRET` out of the file. Beware of a stray `DEBUG` variable meant for another',
    'program: an invalid value is an error that says it came from the environment.',
    '',
    '## Errors and warnings',
    '',
    'An invalid value stops the command with a message naming the key, the value and what is',
    'allowed, and where it came from, e.g.',
    '`BLKSIZE=12345 is invalid: expected a power of two between 4096 and 131072 (lessfs.cfg line 7)`',
    'or `... (from the environment)`. All problems are reported at once. `REPLICATION_SECRET` is',
    'never echoed. Missing required keys are named together.',
    '',
    '## Keys',
    '',
    '| Key | Type | Default | Allowed |',
    '|---|---|---|---|',
  ];
  for (const key of CONFIG_KEYS) {
    out.push(`| [\`${key.name}\`](#${key.name.toLowerCase()}) | ${key.type} | ${defaultCell(key)} | ${cell(key.allowed)} |`);
  }
  let group: ConfigGroup | undefined;
  for (const key of CONFIG_KEYS) {
    if (key.group !== group) {
      group = key.group;
      out.push('', `## ${GROUP_TITLES[group]}`);
    }
    out.push('', `### ${key.name}`, '', markdownText(key.description), '');
    out.push(`- Type: ${key.type}${key.required ? ' (required)' : ''}`);
    out.push(`- Default: ${defaultCell(key)}`);
    out.push(`- Allowed: ${key.allowed}`);
    if (key.lessfsNote) out.push(`- lessfs: ${key.lessfsNote}`);
  }
  out.push('', '## Rules between keys', '');
  out.push('A node\'s replication mode follows from the keys: off; a live master (connects to');
  out.push('REPLICATION_PARTNER_IP); a batch master (REPLICATION_PARTNER_IP=-1, writes log files); a slave');
  out.push('that applies files from REPLICATION_WATCHDIR (it does not listen then); a slave with');
  out.push('REPLICATION_PARTNER_IP=-1 and no watchdir (files applied with `replogtool -c`); or a slave that');
  out.push('listens on REPLICATION_LISTEN_IP:REPLICATION_LISTEN_PORT.', '');
  for (const rule of CROSS_KEY_RULES) out.push(`- ${rule.level === 'error' ? 'Error' : 'Warning'}: ${markdownText(rule.text)}`);
  out.push('', 'BLOCKDATA_PATH and META_PATH may be the same directory. All paths must be absolute.');
  out.push('', '## lessfs settings that are ignored', '');
  out.push('These keys from lessfs\'s manual and samples are accepted with one warning and have no effect:');
  out.push('', LESSFS_IGNORED_KEYS.map((k) => `\`${k}\``).join(', ') + '.', '');
  out.push(`\`${ENCRYPT_KEY}\` is accepted only as \`off\`: lessfs-ts does not encrypt, and storing data`);
  out.push('unencrypted when encryption was asked for would be worse than refusing.');
  out.push('', '## The quick-start configuration', '');
  out.push(`\`DEFAULT_CONFIG_TEXT\` (src/core/config.ts) is the commented lessfs.cfg below. Its paths use the`);
  out.push(`placeholder \`${DATA_DIR_PLACEHOLDER}\`; \`defaultConfigText(dataDir)\` substitutes it (callers must, before parsing:`);
  out.push('the parser refuses the placeholder).', '', '```ini', DEFAULT_CONFIG_TEXT.trimEnd(), '```', '');
  return out.join('\n');
}
