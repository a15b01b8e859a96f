// A batch-mode master or slave on the real drivers (LMDB, node:fs) for tests
// that run the commands as users do: its lessfs.cfg written, its directories
// made, the filesystem formatted.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig, type LessfsConfig } from '../../src/core/config.ts';
import type { Logger } from '../../src/core/drivers.ts';
import { FsEngine } from '../../src/core/fs/engine.ts';
import { engineOptionsFromConfig } from '../../src/core/fs/options.ts';
import { realEngineDrivers } from '../../src/real/drivers.ts';

const quiet: Logger = { log: () => undefined };

/** lessfs.cfg of a batch node in `dir` (no rotation by size or timer, no management port); `extra` lines go first. */
export function batchConfigText(dir: string, role: 'master' | 'slave', blockSizeBytes: number, extra: string[] = []): string {
  return [
    ...extra,
    `BLKSIZE=${blockSizeBytes}`,
    `BLOCKDATA_PATH=${dir}/dta`,
    `META_PATH=${dir}/mta`,
    'LISTEN_PORT=0',
    'REPLICATION=masterslave',
    `REPLICATION_ROLE=${role}`,
    'REPLICATION_PARTNER_IP=-1',
    'ROTATE_REPLOG_SIZE=0',
    'ROTATE_REPLOG_INTERVAL=0',
    '',
  ].join('\n');
}

/** Write the config file, make its directories, format the filesystem; returns the config file and the parsed config. */
export async function makeBatchNode(
  dir: string,
  role: 'master' | 'slave',
  fsId: string,
  blockSizeBytes: number,
  extra: string[] = [],
): Promise<{ cfgPath: string; config: LessfsConfig }> {
  for (const sub of ['mta', 'dta']) mkdirSync(join(dir, sub), { recursive: true });
  const cfgPath = join(dir, 'lessfs.cfg');
  const text = batchConfigText(dir, role, blockSizeBytes, extra);
  writeFileSync(cfgPath, text);
  const config = parseConfig(text, { fileName: cfgPath }).config;
  await FsEngine.format(realEngineDrivers(quiet), engineOptionsFromConfig(config), { force: false, fsId });
  return { cfgPath, config };
}
