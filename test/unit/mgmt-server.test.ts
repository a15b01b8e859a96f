// The management port on the simulated network: every command and answer, line
// framing (CRLF, case, whitespace, pipelining, split commands), limits (line
// length, connections, pending commands, idle time, backpressure), clients
// vanishing mid-command, and determinism.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Connection, Logger, LogLevel } from '../../src/core/drivers.ts';
import {
  MGMT_CLOSE_LINGER_MS,
  MGMT_LOCK_LINES_MAX,
  MGMT_PENDING_LINES_MAX,
  ManagementServer,
  type ManagementServerOptions,
  type ManagementTarget,
} from '../../src/core/mgmt/server.ts';
import { SimNetwork, type SimNetOptions } from '../../src/sim/net.ts';
import { Domain, Scheduler } from '../../src/sim/scheduler.ts';

const SERVER = '10.0.0.1';
const CLIENT = '10.0.0.2';
const PORT = 100;

/** A filesystem stand-in: freeze takes freezeDelayMs of virtual time. */
class FakeTarget implements ManagementTarget {
  frozen = false;
  freezeCalls = 0;
  defrostCalls = 0;
  freezeDelayMs = 0;
  freezeError: Error | undefined;
  locks: string[] = [];
  constructor(private readonly scheduler: Scheduler) {}

  freeze(): Promise<void> {
    this.freezeCalls++;
    // Overlapping freezes would be a server bug: it serializes them.
    expect(this.frozen).toBe(false);
    return new Promise((resolve, reject) => {
      this.scheduler.schedule(this.freezeDelayMs, 'fake freeze', () => {
        if (this.freezeError) {
          reject(this.freezeError);
          return;
        }
        this.frozen = true;
        resolve();
      });
    });
  }

  defrost(): boolean {
    this.defrostCalls++;
    if (!this.frozen) return false;
    this.frozen = false;
    return true;
  }

  lockStatus(): string[] {
    return [...this.locks];
  }
}

interface Client {
  conn: Connection;
  received: Uint8Array[];
  closed: boolean;
  closeError: Error | undefined;
  closedAtMs: number | undefined;
  text(): string;
  send(data: string | Uint8Array): void;
}

interface World {
  scheduler: Scheduler;
  network: SimNetwork;
  server: ManagementServer;
  target: FakeTarget;
  logs: Array<[LogLevel, string]>;
  connect(options?: { read?: boolean }): Promise<Client>;
  until(cond: () => boolean, what: string): Promise<void>;
  pause(ms: number): Promise<void>;
}

async function world(
  seed: string,
  serverOptions: Partial<ManagementServerOptions> = {},
  netOptions: Partial<SimNetOptions> = {},
): Promise<World> {
  const scheduler = new Scheduler({ seed, stepsMax: 1_000_000 });
  const network = new SimNetwork(scheduler, scheduler.rng.split('net'), netOptions);
  const serverDomain = new Domain('server');
  const serverNet = network.host(SERVER, serverDomain);
  const clientNet = network.host(CLIENT, new Domain('client'));
  const logs: Array<[LogLevel, string]> = [];
  const logger: Logger = { log: (level, message) => logs.push([level, message]) };
  const target = new FakeTarget(scheduler);
  const server = await scheduler.runUntilSettled(
    ManagementServer.start(serverNet, scheduler.clock(serverDomain), logger, target, {
      host: SERVER,
      port: PORT,
      ...serverOptions,
    }),
    'start',
  );
  const until = async (cond: () => boolean, what: string): Promise<void> => {
    await scheduler.run({ done: cond });
    if (!cond()) throw new Error(`seed ${seed}: ${what} never happened (queue empty at ${scheduler.nowMs()} ms)`);
  };
  const connect = async (options: { read?: boolean } = {}): Promise<Client> => {
    const conn = await scheduler.runUntilSettled(clientNet.connect(SERVER, PORT), 'connect');
    const client: Client = {
      conn,
      received: [],
      closed: false,
      closeError: undefined,
      closedAtMs: undefined,
      text: () => Buffer.concat(client.received).toString('latin1'),
      send: (data) => {
        conn.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
      },
    };
    if (options.read !== false) conn.onData((chunk) => client.received.push(chunk));
    conn.onClose((error) => {
      client.closed = true;
      client.closeError = error;
      client.closedAtMs = scheduler.nowMs();
    });
    return client;
  };
  return {
    scheduler,
    network,
    server,
    target,
    logs,
    connect,
    until,
    pause: (ms) => scheduler.run({ untilMs: scheduler.nowMs() + ms }),
  };
}

