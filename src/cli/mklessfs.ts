// mklessfs [-f] -c CFG | mklessfs [-f] CFG : format a new filesystem.

import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FsEngine } from '../core/fs/engine.ts';
import { engineOptionsFromConfig } from '../core/fs/options.ts';
import { DATA_FILE } from '../core/fs/schema.ts';
import { realEngineDrivers, StderrLogger } from '../real/drivers.ts';
import { acquireLock } from '../real/lock.ts';
import { CliError, configPathOf, EXIT_OK, loadConfig, parseCommandLine, type Command } from './common.ts';

const usage = `Usage: mklessfs [-f] -c CONFIG
       mklessfs [-f] CONFIG

Format a new lessfs filesystem at the BLOCKDATA_PATH and META_PATH of CONFIG
(a lessfs.cfg; any key may also come from the environment).

  -c, --config FILE  the lessfs.cfg to use
  -f, --force        overwrite an existing filesystem (in META_PATH, or block data
                     in BLOCKDATA_PATH) and create missing directories
  -h, --help         show this help

Exit status: 0 formatted, 1 error, 2 usage error.
`;

function checkDir(key: string, path: string, force: boolean): void {
  if (!existsSync(path)) {
    if (!force) throw new CliError(`${key}=${path} does not exist: create it, or use -f to have mklessfs create it`);
    mkdirSync(path, { recursive: true });
    return;
  }
  if (!statSync(path).isDirectory()) throw new CliError(`${key}=${path} is not a directory`);
}

export const mklessfs: Command = {
  name: 'mklessfs',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandLine(argv, {
      options: {
        config: { type: 'string', short: 'c' },
        force: { type: 'boolean', short: 'f' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      process.stdout.write(usage);
      return EXIT_OK;
    }
    const cfgPath = configPathOf(values.config, positionals);
    const force = values.force === true;
    const config = loadConfig('mklessfs', cfgPath);
    checkDir('META_PATH', config.metaPath, force);
    checkDir('BLOCKDATA_PATH', config.blockDataPath, force);
    const lock = acquireLock(config.metaPath, 'mklessfs');
    try {
      // The lock and the format record live under META_PATH; a data file left in
      // BLOCKDATA_PATH (another filesystem's, when two configs share the path)
      // would be truncated by the format, so it needs -f as an existing META_PATH does.
      const dataFile = join(config.blockDataPath, DATA_FILE);
      const dataBytes = existsSync(dataFile) ? statSync(dataFile).size : 0;
      if (!force && dataBytes > 0) {
        throw new CliError(`BLOCKDATA_PATH=${config.blockDataPath} already holds block data (${DATA_FILE}, ${dataBytes} bytes), perhaps another filesystem's: give this one its own BLOCKDATA_PATH, or use -f to overwrite it`);
      }
      if (force) {
        // A fresh environment rather than an emptied one: LMDB never shrinks its file.
        for (const f of ['data.mdb', 'lock.mdb']) rmSync(join(config.metaPath, f), { force: true });
        rmSync(join(config.blockDataPath, DATA_FILE), { force: true });
      }
      const logger = new StderrLogger(config.debug, 'mklessfs');
      const options = engineOptionsFromConfig(config, { readOnly: false });
      const info = await FsEngine.format(realEngineDrivers(logger), options, { force, fsId: randomUUID(), uid: process.getuid?.(), gid: process.getgid?.() });
      process.stdout.write(
        `mklessfs: formatted ${config.metaPath} (metadata) and ${config.blockDataPath} (block data): ` +
          `BLKSIZE=${info.blockSizeBytes} HASHNAME=${info.hashName} fs id ${info.fsId}\n`,
      );
      return EXIT_OK;
    } finally {
      lock.release();
    }
  },
};

