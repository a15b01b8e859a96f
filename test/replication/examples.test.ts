// The batch-replication example scripts (examples/): syntax, and runs against a
// fake slave: SCP/SSH/REPLOGTOOL replaced by local scripts that record their
// arguments, so the order, the names and the stop-at-failure rule are checked
// without a network or a real replogtool.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LessfsConfig } from '../../src/core/config.ts';
import type { Logger } from '../../src/core/drivers.ts';
import { FsEngine } from '../../src/core/fs/engine.ts';
import { engineOptionsFromConfig } from '../../src/core/fs/options.ts';
import { PathFs } from '../../src/core/fs/path-fs.ts';
import { ReplicationNode } from '../../src/core/replication/node.ts';
import { realEngineDrivers } from '../../src/real/drivers.ts';
import { fsDigest, poolData } from '../../src/sim/workload.ts';
import { makeBatchNode } from '../support/batch-nodes.ts';

const EXAMPLES = resolve(import.meta.dirname, '../../examples');
const SHIP = join(EXAMPLES, 'batch-master-ship.sh');
const APPLY = join(EXAMPLES, 'batch-slave-apply.sh');
const RUN_TIMEOUT_MS = 20_000;
const SLAVE_HOST = 'backup@slave.example';
const REPLOGTOOL_JS = resolve(import.meta.dirname, '../../bin/replogtool.js');

const dirs: string[] = [];
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'lessfs-examples-'));
  dirs.push(d);
  return d;
}

/** Looks like a rotated log to the scripts: header magic first, trailer magic 32 bytes from the end. */
function rotatedBytes(sequence: number): Buffer {
  const body = Buffer.alloc(64, 0);
  body.write(`LESSFSRL sequence ${sequence}`);
  const trailer = Buffer.alloc(32, 0);
  trailer.write('LESSFSRT');
  trailer.writeUInt32BE(sequence, 12);
  return Buffer.concat([body, trailer]);
}

function script(path: string, text: string): string {
  writeFileSync(path, text);
  chmodSync(path, 0o755);
  return path;
}

interface Run {
  status: number | null;
  stderr: string;
}

function run(scriptPath: string, env: Record<string, string>): Run {
  // A clean environment: no lessfs.cfg keys (META_PATH...) leak in from the runner's.
  const r = spawnSync('bash', [scriptPath], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: env.HOME ?? tmpdir(), LC_ALL: 'C', ...env },
    encoding: 'utf8',
    timeout: RUN_TIMEOUT_MS,
  });
  if (r.error) throw r.error;
  return { status: r.status, stderr: r.stderr };
}

function ls(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

function callLog(path: string): string[] {
  return existsSync(path) ? readFileSync(path, 'utf8').trim().split('\n').filter((l) => l !== '') : [];
}

/** Hold `lockPath` with flock in another process until it is killed. */
async function holdLock(lockPath: string): Promise<void> {
  const child = spawn('bash', ['-c', 'exec 9>>"$1"; flock 9; echo locked; exec sleep 60', 'hold', lockPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  await new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error('lock holder did not start')), 5000);
    child.stdout?.once('data', () => {
      clearTimeout(timer);
      ok();
    });
    child.once('exit', (code) => fail(new Error(`lock holder exited ${code}`)));
  });
}

/** scp and ssh stand-ins that act on local paths (the host part is ignored) and log each call to $FAKE_CALLS. */
function fakeTransport(bin: string): { scp: string; ssh: string } {
  // scp [opts] -- SRC HOST:PATH -> cp SRC PATH; fails for FAKE_SCP_FAIL.
  const scp = script(
    join(bin, 'fake-scp'),
    `#!/usr/bin/env bash
set -eu
src=\${@: -2:1}; dst=\${@: -1}
echo "scp $*" >>"$FAKE_CALLS"
if [ "\${src##*/}" = "\${FAKE_SCP_FAIL:-}" ]; then echo "fake scp: connection lost" >&2; exit 1; fi
cp -- "$src" "\${dst#*:}"
`,
  );
  // ssh [opts] -- HOST COMMAND -> sh -c COMMAND; fails for FAKE_SSH_FAIL.
  const ssh = script(
    join(bin, 'fake-ssh'),
    `#!/usr/bin/env bash
set -eu
host=\${@: -2:1}; cmd=\${@: -1}
echo "ssh $host $cmd" >>"$FAKE_CALLS"
case "$cmd" in *"\${FAKE_SSH_FAIL:-//none//}"*) echo "fake ssh: connection lost" >&2; exit 255;; esac
exec sh -c "$cmd"
`,
  );
  return { scp, ssh };
}