/** The transcript cut into answers: each is its lines, the last being the status line. */
function answers(text: string): string[][] {
  const result: string[][] = [];
  let current: string[] = [];
  for (const line of text.split('\n').slice(0, -1)) {
    current.push(line);
    if (line.startsWith('+OK') || line.startsWith('-ERR')) {
      result.push(current);
      current = [];
    }
  }
  return result;
}

function statuses(client: Client): string[] {
  return answers(client.text()).map((a) => a[a.length - 1]);
}

/** Send `command` and wait for its answer (the n-th status line on this client). */
async function ask(w: World, client: Client, command: string): Promise<string[]> {
  const before = answers(client.text()).length;
  client.send(command);
  await w.until(() => answers(client.text()).length > before || client.closed, `answer to ${JSON.stringify(command)}`);
  const all = answers(client.text());
  expect(all.length).toBe(before + 1);
  return all[before];
}

describe('ManagementServer commands (sim)', () => {
  it('help lists every command, one per line, ending in +OK', async () => {
    const w = await world('mgmt-help');
    const c = await w.connect();
    const answer = await ask(w, c, 'help\n');
    expect(answer[answer.length - 1]).toBe('+OK valid commands: defrost freeze help lockstatus quit|exit');
    expect(answer.length).toBe(6);
    for (const command of ['help', 'freeze', 'defrost', 'lockstatus', 'quit']) {
      expect(answer.some((line) => line.startsWith(`${command} `))).toBe(true);
    }
    for (const line of answer.slice(0, -1)) expect(line).not.toMatch(/^[+-]/);
    // lessfs's abbreviation
    expect(await ask(w, c, 'h\n')).toEqual(answer);
  });

  it('freeze and defrost, with their errors', async () => {
    const w = await world('mgmt-freeze');
    const c = await w.connect();
    expect(await ask(w, c, 'defrost\n')).toEqual(['-ERR not frozen']);
    expect(await ask(w, c, 'freeze\n')).toEqual(['+OK filesystem frozen']);
    expect(w.target.frozen).toBe(true);
    expect(await ask(w, c, 'freeze\n')).toEqual(['-ERR already frozen']);
    expect(w.target.freezeCalls).toBe(1);
    expect(await ask(w, c, 'defrost\n')).toEqual(['+OK filesystem defrosted']);
    expect(w.target.frozen).toBe(false);
    expect(await ask(w, c, 'defrost\n')).toEqual(['-ERR not frozen']);
  });

  it('freeze answers only once the target is frozen', async () => {
    const w = await world('mgmt-freeze-slow');
    w.target.freezeDelayMs = 2_000;
    const c = await w.connect();
    const sentAtMs = w.scheduler.nowMs();
    expect(await ask(w, c, 'freeze\n')).toEqual(['+OK filesystem frozen']);
    expect(w.scheduler.nowMs()).toBeGreaterThanOrEqual(sentAtMs + 2_000);
  });

  it('a failing freeze is an -ERR answer and a level-0 log line; the session goes on', async () => {
    const w = await world('mgmt-freeze-fails');
    w.target.freezeError = Object.assign(new Error('disk full\nsecond line'), { code: 'ENOSPC' });
    const c = await w.connect();
    const [status] = await ask(w, c, 'freeze\n');
    expect(status).toBe('-ERR freeze failed: ENOSPC: disk full?second line');
    expect(w.logs.some(([level, m]) => level === 0 && m.includes('freeze failed') && m.includes('disk full'))).toBe(true);
    w.target.freezeError = undefined;
    expect(await ask(w, c, 'freeze\n')).toEqual(['+OK filesystem frozen']);
  });

  it('lockstatus lists the lock lines then counts them', async () => {
    const w = await world('mgmt-locks');
    const c = await w.connect();
    expect(await ask(w, c, 'lockstatus\n')).toEqual(['+OK 0 locked inodes']);
    w.target.locks = ['inode 42 locked (truncate)'];
    expect(await ask(w, c, 'lockstatus\n')).toEqual(['inode 42 locked (truncate)', '+OK 1 locked inodes']);
    // Lines from the target can neither break the framing nor pose as a status line.
    w.target.locks = ['inode 7 locked (truncate)', '+OK fake', 'two\nlines', '-ERR fake'];
    expect(await ask(w, c, 'lockstatus\n')).toEqual([
      'inode 7 locked (truncate)',
      ' +OK fake',
      'two?lines',
      ' -ERR fake',
      '+OK 4 locked inodes',
    ]);
    // A huge list is cut, the count stays exact.
    w.target.locks = Array.from({ length: MGMT_LOCK_LINES_MAX + 5 }, (_, i) => `inode ${i + 2} locked (truncate)`);
    const answer = await ask(w, c, 'lockstatus\n');
    expect(answer.length).toBe(MGMT_LOCK_LINES_MAX + 1);
    expect(answer[answer.length - 1]).toBe(`+OK ${MGMT_LOCK_LINES_MAX + 5} locked inodes (first ${MGMT_LOCK_LINES_MAX} listed)`);
  });

  it('quit and exit say bye and close the connection', async () => {
    for (const command of ['quit', 'exit', 'QUIT', ' Exit \r']) {
      const w = await world(`mgmt-quit-${command}`);
      const c = await w.connect();
      c.send(`${command}\n`);
      await w.until(() => c.closed, 'close after quit');
      expect(c.text()).toBe('+OK bye\n');
      expect(c.closeError).toBeUndefined();
      await w.until(() => w.server.sessionCount === 0, 'session gone');
    }
  });

  it('commands after quit in the same chunk are not run', async () => {
    const w = await world('mgmt-after-quit');
    const c = await w.connect();
    c.send('quit\nfreeze\n');
    await w.until(() => c.closed, 'close');
    expect(c.text()).toBe('+OK bye\n');
    expect(w.target.freezeCalls).toBe(0);
  });

  it('unknown commands are named back; empty and blank lines are ignored', async () => {
    const w = await world('mgmt-unknown');
    const c = await w.connect();
    expect(await ask(w, c, 'xyz\n')).toEqual(["-ERR unknown command 'xyz' (try help)"]);
    expect(await ask(w, c, 'freeze now\n')).toEqual(["-ERR unknown command 'freeze now' (try help)"]);
    expect(await ask(w, c, 'bdb_status\n')).toEqual(["-ERR unknown command 'bdb_status' (try help)"]);
    expect(await ask(w, c, '\n\r\n   \n\t\r\nlockstatus\n')).toEqual(['+OK 0 locked inodes']);
    expect(answers(c.text()).length).toBe(4);
  });

  it('control bytes and non-UTF-8 are unknown commands, echoed escaped', async () => {
    const w = await world('mgmt-bytes');
    const c = await w.connect();
    expect(await ask(w, c, 'fre\x00eze\n')).toEqual(["-ERR unknown command 'fre\\x00eze' (try help)"]);
    expect(await ask(w, c, 'freeze\x1b[A\n')).toEqual(["-ERR unknown command 'freeze\\x1b[A' (try help)"]);
    expect(await ask(w, c, Buffer.from([0x66, 0xff, 0xfe, 0x0a]).toString('latin1'))).toEqual([
      "-ERR unknown command 'f\\xff\\xfe' (try help)",
    ]);
    // Valid UTF-8 that is not a command is just as unknown.
    c.send(Buffer.from('frëeze\n', 'utf8'));
    await w.until(() => answers(c.text()).length === 4, 'answer');
    expect(statuses(c)[3]).toBe("-ERR unknown command 'fr\\xc3\\xabeze' (try help)");
    expect(w.target.freezeCalls).toBe(0);
    // A very long unknown command is echoed shortened.
    const [status] = await ask(w, c, `${'z'.repeat(500)}\n`);
    expect(status.length).toBeLessThan(120);
    expect(status).toMatch(/^-ERR unknown command 'z+\.\.\.' \(try help\)$/);
  });

  it('accepts CRLF, any case and surrounding whitespace', async () => {
    const w = await world('mgmt-crlf');
    const c = await w.connect();
    expect(await ask(w, c, 'FREEZE\r\n')).toEqual(['+OK filesystem frozen']);
    expect(await ask(w, c, '  DeFrOsT \t\r\n')).toEqual(['+OK filesystem defrosted']);
    expect(await ask(w, c, '\tLockStatus\n')).toEqual(['+OK 0 locked inodes']);
  });
});

