// lessfs.cfg settings for a simulated cluster (`lessfs-sim --config CFG`): the
// text is parsed by the same parseConfig as a real mount, and every key the
// file sets that the simulation can honour overrides the run's own choice on
// both nodes. Keys without meaning in a simulation (paths, addresses, ports,
// the replication role...) are reported as ignored. The environment never
// overrides anything here: a replay must not depend on it.

import { parseConfig } from '../core/config.ts';
import { CODEC_IDS } from '../core/fs/options.ts';
import type { EngineOptions } from '../core/fs/types.ts';
import type { SimMode } from './schedule.ts';

/** A config as given to a run (and kept in its capsule, so replay needs no file). */
export interface SimConfigSource {
  /** The file it was read from (for messages). */
  name: string;
  text: string;
}

export interface SimConfig {
  /** Engine options of both nodes set by the file. */
  engine: Partial<EngineOptions>;
  /** Live mode: the file sets REPLICATION_SECRET (value undefined: set empty, so no secret). */
  secret?: { value: string | undefined };
  maxBacklogSizeBytes?: number;
  /** Batch mode: the master rotates by itself too. */
  rotateReplogSizeBytes?: number;
  rotateReplogIntervalS?: number;
  /** Keys of the file the simulation applies. */
  applied: string[];
  /** Keys of the file without meaning here, with why. */
  ignored: Array<{ key: string; why: string }>;
  /** parseConfig's warnings, but those about the replication topology and addresses. */
  warnings: string[];
}

/** Keys the simulation applies in either mode. */
const ENGINE_KEYS = ['BLKSIZE', 'HASHNAME', 'COMPRESSION', 'DEDUPLICATION', 'CACHESIZE', 'COMMIT_INTERVAL', 'SYNC_RELAX'];
const MODE_KEYS: Record<SimMode, string[]> = {
  live: ['REPLICATION_SECRET', 'MAX_BACKLOG_SIZE'],
  batch: ['ROTATE_REPLOG_SIZE', 'ROTATE_REPLOG_INTERVAL'],
};

const IGNORED_WHY: Record<string, string> = {
  BLOCKDATA_PATH: 'a path: the simulator places both nodes',
  META_PATH: 'a path: the simulator places both nodes',
  REPLICATION_WATCHDIR: 'a path: the simulator places both nodes',
  LISTEN_IP: 'an address or port: the simulator connects the nodes',
  LISTEN_PORT: 'an address or port: the simulator connects the nodes',
  REPLICATION_PARTNER_IP: 'an address or port: the simulator connects the nodes',
  REPLICATION_PARTNER_PORT: 'an address or port: the simulator connects the nodes',
  REPLICATION_LISTEN_IP: 'an address or port: the simulator connects the nodes',
  REPLICATION_LISTEN_PORT: 'an address or port: the simulator connects the nodes',
  REPLICATION: 'the simulator always runs a master and a slave (--mode picks live or batch)',
  REPLICATION_ROLE: 'the simulator always runs a master and a slave (--mode picks live or batch)',
  REPLICATION_ENABLED: 'the simulator keeps replication enabled',
  LMDB_MAPSIZE: 'the simulated store has no map size',
  MIN_SPACE_FREE: 'simulated disks do not fill up',
  BACKGROUND_DELETE: 'not used by the engine',
  DEBUG: 'simulated nodes do not log',
  ENABLE_TRANSACTIONS: 'commits are always atomic',
  REPLICATION_SECRET: 'live mode only',
  MAX_BACKLOG_SIZE: 'live mode only',
  ROTATE_REPLOG_SIZE: 'batch mode only',
  ROTATE_REPLOG_INTERVAL: 'batch mode only',
};

/**
 * parseConfig's warnings about the replication topology and addresses: the
 * simulator builds its own pair, so they do not apply (matched by how they start).
 */
const TOPOLOGY_WARNINGS = [
  'REPLICATION=off:',
  'REPLICATION_ROLE=slave without',
  'REPLICATION_WATCHDIR is used only',
  'ROTATE_REPLOG_SIZE=0 and ROTATE_REPLOG_INTERVAL=0',
  'REPLICATION_LISTEN_IP=',
  'LISTEN_IP=',
];

/** Required by parseConfig, meaningless here: filled in when the file leaves them out. */
const PLACEHOLDERS: Record<string, string> = { BLOCKDATA_PATH: '/sim/dta', META_PATH: '/sim/mta' };

/**
 * Parse a config for a simulated cluster in `mode`. Throws ConfigError (from
 * parseConfig, naming the key, the value and what is expected) for a bad file.
 */
export function simConfig(src: SimConfigSource, mode: SimMode): SimConfig {
  let text = src.text;
  const added = new Set<string>();
  for (const [key, value] of Object.entries(PLACEHOLDERS)) {
    if (!new RegExp(`^\\s*${key}\\s*=`, 'm').test(text)) {
      // Appended after the last line, so the file's own line numbers stay right in messages.
      text += `\n${key}=${value}`;
      added.add(key);
    }
  }
  const parsed = parseConfig(text, { env: {}, fileName: src.name });
  const cfg = parsed.config;
  const inFile = Object.keys(parsed.sources).filter((k) => parsed.sources[k] === 'file' && !added.has(k));
  const applies = new Set([...ENGINE_KEYS, ...MODE_KEYS[mode]]);
  const warnings = parsed.warnings.filter((w) => !TOPOLOGY_WARNINGS.some((t) => w.startsWith(t)));
  const out: SimConfig = { engine: {}, applied: [], ignored: [], warnings };
  for (const key of inFile) {
    if (!applies.has(key)) {
      out.ignored.push({ key, why: IGNORED_WHY[key] ?? 'not simulated' });
      continue;
    }
    out.applied.push(key);
    switch (key) {
      case 'BLKSIZE': out.engine.blockSizeBytes = cfg.blockSizeBytes; break;
      case 'HASHNAME': out.engine.hashName = cfg.hashName; break;
      case 'COMPRESSION': out.engine.codec = CODEC_IDS[cfg.compression]; break;
      case 'DEDUPLICATION': out.engine.deduplication = cfg.deduplication; break;
      case 'CACHESIZE': out.engine.cacheSizeBytes = cfg.cacheSizeMB * 1024 * 1024; break;
      case 'COMMIT_INTERVAL': out.engine.commitIntervalMs = cfg.commitIntervalS * 1000; break;
      case 'SYNC_RELAX': out.engine.syncRelax = cfg.syncRelax; break;
      case 'REPLICATION_SECRET': out.secret = { value: cfg.replicationSecret }; break;
      case 'MAX_BACKLOG_SIZE': out.maxBacklogSizeBytes = cfg.maxBacklogSizeBytes; break;
      case 'ROTATE_REPLOG_SIZE': out.rotateReplogSizeBytes = cfg.rotateReplogSizeBytes; break;
      case 'ROTATE_REPLOG_INTERVAL': out.rotateReplogIntervalS = cfg.rotateReplogIntervalS; break;
      default: throw new Error(`sim-config: key ${key} is applied but has no mapping`);
    }
  }
  return out;
}

/** "BLOCKDATA_PATH, META_PATH (a path: ...); LISTEN_IP (...)": ignored keys grouped by why. */
export function describeIgnored(ignored: SimConfig['ignored']): string {
  const byWhy = new Map<string, string[]>();
  for (const { key, why } of ignored) byWhy.set(why, [...(byWhy.get(why) ?? []), key]);
  return [...byWhy].map(([why, keys]) => `${keys.join(', ')} (${why})`).join('; ');
}
