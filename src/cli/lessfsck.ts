// lessfsck [-f] [-t] [-r] -c CFG : check (and repair) an unmounted filesystem.

import { formatFsckReport, fsck } from '../core/fs/fsck.ts';
import { engineOptionsFromConfig } from '../core/fs/options.ts';
import { realEngineDrivers, StderrLogger } from '../real/drivers.ts';
import { acquireLock } from '../real/lock.ts';
import { configPathOf, EXIT_OK, EXIT_RUNTIME, loadConfig, parseCommandLine, type Command } from './common.ts';

const usage = `Usage: lessfsck [-f] [-t] [-r] -c CONFIG

Check the invariants of an unmounted lessfs filesystem: block reference counts,
unreferenced and missing blocks, directory entries and link counts, reachability,
file sizes against block maps, data-file extents and counters.

  -c, --config FILE  the lessfs.cfg of the filesystem
  -f, --force        check even if the filesystem was cleanly unmounted (lessfsck
                     always checks fully; the flag is accepted for lessfs users)
  -t, --thorough     also read back every stored block and verify its hash
  -r, --repair       repair what is found: recompute reference counts and counters,
                     free unreferenced blocks, put unreachable inodes in /lost+found,
                     grow sizes to cover their blocks, rebuild block records that do
                     not decode from their data when it hashes to the block's key
                     (never drops data it can verify; a block whose data is not
                     found becomes a hole, and the report says it is lost).
                     Repairs bypass replication: on a master they are a
                     transaction its slave cannot get, on a slave they make it
                     differ from its master; either must then be re-seeded
                     (the report warns)
  -h, --help         show this help

Exit status: 0 clean (or everything repaired), 1 problems remain or error, 2 usage.
`;

export const lessfsck: Command = {
  name: 'lessfsck',
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandLine(argv, {
      options: {
        config: { type: 'string', short: 'c' },
        force: { type: 'boolean', short: 'f' },
        thorough: { type: 'boolean', short: 't' },
        repair: { type: 'boolean', short: 'r' },
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
    const config = loadConfig('lessfsck', cfgPath);
    const lock = acquireLock(config.metaPath, 'lessfsck');
    try {
      const drivers = realEngineDrivers(new StderrLogger(config.debug, 'lessfsck'));
      const options = engineOptionsFromConfig(config, { readOnly: true });
      const report = await fsck(drivers, options, {
        thorough: values.thorough === true,
        repair: values.repair === true,
        replicationRole: config.replication === 'masterslave' ? config.replicationRole : undefined,
      });
      process.stdout.write(`${formatFsckReport(report)}\n`);
      const remaining = report.problems.filter((p) => !p.repaired).length;
      return remaining === 0 ? EXIT_OK : EXIT_RUNTIME;
    } finally {
      lock.release();
    }
  },
};