describe('ManagementServer framing and ordering (sim)', () => {
  it('answers pipelined commands in one chunk strictly in order, a slow freeze delaying the rest', async () => {
    const w = await world('mgmt-pipeline');
    w.target.freezeDelayMs = 5_000;
    w.target.locks = ['inode 3 locked (truncate)'];
    const c = await w.connect();
    const arrivals: Array<[number, number]> = [];
    c.send('help\nfreeze\r\nlockstatus\nbogus\ndefrost\nquit\nhelp\n');
    const startMs = w.scheduler.nowMs();
    await w.until(() => {
      const n = answers(c.text()).length;
      if (arrivals.length === 0 || arrivals[arrivals.length - 1][0] !== n) arrivals.push([n, w.scheduler.nowMs()]);
      return c.closed;
    }, 'session end');
    expect(statuses(c)).toEqual([
      '+OK valid commands: defrost freeze help lockstatus quit|exit',
      '+OK filesystem frozen',
      '+OK 1 locked inodes',
      "-ERR unknown command 'bogus' (try help)",
      '+OK filesystem defrosted',
      '+OK bye',
    ]);
    // help's answer came before the freeze finished; lockstatus's only after it.
    const atMs = (n: number): number => (arrivals.find(([count]) => count >= n) as [number, number])[1];
    expect(atMs(1)).toBeLessThan(startMs + 5_000);
    expect(atMs(3)).toBeGreaterThanOrEqual(startMs + 5_000);
    expect(w.target.freezeCalls).toBe(1);
    expect(w.target.frozen).toBe(false);
  });

  it('assembles a command split over several chunks', async () => {
    const w = await world('mgmt-split');
    const c = await w.connect();
    for (const piece of ['fr', 'e', 'eze', '\r', '\n', 'lock', 'status\r\nhe', 'lp\n']) {
      c.send(piece);
      await w.pause(50);
    }
    await w.until(() => answers(c.text()).length === 3, 'three answers');
    expect(statuses(c)).toEqual([
      '+OK filesystem frozen',
      '+OK 0 locked inodes',
      '+OK valid commands: defrost freeze help lockstatus quit|exit',
    ]);
  });

  it('any chunking of the same input gives the same transcript (property)', async () => {
    const script = 'help\nFREEZE\r\n\nlockstatus\n  bogus  \r\nfreeze\ndefrost\r\nexit\n';
    const reference = await transcript('mgmt-chunks-ref', [script]);
    expect(answers(reference).length).toBe(7);
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.integer({ min: 1, max: script.length - 1 }), { maxLength: 12 }),
        fc.integer({ min: 0, max: 1000 }),
        async (cuts, seed) => {
          const points = [0, ...cuts.sort((a, b) => a - b), script.length];
          const pieces = points.slice(1).map((end, i) => script.slice(points[i], end));
          expect(await transcript(`mgmt-chunks-${seed}`, pieces)).toBe(reference);
        },
      ),
      { seed: 4242, numRuns: 40 },
    );
  });

  it('the network cutting segments at random changes nothing either', async () => {
    const script = 'help\nfreeze\nlockstatus\ndefrost\nquit\n';
    const reference = await transcript('mgmt-netsplit-ref', [script]);
    for (let seed = 0; seed < 10; seed++) {
      const w = await world(`mgmt-netsplit-${seed}`, {}, { splitProbability: 1, latencyMsMin: 0, latencyMsMax: 20 });
      const c = await w.connect();
      c.send(script);
      await w.until(() => c.closed, 'end');
      expect(c.text()).toBe(reference);
    }
  });
});

