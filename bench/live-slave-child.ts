// A live slave for the benchmark, in its own process (as a real slave runs on
// its own machine): formats a store, listens on 127.0.0.1 (a free port),
// prints "PORT n", applies what its master streams, and closes cleanly on
// SIGTERM. Argument: JSON { dir, blockBytes, cacheMb }.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '../src/core/config.ts';
import { FsEngine } from '../src/core/fs/engine.ts';
import { engineOptionsFromConfig } from '../src/core/fs/options.ts';
import { ReplicationNode } from '../src/core/replication/node.ts';
import { realEngineDrivers } from '../src/real/drivers.ts';
import { RealNet } from '../src/real/net.ts';
import { RealRng } from '../src/real/rng.ts';

/** A free port on 127.0.0.1 (the config's port 0 means "do not listen"). */
async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

const args = JSON.parse(process.argv[2] ?? '{}') as { dir: string; blockBytes: number; cacheMb: number };
const cfg = [
  `BLKSIZE=${args.blockBytes}`,
  `BLOCKDATA_PATH=${join(args.dir, 'dta')}`,
  `META_PATH=${join(args.dir, 'mta')}`,
  `CACHESIZE=${args.cacheMb}`,
  'LISTEN_PORT=0',
  'MIN_SPACE_FREE=0',
  'REPLICATION=masterslave',
  'REPLICATION_ROLE=slave',
  'REPLICATION_LISTEN_IP=127.0.0.1',
  `REPLICATION_LISTEN_PORT=${await freePort()}`,
].join('\n');
const { config } = parseConfig(cfg);
const drivers = realEngineDrivers({ log: (level, m) => { if (level <= 0) process.stderr.write(`slave: ${m}\n`); } });
mkdirSync(config.metaPath, { recursive: true });
const options = engineOptionsFromConfig(config);
await FsEngine.format(drivers, options, { force: false, fsId: 'bench-slave' });
const repl = new ReplicationNode(config, { ...drivers, net: new RealNet(), rng: new RealRng() });
const engine = await FsEngine.open(drivers, options, (e) => repl.attach(e));
await repl.start(engine);
process.stdout.write(`PORT ${repl.liveReceiver?.port}\n`);
let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  void (async () => {
    await repl.beforeEngineClose();
    await engine.close();
    await repl.afterEngineClose();
    // LESSFS_BENCH_SLAVE_CPU=1: the slave's CPU time over its whole life (all phases), on stderr.
    if (process.env.LESSFS_BENCH_SLAVE_CPU === '1') {
      const u = process.cpuUsage();
      process.stderr.write(`slave cpu: user ${(u.user / 1e6).toFixed(2)} s, system ${(u.system / 1e6).toFixed(2)} s\n`);
    }
    process.stdout.write('CLOSED\n');
    process.exit(0);
  })();
});
