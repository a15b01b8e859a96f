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
 * META_PATH disk of this size: 2% of it, at least 8 MiB (or a tenth of a
 * disk smaller than 80 MiB) and at most 64 MiB.
 * Released at the first ENOSPC, half of it may take blocks accepted before
 * the disk filled (their writes failed), half stays for the store to commit
 * the deletes that free space. 2 MiB (the first minimum) let a 48 MiB tmpfs
 * commit the delete of the file that filled it, but not the delete of
 * another file with a second's worth of failed writes waiting.
 */
export function spaceReserveFor(diskTotalBytes: number): number {
  const pages = (bytes: number): number => Math.floor(bytes / 4096) * 4096;
  // At least 8 MiB, but never more than a tenth of a small disk.
  return Math.min(64 << 20, Math.max(Math.min(8 << 20, pages(diskTotalBytes * 0.1)), pages(diskTotalBytes * 0.02)));
}
