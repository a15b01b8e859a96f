import { replicationModeOf, type LessfsConfig } from '../config.ts';
import type { EngineOptions } from './types.ts';

/** Codec ids stored with every block (Primitives.codecs): never renumber. */
export const CODEC_IDS = { none: 0, deflate: 1, lz4: 2 } as const;

/** Engine options from a parsed lessfs.cfg. */
export function engineOptionsFromConfig(config: LessfsConfig, overrides: Partial<EngineOptions> = {}): EngineOptions {
  return {
    metaPath: config.metaPath,
    blockDataPath: config.blockDataPath,
    blockSizeBytes: config.blockSizeBytes,
    hashName: config.hashName,
    codec: CODEC_IDS[config.compression],
    deduplication: config.deduplication,
    cacheSizeBytes: config.cacheSizeMB * 1024 * 1024,
    commitIntervalMs: config.commitIntervalS * 1000,
    syncRelax: config.syncRelax,
    lmdbMapSizeBytes: config.lmdbMapSizeBytes,
    readOnly: false,
    replica: config.replication === 'masterslave' && config.replicationRole === 'slave',
    pageCacheData: replicationModeOf(config) === 'master-batch',
    ...overrides,
  };
}

/**
 * The space reserve of a mount (EngineOptions.spaceReserveBytes) for a
 * META_PATH disk of this size: 2% of it, at least 2 MiB and at most 64 MiB.
 * On the 48 MiB tmpfs of test/mount/persistence.test.ts, 2 MiB let the store
 * commit the delete of a ~40 MiB file of 4 KiB blocks that had filled it.
 */
export function spaceReserveFor(diskTotalBytes: number): number {
  return Math.min(64 << 20, Math.max(2 << 20, Math.floor((diskTotalBytes * 0.02) / 4096) * 4096));
}