describe('example scripts: syntax', () => {
  it.each([SHIP, APPLY])('bash -n %s', (path) => {
    const r = spawnSync('bash', ['-n', path], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  const shellcheck = spawnSync('shellcheck', ['--version']);
  it.skipIf(shellcheck.error !== undefined || shellcheck.status !== 0).each([SHIP, APPLY])('shellcheck %s', (path) => {
    const r = spawnSync('shellcheck', ['-x', path], { encoding: 'utf8' });
    expect(r.stdout).toBe('');
    expect(r.status).toBe(0);
  });

  it.each([SHIP, APPLY])('-h prints the help of %s', (path) => {
    const r = spawnSync('bash', [path, '-h'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('replog.dta-N');
    expect(r.stdout).not.toContain('set -euo');
  });

  it('crontab.example names the two scripts and has five time fields per job', () => {
    const lines = readFileSync(join(EXAMPLES, 'crontab.example'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.trim().startsWith('#') && !/^[A-Z_]+=/.test(l.trim()));
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const l of lines) expect(l.trim().split(/\s+/).length).toBeGreaterThan(5);
    const text = lines.join('\n');
    expect(text).toContain('batch-master-ship.sh');
    expect(text).toContain('batch-slave-apply.sh');
  });
});

describe('batch-master-ship.sh against a fake slave', () => {
  function setup() {
    const root = tempDir();
    const master = join(root, 'master-dta');
    const slave = join(root, 'slave-incoming');
    const bin = join(root, 'bin');
    for (const d of [master, slave, bin]) mkdirSync(d);
    const calls = join(root, 'calls.log');
    const { scp, ssh } = fakeTransport(bin);
    for (const n of [1, 2, 10]) writeFileSync(join(master, `replog.dta-${n}`), rotatedBytes(n));
    const live = Buffer.from('LESSFSRL live log, no trailer');
    const next = Buffer.from('LESSFSRL next log');
    writeFileSync(join(master, 'replog.dta'), live);
    writeFileSync(join(master, 'replog.dta.next'), next);
    // Names that are not complete rotated logs: never shipped, never touched.
    for (const other of ['replog.dta-3-processed', 'replog.dta-x', 'replog.dta-07', '.replog.dta-4.part', 'data.dta']) writeFileSync(join(master, other), 'x');
    const env = { BLOCKDATA_PATH: master, SLAVE_HOST, SLAVE_WATCHDIR: slave, SCP: scp, SSH: ssh, FAKE_CALLS: calls, HOME: root };
    return { root, master, slave, calls, env, live, next };
  }

  it('ships replog.dta-N in numeric order under a temporary name, renames, marks, then moves locally', () => {
    const s = setup();
    const r = run(SHIP, s.env);
    expect(r.stderr).toContain('shipped 3 file(s)');
    expect(r.status).toBe(0);
    expect(ls(s.slave)).toEqual(['replog.dta-1', 'replog.dta-1.rdy', 'replog.dta-10', 'replog.dta-10.rdy', 'replog.dta-2', 'replog.dta-2.rdy']);
    for (const n of [1, 2, 10]) expect(readFileSync(join(s.slave, `replog.dta-${n}`))).toEqual(rotatedBytes(n));
    // Live log and .next untouched; the other names too; shipped files moved.
    expect(readFileSync(join(s.master, 'replog.dta'))).toEqual(s.live);
    expect(readFileSync(join(s.master, 'replog.dta.next'))).toEqual(s.next);
    expect(ls(s.master)).toEqual(['.batch-master-ship.lock', '.replog.dta-4.part', 'data.dta', 'replog.dta', 'replog.dta-07', 'replog.dta-3-processed', 'replog.dta-x', 'replog.dta.next', 'shipped']);
    expect(ls(join(s.master, 'shipped'))).toEqual(['replog.dta-1', 'replog.dta-10', 'replog.dta-2']);
    for (const n of [1, 2, 10]) expect(readFileSync(join(s.master, 'shipped', `replog.dta-${n}`))).toEqual(rotatedBytes(n));

    // Order: for each file, scp to .replog.dta-N.part, then one ssh that renames it; 1, 2, 10.
    const calls = callLog(s.calls);
    expect(calls).toHaveLength(6);
    [1, 2, 10].forEach((n, i) => {
      const scp = calls[2 * i];
      const ssh = calls[2 * i + 1];
      expect(scp).toMatch(new RegExp(`^scp .* -- ${s.master}/replog\\.dta-${n} ${SLAVE_HOST}:${s.slave}/\\.replog\\.dta-${n}\\.part$`));
      expect(scp).toContain('-o BatchMode=yes');
      expect(ssh.startsWith(`ssh ${SLAVE_HOST} set -e; sync -- ${s.slave}/.replog.dta-${n}.part; mv -f -- ${s.slave}/.replog.dta-${n}.part ${s.slave}/replog.dta-${n}; : > ${s.slave}/replog.dta-${n}.rdy`)).toBe(true);
    });

    // Nothing left: a second run ships nothing and says nothing.
    const again = run(SHIP, s.env);
    expect(again.status).toBe(0);
    expect(again.stderr).toBe('');
    expect(callLog(s.calls)).toHaveLength(6);
  });

  it('stops at the first failed copy and resumes from it in the next run', () => {
    const s = setup();
    const r = run(SHIP, { ...s.env, FAKE_SCP_FAIL: 'replog.dta-2' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/copying replog\.dta-2 .* failed; stopping/);
    expect(ls(s.slave)).toEqual(['replog.dta-1', 'replog.dta-1.rdy']);
    expect(ls(join(s.master, 'shipped'))).toEqual(['replog.dta-1']);
    expect(existsSync(join(s.master, 'replog.dta-2'))).toBe(true);
    expect(existsSync(join(s.master, 'replog.dta-10'))).toBe(true);
    expect(callLog(s.calls).some((c) => c.includes('replog.dta-10'))).toBe(false);

    const resumed = run(SHIP, s.env);
    expect(resumed.status).toBe(0);
    expect(ls(join(s.master, 'shipped'))).toEqual(['replog.dta-1', 'replog.dta-10', 'replog.dta-2']);
    expect(ls(s.slave)).toEqual(['replog.dta-1', 'replog.dta-1.rdy', 'replog.dta-10', 'replog.dta-10.rdy', 'replog.dta-2', 'replog.dta-2.rdy']);
  });

  it('a failed rename on the slave keeps the local file and leaves only the ignored temporary name there', () => {
    const s = setup();
    const r = run(SHIP, { ...s.env, FAKE_SSH_FAIL: '.replog.dta-2.part' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/renaming .*\.replog\.dta-2\.part .* failed; stopping/);
    expect(ls(s.slave)).toEqual(['.replog.dta-2.part', 'replog.dta-1', 'replog.dta-1.rdy']);
    expect(existsSync(join(s.master, 'replog.dta-2'))).toBe(true);
    expect(ls(join(s.master, 'shipped'))).toEqual(['replog.dta-1']);
    // The next run overwrites the temporary copy and finishes.
    expect(run(SHIP, s.env).status).toBe(0);
    expect(ls(s.slave).filter((n) => n.endsWith('.part'))).toEqual([]);
  });

  it('KEEP_SHIPPED=0 deletes, WRITE_RDY=0 writes no markers, REMOTE_SYNC=0 does not sync', () => {
    const s = setup();
    const r = run(SHIP, { ...s.env, KEEP_SHIPPED: '0', WRITE_RDY: '0', REMOTE_SYNC: '0' });
    expect(r.status).toBe(0);
    expect(ls(s.slave)).toEqual(['replog.dta-1', 'replog.dta-10', 'replog.dta-2']);
    expect(existsSync(join(s.master, 'shipped'))).toBe(false);
    expect(ls(s.master).filter((n) => /^replog\.dta-\d+$/.test(n))).toEqual(['replog.dta-07']);
    expect(callLog(s.calls).some((c) => c.includes('sync'))).toBe(false);
  });

  it('refuses a file without a trailer and ships nothing after it', () => {
    const s = setup();
    writeFileSync(join(s.master, 'replog.dta-2'), rotatedBytes(2).subarray(0, 80));
    const r = run(SHIP, s.env);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('has no trailer');
    expect(ls(s.slave)).toEqual(['replog.dta-1', 'replog.dta-1.rdy']);
    expect(existsSync(join(s.master, 'replog.dta-2'))).toBe(true);
  });

  it('ROTATE_FIRST=1 writes 1 to MOUNTPOINT/.lessfs/replication/rotate_replog, and needs MOUNTPOINT', () => {
    const s = setup();
    const mnt = join(s.root, 'mnt');
    mkdirSync(join(mnt, '.lessfs', 'replication'), { recursive: true });
    writeFileSync(join(mnt, '.lessfs', 'replication', 'rotate_replog'), '0\n');
    const r = run(SHIP, { ...s.env, ROTATE_FIRST: '1', MOUNTPOINT: mnt });
    expect(r.status).toBe(0);
    expect(readFileSync(join(mnt, '.lessfs', 'replication', 'rotate_replog'), 'utf8')).toBe('1\n');
    expect(r.stderr).toContain('rotated the live log');

    const noMount = run(SHIP, { ...s.env, ROTATE_FIRST: '1' });
    expect(noMount.status).toBe(1);
    expect(noMount.stderr).toContain('needs MOUNTPOINT');
  });

  it('a run that finds the lock held ships nothing', async () => {
    const s = setup();
    await holdLock(join(s.master, '.batch-master-ship.lock'));
    const r = run(SHIP, s.env);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('another run holds');
    expect(ls(s.slave)).toEqual([]);
    expect(callLog(s.calls)).toEqual([]);
  });

  it('says what is missing or wrong in its settings', () => {
    const s = setup();
    const cases: [Record<string, string>, string][] = [
      [{ SLAVE_HOST: '' }, 'set SLAVE_HOST'],
      [{ BLOCKDATA_PATH: '' }, 'set BLOCKDATA_PATH'],
      [{ BLOCKDATA_PATH: join(s.root, 'nope') }, 'is not a directory'],
      [{ SLAVE_WATCHDIR: 'relative/dir' }, 'SLAVE_WATCHDIR must be an absolute path'],
      [{ SLAVE_WATCHDIR: '/with space' }, 'SLAVE_WATCHDIR must be an absolute path'],
      [{ KEEP_SHIPPED: 'yes' }, 'KEEP_SHIPPED must be 0 or 1'],
      [{ MAX_FILES: '0' }, 'MAX_FILES must be'],
    ];
    for (const [vars, message] of cases) {
      const r = run(SHIP, { ...s.env, ...vars });
      expect(r.stderr).toContain(message);
      expect(r.status).toBe(1);
    }
    expect(callLog(s.calls)).toEqual([]);
  });

  it('MAX_FILES ships the oldest first and leaves the rest for the next run', () => {
    const s = setup();
    const r = run(SHIP, { ...s.env, MAX_FILES: '2' });
    expect(r.status).toBe(0);
    expect(ls(join(s.master, 'shipped'))).toEqual(['replog.dta-1', 'replog.dta-2']);
    expect(existsSync(join(s.master, 'replog.dta-10'))).toBe(true);
  });
});

describe('batch-slave-apply.sh with a fake replogtool', () => {
  function setup() {
    const root = tempDir();
    const incoming = join(root, 'incoming');
    const meta = join(root, 'slave-meta');
    for (const d of [incoming, meta]) mkdirSync(d);
    const cfg = join(root, 'slave.cfg');
    writeFileSync(cfg, `# slave\nREPLICATION=masterslave\nREPLICATION_ROLE=slave\nREPLICATION_PARTNER_IP=-1\nMETA_PATH = ${meta}   # metadata\nBLOCKDATA_PATH=${root}/dta\n`);
    const calls = join(root, 'replogtool.log');
    // Records its arguments; refuses FAKE_FAIL like replogtool refuses a damaged file.
    const tool = script(
      join(root, 'fake-replogtool'),
      `#!/usr/bin/env bash
echo "$*" >>"$FAKE_CALLS"
file=$2
if [ "\${file##*/}" = "\${FAKE_FAIL:-}" ]; then echo "replogtool: ECRC: \${file##*/}: whole-file CRC mismatch; nothing applied" >&2; exit 1; fi
echo "applied \${file##*/}"
`,
    );
    for (const n of [1, 2, 10]) {
      writeFileSync(join(incoming, `replog.dta-${n}`), rotatedBytes(n));
      writeFileSync(join(incoming, `replog.dta-${n}.rdy`), '');
    }
    for (const other of ['.replog.dta-11.part', 'replog.dta-0', 'replog.dta-5-processed', 'notes.txt']) writeFileSync(join(incoming, other), 'x');
    const env = { SLAVE_CFG: cfg, INCOMING_DIR: incoming, REPLOGTOOL: tool, FAKE_CALLS: calls, HOME: root };
    return { root, incoming, meta, cfg, calls, env };
  }

  const applied = (calls: string, cfg: string, incoming: string): string[] =>
    callLog(calls).map((line) => {
      const m = /^-r (\S+) -c (\S+)$/.exec(line);
      expect(m, line).not.toBeNull();
      expect(m![2]).toBe(cfg);
      expect(m![1].startsWith(`${incoming}/`)).toBe(true);
      return m![1].slice(incoming.length + 1);
    });

  it('applies replog.dta-N in numeric order with replogtool -r FILE -c CFG and moves each to processed/', () => {
    const s = setup();
    const r = run(APPLY, s.env);
    expect(r.status).toBe(0);
    expect(applied(s.calls, s.cfg, s.incoming)).toEqual(['replog.dta-1', 'replog.dta-2', 'replog.dta-10']);
    expect(ls(join(s.incoming, 'processed'))).toEqual([
      'replog.dta-1-processed',
      'replog.dta-1-processed.rdy',
      'replog.dta-10-processed',
      'replog.dta-10-processed.rdy',
      'replog.dta-2-processed',
      'replog.dta-2-processed.rdy',
    ]);
    for (const n of [1, 2, 10]) expect(readFileSync(join(s.incoming, 'processed', `replog.dta-${n}-processed`))).toEqual(rotatedBytes(n));
    expect(ls(s.incoming)).toEqual(['.batch-slave-apply.lock', '.replog.dta-11.part', 'notes.txt', 'processed', 'replog.dta-0', 'replog.dta-5-processed']);
    expect(r.stderr).toContain('replogtool: applied replog.dta-10');
    expect(r.stderr).toContain('applied 3 file(s)');
  });

  it('stops at a file replogtool refuses, prints why, and leaves it and everything after it', () => {
    const s = setup();
    const r = run(APPLY, { ...s.env, FAKE_FAIL: 'replog.dta-2' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('ECRC: replog.dta-2: whole-file CRC mismatch');
    expect(r.stderr).toContain('stopping: replog.dta-2 stays');
    expect(applied(s.calls, s.cfg, s.incoming)).toEqual(['replog.dta-1', 'replog.dta-2']);
    expect(ls(join(s.incoming, 'processed'))).toEqual(['replog.dta-1-processed', 'replog.dta-1-processed.rdy']);
    for (const n of ['replog.dta-2', 'replog.dta-2.rdy', 'replog.dta-10', 'replog.dta-10.rdy']) expect(existsSync(join(s.incoming, n))).toBe(true);
  });

  it('waits at the first file without its .rdy marker; REQUIRE_RDY=0 needs none', () => {
    const s = setup();
    rmSync(join(s.incoming, 'replog.dta-2.rdy'));
    const r = run(APPLY, s.env);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('replog.dta-2 has no marker');
    expect(applied(s.calls, s.cfg, s.incoming)).toEqual(['replog.dta-1']);

    const noMarkers = run(APPLY, { ...s.env, REQUIRE_RDY: '0' });
    expect(noMarkers.status).toBe(0);
    expect(applied(s.calls, s.cfg, s.incoming)).toEqual(['replog.dta-1', 'replog.dta-2', 'replog.dta-10']);
    expect(ls(join(s.incoming, 'processed'))).toContain('replog.dta-2-processed');
    expect(ls(join(s.incoming, 'processed'))).not.toContain('replog.dta-2-processed.rdy');
  });

  it('skips a mounted slave (its META_PATH/lessfs.lock held by a live pid) and says replogtool would refuse it', () => {
    const s = setup();
    writeFileSync(join(s.meta, 'lessfs.lock'), `${process.pid} lessfs mount /mnt/slave\n`);
    const r = run(APPLY, s.env);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('the slave is mounted');
    expect(r.stderr).toContain('replogtool refuses a mounted slave');
    expect(callLog(s.calls)).toEqual([]);
    expect(existsSync(join(s.incoming, 'replog.dta-1'))).toBe(true);

    // A stale lock (its process is gone) is no obstacle: replogtool takes it over.
    const gone = spawnSync('true');
    writeFileSync(join(s.meta, 'lessfs.lock'), `${gone.pid ?? 999999999} lessfs mount /mnt/slave\n`);
    const stale = run(APPLY, s.env);
    expect(stale.status).toBe(0);
    expect(applied(s.calls, s.cfg, s.incoming)).toEqual(['replog.dta-1', 'replog.dta-2', 'replog.dta-10']);
  });

  it('a run that finds the lock held applies nothing', async () => {
    const s = setup();
    await holdLock(join(s.incoming, '.batch-slave-apply.lock'));
    const r = run(APPLY, s.env);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('another run holds');
    expect(callLog(s.calls)).toEqual([]);
  });

  it('says what is missing in its settings', () => {
    const s = setup();
    for (const [vars, message] of [
      [{ SLAVE_CFG: '' }, 'set SLAVE_CFG'],
      [{ SLAVE_CFG: join(s.root, 'nope.cfg') }, 'is not a file'],
      [{ INCOMING_DIR: '' }, 'set INCOMING_DIR'],
      [{ REQUIRE_RDY: 'yes' }, 'REQUIRE_RDY must be 0 or 1'],
    ] as [Record<string, string>, string][]) {
      const r = run(APPLY, { ...s.env, ...vars });
      expect(r.stderr).toContain(message);
      expect(r.status).toBe(1);
    }
    expect(callLog(s.calls)).toEqual([]);
  });
});

describe('ship and apply with the real replogtool', () => {
  const BLOCK = 4096;
  const quiet: Logger = { log: () => undefined };

  const makeNode = (dir: string, role: 'master' | 'slave', fsId: string): ReturnType<typeof makeBatchNode> => makeBatchNode(dir, role, fsId, BLOCK);

  async function slaveDigest(config: LessfsConfig): Promise<string> {
    const engine = await FsEngine.open(realEngineDrivers(quiet), engineOptionsFromConfig(config));
    try {
      return await fsDigest(new PathFs(engine));
    } finally {
      await engine.close();
    }
  }

  it("a real master's rotated files, shipped and applied in order, give the master's tree; a damaged one is refused", async () => {
    const root = tempDir();
    const bin = join(root, 'bin');
    const incoming = join(root, 'incoming');
    for (const d of [bin, incoming]) mkdirSync(d);
    const master = await makeNode(join(root, 'master'), 'master', 'examples-master');
    const slave = await makeNode(join(root, 'slave'), 'slave', 'examples-slave');
    const { scp, ssh } = fakeTransport(bin);

    // Three rotations and a live log that never rotates.
    const drivers = realEngineDrivers(quiet);
    const repl = new ReplicationNode(master.config, drivers);
    const engine = await FsEngine.open(drivers, engineOptionsFromConfig(master.config), (e) => repl.attach(e));
    repl.start(engine);
    let digest: string;
    try {
      const fs = new PathFs(engine);
      fs.mkdir('/d');
      for (const [k, name] of ['/d/a', '/d/b', '/d/c'].entries()) {
        fs.create(name);
        await fs.write(name, 0, poolData(BLOCK, k % 2, 3 * BLOCK + 100 * k));
        await engine.commit();
        await repl.control.rotate!();
      }
      digest = await fsDigest(fs);
      fs.create('/live');
      await fs.write('/live', 0, poolData(BLOCK, 3, 5000));
      await engine.commit();
    } finally {
      await repl.beforeEngineClose();
      await engine.close();
      await repl.afterEngineClose();
    }
    const dta = master.config.blockDataPath;
    expect(ls(dta).filter((n) => n.startsWith('replog'))).toEqual(['replog.dta', 'replog.dta-1', 'replog.dta-2', 'replog.dta-3']);
    const liveBefore = readFileSync(join(dta, 'replog.dta'));
    // The third file arrives damaged (a bit flipped on the way): kept aside, swapped in after shipping.
    const third = readFileSync(join(dta, 'replog.dta-3'));

    const calls = join(root, 'calls.log');
    const ship = run(SHIP, { BLOCKDATA_PATH: dta, SLAVE_HOST, SLAVE_WATCHDIR: incoming, SCP: scp, SSH: ssh, FAKE_CALLS: calls, HOME: root });
    expect(ship.stderr).toContain('shipped 3 file(s)');
    expect(ship.status).toBe(0);
    expect(readFileSync(join(dta, 'replog.dta'))).toEqual(liveBefore);
    const damaged = Uint8Array.from(third);
    damaged[Math.floor(damaged.length / 2)] ^= 0x10;
    writeFileSync(join(incoming, 'replog.dta-3'), damaged);

    const env = { SLAVE_CFG: slave.cfgPath, INCOMING_DIR: incoming, REPLOGTOOL: `${process.execPath} ${REPLOGTOOL_JS}`, HOME: root };
    const refused = run(APPLY, env);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/ECRC: .*replog\.dta-3/);
    expect(refused.stderr).toContain('stopping: replog.dta-3 stays');
    expect(ls(join(incoming, 'processed')).filter((n) => !n.endsWith('.rdy'))).toEqual(['replog.dta-1-processed', 'replog.dta-2-processed']);

    // The good copy arrives: applied; the tree is the master's at its last rotation.
    writeFileSync(join(incoming, 'replog.dta-3'), third);
    const good = run(APPLY, env);
    expect(good.stderr).toContain('applied replog.dta-3');
    expect(good.status).toBe(0);
    expect(await slaveDigest(slave.config)).toBe(digest);

    // Shipped again (a run that died before moving its local copy): skipped, moved, nothing changes.
    writeFileSync(join(incoming, 'replog.dta-2'), readFileSync(join(dta, 'shipped', 'replog.dta-2')));
    writeFileSync(join(incoming, 'replog.dta-2.rdy'), '');
    const again = run(APPLY, env);
    expect(again.stderr).toContain('already applied');
    expect(again.status).toBe(0);
    expect(ls(incoming).filter((n) => n.startsWith('replog'))).toEqual([]);
    expect(await slaveDigest(slave.config)).toBe(digest);
  });
});
