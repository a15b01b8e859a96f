// The management port on RealNet and the real clock, 127.0.0.1, a free port,
// driven by a plain node:net client as `nc` would: a short session, a refused
// extra connection, and a client resetting mid-freeze. Every wait is bounded.

import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Logger, LogLevel } from '../../src/core/drivers.ts';
import { ManagementServer, type ManagementTarget } from '../../src/core/mgmt/server.ts';
import { realClock } from '../../src/real/clock.ts';
import { RealNet } from '../../src/real/net.ts';

const WAIT_MS_MAX = 5_000;

class SlowTarget implements ManagementTarget {
  frozen = false;
  freezeCalls = 0;
  constructor(private readonly freezeDelayMs: number) {}
  freeze(): Promise<void> {
    this.freezeCalls++;
    return new Promise((resolve) =>
      setTimeout(() => {
        this.frozen = true;
        resolve();
      }, this.freezeDelayMs),
    );
  }
  defrost(): boolean {
    if (!this.frozen) return false;
    this.frozen = false;
    return true;
  }
  lockStatus(): string[] {
    return [];
  }
}

/** A line-reading client over node:net with bounded waits. */
class LineClient {
  private text = '';
  private waiters: Array<() => void> = [];
  closed = false;
  constructor(readonly socket: net.Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      this.text += chunk;
      this.wake();
    });
    socket.on('error', () => {
      // 'close' follows; these tests look only at whether and when it closed.
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static connect(port: number): Promise<LineClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect 127.0.0.1:${port}: no answer within ${WAIT_MS_MAX} ms`));
      }, WAIT_MS_MAX);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new LineClient(socket));
      });
    });
  }

  /** Send a line and return the answer's lines (up to and including its status line). */
  async ask(line: string): Promise<string[]> {
    const start = this.text.length;
    this.socket.write(line);
    await this.until(() => /^(\+OK|-ERR)/m.test(this.text.slice(start)), `answer to ${JSON.stringify(line)}`);
    const lines = this.text.slice(start).split('\n');
    const end = lines.findIndex((l) => l.startsWith('+OK') || l.startsWith('-ERR'));
    return lines.slice(0, end + 1);
  }

  all(): string {
    return this.text;
  }

  async until(cond: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + WAIT_MS_MAX;
    while (!cond()) {
      const leftMs = deadline - Date.now();
      if (leftMs <= 0) throw new Error(`${what}: not within ${WAIT_MS_MAX} ms (got ${JSON.stringify(this.text)})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(leftMs, 100));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS_MAX;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${WAIT_MS_MAX} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('ManagementServer on RealNet (127.0.0.1)', () => {
  const servers: ManagementServer[] = [];
  const clients: LineClient[] = [];
  let logs: Array<[LogLevel, string]> = [];
  const logger: Logger = { log: (level, message) => logs.push([level, message]) };

  afterEach(async () => {
    for (const c of clients.splice(0)) c.socket.destroy();
    for (const s of servers.splice(0)) await s.close();
    logs = [];
  });

  async function start(target: ManagementTarget, connectionsMax?: number): Promise<ManagementServer> {
    const server = await ManagementServer.start(new RealNet({ connectTimeoutMs: WAIT_MS_MAX }), realClock, logger, target, {
      host: '127.0.0.1',
      port: 0,
      connectionsMax,
    });
    servers.push(server);
    expect(server.port).toBeGreaterThan(0);
    return server;
  }

  async function client(port: number): Promise<LineClient> {
    const c = await LineClient.connect(port);
    clients.push(c);
    return c;
  }

  it('a short session: help, freeze, defrost, quit', async () => {
    const target = new SlowTarget(50);
    const server = await start(target);
    const c = await client(server.port);
    const help = await c.ask('help\r\n');
    expect(help[help.length - 1]).toBe('+OK valid commands: defrost freeze help lockstatus quit|exit');
    expect(help.length).toBe(6);
    expect(await c.ask('freeze\n')).toEqual(['+OK filesystem frozen']);
    expect(target.frozen).toBe(true);
    expect(await c.ask('Defrost\n')).toEqual(['+OK filesystem defrosted']);
    expect(target.frozen).toBe(false);
    expect(await c.ask('quit\n')).toEqual(['+OK bye']);
    await c.until(() => c.closed, 'server closes after quit');
    await waitFor(() => server.sessionCount === 0, 'session gone');
    expect(logs.filter(([level]) => level <= 1)).toEqual([]);
  });

  it('a script piping commands ending in quit gets every answer, then the server closes', async () => {
    const target = new SlowTarget(50);
    const server = await start(target);
    const c = await client(server.port);
    c.socket.write('freeze\nlockstatus\nquit\n');
    await c.until(() => c.closed, 'server closes after quit');
    expect(c.all()).toBe('+OK filesystem frozen\n+OK 0 locked inodes\n+OK bye\n');
    expect(target.frozen).toBe(true);
  });

  it('refuses a connection over connectionsMax', async () => {
    const server = await start(new SlowTarget(0), 1);
    const first = await client(server.port);
    expect(await first.ask('lockstatus\n')).toEqual(['+OK 0 locked inodes']);
    const second = await client(server.port);
    await second.until(() => second.closed, 'refused connection closed');
    expect(second.all()).toBe('-ERR too many connections (max 1)\n');
    expect(await first.ask('lockstatus\n')).toEqual(['+OK 0 locked inodes']);
  });

  it('a client reset mid-freeze breaks nothing and leaves the filesystem frozen', async () => {
    const target = new SlowTarget(200);
    const server = await start(target);
    const c = await client(server.port);
    c.socket.write('freeze\nhelp\n');
    await waitFor(() => target.freezeCalls === 1, 'freeze started');
    c.socket.resetAndDestroy();
    await waitFor(() => target.frozen && server.sessionCount === 0, 'frozen and session gone');
    expect(logs.filter(([level]) => level === 0)).toEqual([]);
    const d = await client(server.port);
    expect(await d.ask('defrost\n')).toEqual(['+OK filesystem defrosted']);
  });

  it('close() drops open sessions and stops listening', async () => {
    const server = await start(new SlowTarget(0));
    const c = await client(server.port);
    expect(await c.ask('lockstatus\n')).toEqual(['+OK 0 locked inodes']);
    await server.close();
    await c.until(() => c.closed, 'session dropped by close()');
    await expect(LineClient.connect(server.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});