/** Send the pieces as separate writes, 10 ms apart; the whole transcript once the server closes. */
async function transcript(seed: string, pieces: string[]): Promise<string> {
  const w = await world(seed);
  w.target.freezeDelayMs = 30;
  const c = await w.connect();
  for (const piece of pieces) {
    c.send(piece);
    await w.pause(10);
  }
  await w.until(() => c.closed, 'end of script');
  return c.text();
}

describe('ManagementServer limits (sim)', () => {
  it('a line over lineBytesMax is refused and the connection closed; at the limit it is read', async () => {
    const w = await world('mgmt-long', { lineBytesMax: 32 });
    const c = await w.connect();
    // Exactly 32 bytes (plus CRLF) is fine: an unknown command.
    const [status] = await ask(w, c, `${'a'.repeat(32)}\r\n`);
    expect(status).toMatch(/^-ERR unknown command 'a{32}' \(try help\)$/);
    c.send(`help\n${'b'.repeat(33)}\nfreeze\n`);
    await w.until(() => c.closed, 'close after long line');
    expect(statuses(c).slice(1)).toEqual([
      '+OK valid commands: defrost freeze help lockstatus quit|exit',
      '-ERR line too long (max 32 bytes)',
    ]);
    expect(w.target.freezeCalls).toBe(0);
    expect(w.logs.some(([level, m]) => level === 1 && m.includes('line too long'))).toBe(true);
  });

  it('a stream without LF is refused as soon as it passes the limit, without waiting for an end', async () => {
    const w = await world('mgmt-long-nolf', { lineBytesMax: 64 });
    const c = await w.connect();
    c.send('x'.repeat(40));
    await w.pause(100);
    expect(c.text()).toBe('');
    c.send('x'.repeat(40));
    await w.until(() => c.closed, 'close');
    expect(c.text()).toBe('-ERR line too long (max 64 bytes)\n');
  });

  it('refuses connections over connectionsMax, and accepts again once one leaves', async () => {
    const w = await world('mgmt-conns', { connectionsMax: 2 });
    const a = await w.connect();
    const b = await w.connect();
    await w.until(() => w.server.sessionCount === 2, 'two sessions');
    const extra = await w.connect();
    extra.send('freeze\n');
    await w.until(() => extra.closed, 'refused client closed');
    expect(extra.text()).toBe('-ERR too many connections (max 2)\n');
    expect(w.target.freezeCalls).toBe(0);
    expect(w.logs.some(([level, m]) => level === 1 && m.includes('refused'))).toBe(true);
    // The two sessions still work.
    expect(await ask(w, a, 'lockstatus\n')).toEqual(['+OK 0 locked inodes']);
    b.send('quit\n');
    await w.until(() => b.closed && w.server.sessionCount === 1, 'b gone');
    const c = await w.connect();
    expect(await ask(w, c, 'freeze\n')).toEqual(['+OK filesystem frozen']);
  });

  it('a client flooding commands behind a slow freeze is cut off after MGMT_PENDING_LINES_MAX', async () => {
    const w = await world('mgmt-flood');
    w.target.freezeDelayMs = 1_000;
    const c = await w.connect();
    c.send(`freeze\n${'lockstatus\n'.repeat(MGMT_PENDING_LINES_MAX + 10)}`);
    await w.until(() => c.closed, 'close');
    const s = statuses(c);
    expect(s[0]).toBe('+OK filesystem frozen');
    // The freeze itself was one of the pending lines when the flood arrived.
    expect(s.slice(1, -1)).toEqual(Array(MGMT_PENDING_LINES_MAX - 1).fill('+OK 0 locked inodes'));
    expect(s[s.length - 1]).toBe(`-ERR too many pending commands (max ${MGMT_PENDING_LINES_MAX})`);
  });

  it('respects backpressure from a client that does not read, and catches up when it does', async () => {
    const w = await world('mgmt-backpressure', {}, { sendBufferHighWaterBytes: 1024, sendBufferBytesMax: 8 * 1024 });
    const c = await w.connect({ read: false });
    // 40 help answers are ~12 KiB: more than sendBufferBytesMax, so a server ignoring
    // backpressure would throw ENOBUFS in the sim network.
    c.send('help\n'.repeat(40));
    await w.pause(1_000);
    expect(w.logs.filter(([level]) => level <= 1)).toEqual([]);
    const got: Uint8Array[] = [];
    c.conn.onData((chunk) => got.push(chunk));
    await w.until(() => answers(Buffer.concat(got).toString('latin1')).length === 40, 'all 40 answers');
    expect(new Set(answers(Buffer.concat(got).toString('latin1')).map((a) => a.join('\n'))).size).toBe(1);
  });

  it('an idle session is closed quietly after idleTimeoutMs; activity and a slow freeze keep it open', async () => {
    const w = await world('mgmt-idle', { idleTimeoutMs: 5_000 });
    const quiet = await w.connect();
    const t0 = w.scheduler.nowMs();
    await w.until(() => quiet.closed, 'idle close');
    expect(quiet.text()).toBe('');
    expect(quiet.closeError).toBeUndefined();
    // The server's clock starts at accept, a few ms of latency before connect() resolves here.
    expect(quiet.closedAtMs as number).toBeGreaterThanOrEqual(t0 + 5_000 - 10);
    expect(quiet.closedAtMs as number).toBeLessThan(t0 + 5_100);

    const chatty = await w.connect();
    const t1 = w.scheduler.nowMs();
    await w.pause(3_000);
    expect(await ask(w, chatty, 'lockstatus\n')).toEqual(['+OK 0 locked inodes']);
    await w.pause(3_000);
    expect(chatty.closed).toBe(false);
    await w.until(() => chatty.closed, 'idle close after activity');
    expect(chatty.closedAtMs as number).toBeGreaterThanOrEqual(t1 + 8_000 - 10);

    w.target.freezeDelayMs = 20_000;
    const patient = await w.connect();
    expect(await ask(w, patient, 'freeze\n')).toEqual(['+OK filesystem frozen']);
    expect(patient.closed).toBe(false);
    expect(w.logs.filter(([level]) => level <= 1)).toEqual([]);
  });

  it('a client that vanishes mid-freeze leaves the filesystem frozen and nothing broken', async () => {
    const w = await world('mgmt-vanish');
    w.target.freezeDelayMs = 1_000;
    const a = await w.connect();
    a.send('freeze\nhelp\nlockstatus\n');
    await w.pause(20);
    a.conn.destroy();
    await w.until(() => w.target.frozen && w.server.sessionCount === 0, 'freeze done, session gone');
    await w.pause(2_000);
    expect(w.target.frozen).toBe(true);
    expect(w.logs.filter(([level]) => level === 0)).toEqual([]);
    expect(w.logs.some(([, m]) => m.includes('client gone'))).toBe(true);
    // Freeze is global: another session sees it and can defrost.
    const b = await w.connect();
    expect(await ask(w, b, 'freeze\n')).toEqual(['-ERR already frozen']);
    expect(await ask(w, b, 'defrost\n')).toEqual(['+OK filesystem defrosted']);
    expect(w.target.freezeCalls).toBe(1);
  });

  it('a session closed after freezing leaves the filesystem frozen, and says so in the log', async () => {
    const w = await world('mgmt-freeze-quit');
    const a = await w.connect();
    expect(await ask(w, a, 'freeze\n')).toEqual(['+OK filesystem frozen']);
    a.send('quit\n');
    await w.until(() => a.closed && w.server.sessionCount === 0, 'quit');
    expect(w.target.frozen).toBe(true);
    expect(w.logs.some(([level, m]) => level === 1 && m.includes('stays frozen'))).toBe(true);
  });

  it('two sessions freezing at once: one freeze in the target, one +OK, one -ERR', async () => {
    const w = await world('mgmt-two-freezes');
    w.target.freezeDelayMs = 500;
    const a = await w.connect();
    const b = await w.connect();
    a.send('freeze\n');
    b.send('freeze\n');
    await w.until(() => statuses(a).length === 1 && statuses(b).length === 1, 'both answered');
    expect([statuses(a)[0], statuses(b)[0]].sort()).toEqual(['+OK filesystem frozen', '-ERR already frozen']);
    expect(w.target.freezeCalls).toBe(1);
    a.send('defrost\n');
    await w.until(() => statuses(a).length === 2, 'defrost');
    expect(statuses(a)[1]).toBe('+OK filesystem defrosted');
    // A defrost sent while another session's freeze is in progress waits for it, so it finds it frozen.
    b.send('freeze\n');
    await w.pause(100);
    expect(w.target.freezeCalls).toBe(2);
    a.send('defrost\n');
    await w.until(() => statuses(a).length === 3 && statuses(b).length === 2, 'freeze then defrost');
    expect(statuses(b)[1]).toBe('+OK filesystem frozen');
    expect(statuses(a)[2]).toBe('+OK filesystem defrosted');
    expect(w.target.frozen).toBe(false);
  });

  it('a client that never closes its side after quit is dropped after the linger time', async () => {
    // A client that does not read never sees our FIN, so it never closes: only the linger timer ends it.
    const w = await world('mgmt-linger');
    const c = await w.connect({ read: false });
    const t0 = w.scheduler.nowMs();
    c.send('quit\n');
    await w.pause(1_000);
    expect(w.server.sessionCount).toBe(1);
    await w.until(() => w.server.sessionCount === 0, 'session gone');
    expect(w.scheduler.nowMs()).toBeGreaterThanOrEqual(t0 + MGMT_CLOSE_LINGER_MS);
    expect(w.logs.some(([, m]) => m.includes('did not close'))).toBe(true);
  });

  it('a client that neither reads nor sends is dropped at the idle timeout even with answers stuck', async () => {
    const w = await world('mgmt-idle-stuck', { idleTimeoutMs: 5_000 }, { sendBufferHighWaterBytes: 1024, sendBufferBytesMax: 8 * 1024 });
    const c = await w.connect({ read: false });
    c.send('help\n'.repeat(40));
    await w.until(() => w.server.sessionCount === 0, 'session dropped');
    expect(w.scheduler.nowMs()).toBeGreaterThanOrEqual(5_000);
    expect(w.logs.some(([, m]) => m.includes('idle and not reading'))).toBe(true);
    expect(w.logs.filter(([level]) => level === 0)).toEqual([]);
  });

  it('close() stops listening and drops every session', async () => {
    const w = await world('mgmt-close');
    const a = await w.connect();
    const b = await w.connect();
    await w.until(() => w.server.sessionCount === 2, 'two sessions');
    await w.scheduler.runUntilSettled(w.server.close(), 'close');
    await w.until(() => a.closed && b.closed && w.server.sessionCount === 0, 'sessions closed');
    const clientNet = w.network.host('10.0.0.3', new Domain('late'));
    await expect(w.scheduler.runUntilSettled(clientNet.connect(SERVER, PORT), 'late connect')).rejects.toMatchObject({
      code: 'ECONNREFUSED',
    });
    await w.scheduler.runUntilSettled(w.server.close(), 'close again');
  });

  it('logs every connection and command at level 2', async () => {
    const w = await world('mgmt-logs');
    const c = await w.connect();
    await ask(w, c, 'lockstatus\n');
    await ask(w, c, 'nope\n');
    c.send('quit\n');
    await w.until(() => w.server.sessionCount === 0, 'gone');
    const level2 = w.logs.filter(([level]) => level === 2).map(([, m]) => m);
    expect(level2.some((m) => m.includes('listening on 10.0.0.1:100'))).toBe(true);
    expect(level2.some((m) => m.includes('connected'))).toBe(true);
    expect(level2.some((m) => m.includes('lockstatus -> +OK 0 locked inodes'))).toBe(true);
    expect(level2.some((m) => m.includes("'nope' -> -ERR unknown command"))).toBe(true);
    expect(level2.some((m) => m.includes('quit -> +OK bye'))).toBe(true);
    expect(level2.some((m) => m.includes('disconnected'))).toBe(true);
  });

  it('rejects bad options and reports a port in use with its code', async () => {
    const w = await world('mgmt-options');
    const net = w.network.host('10.0.0.9', new Domain('opts'));
    const clock = w.scheduler.clock();
    const logger: Logger = { log: () => {} };
    const bad: Array<Partial<ManagementServerOptions>> = [
      { host: '' },
      { port: -1 },
      { port: 70000 },
      { lineBytesMax: 0 },
      { lineBytesMax: 1.5 },
      { connectionsMax: 0 },
      { idleTimeoutMs: 0 },
    ];
    for (const options of bad) {
      await expect(ManagementServer.start(net, clock, logger, w.target, { host: '10.0.0.9', port: 7, ...options })).rejects.toThrow(
        RangeError,
      );
    }
    const first = await w.scheduler.runUntilSettled(ManagementServer.start(net, clock, logger, w.target, { host: '10.0.0.9', port: 7 }));
    await expect(
      w.scheduler.runUntilSettled(ManagementServer.start(net, clock, logger, w.target, { host: '10.0.0.9', port: 7 })),
    ).rejects.toMatchObject({ code: 'EADDRINUSE' });
    const ephemeral = await w.scheduler.runUntilSettled(ManagementServer.start(net, clock, logger, w.target, { host: '10.0.0.9', port: 0 }));
    expect(ephemeral.port).toBeGreaterThan(0);
    await first.close();
    await ephemeral.close();
  });
});

