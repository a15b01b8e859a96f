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