describe('ManagementServer determinism (sim)', () => {
  async function run(seed: string): Promise<{ trace: string; texts: string[]; logs: string }> {
    const w = await world(seed, { idleTimeoutMs: 3_000, connectionsMax: 3 }, { latencyMsMin: 0, latencyMsMax: 30, splitProbability: 0.5 });
    w.target.freezeDelayMs = 200;
    const clients: Client[] = [];
    for (let i = 0; i < 4; i++) clients.push(await w.connect());
    clients[0].send('help\nfreeze\nlockstatus\n');
    clients[1].send('freeze\r\ndefrost\nquit\n');
    clients[2].send('bogus\n');
    await w.until(() => clients.every((c) => c.closed), 'all closed');
    return {
      trace: w.scheduler.traceHash(),
      texts: clients.map((c) => c.text()),
      logs: w.logs.map(([level, m]) => `${level} ${m}`).join('\n'),
    };
  }

  it('the same seed gives the same trace, transcripts and log', async () => {
    const a = await run('mgmt-det-1');
    const b = await run('mgmt-det-1');
    expect(b).toEqual(a);
    expect(a.texts[3]).toBe('-ERR too many connections (max 3)\n');
    const c = await run('mgmt-det-2');
    expect(c.trace).not.toBe(a.trace);
  });
});
