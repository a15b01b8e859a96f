// The FUSE trace recorder (lessfs --trace) without a mount: what it writes
// parses as a trace, fingerprints are keyed (equal pieces equal, zeros "0",
// nothing a plain hash could confirm), a previous trace is kept as FILE.1,
// and when the file falls behind or a write fails recording stops with one
// log message while record() keeps returning at once.

import { createHash } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { LogLevel, Logger } from '../../src/core/drivers.ts';
import { TraceRecorder } from '../../src/real/fuse/trace-recorder.ts';
import { parseTrace } from '../../src/sim/trace.ts';
import { tempDirs } from '../support/sim-cli.ts';

const temp = tempDirs('lessfs-recorder-test-');
const tempDir = temp.make;
afterAll(temp.removeAll);

class Logs implements Logger {
  readonly lines: string[] = [];
  log(_level: LogLevel, message: string): void {
    this.lines.push(message);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('TraceRecorder', () => {
  it('writes a header, one line per op and an end marker: a valid trace, mode 0600', async () => {
    const path = join(tempDir(), 't.trace');
    const logs = new Logs();
    const rec = await TraceRecorder.open(path, { blockSizeBytes: 4096, rootEntries: 2, logger: logs });
    rec.record({ op: 'mkdir', path: '/d', mode: 0o755 }, 0);
    rec.record({ op: 'create', path: '/d/f', mode: 0o100644, fh: 1 }, 0);
    const data = new Uint8Array(6000).fill(7);
    rec.record({ op: 'write', fh: 1, off: 100, len: data.length, fp: rec.fingerprints(100, data) }, 0);
    rec.record({ op: 'release', fh: 1 }, 0);
    rec.record({ op: 'unlink', path: '/nope' }, 'ENOENT');
    await rec.close();
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const p = parseTrace(readFileSync(path, 'utf8'), 't');
    expect(p.header).toMatchObject({ lessfs_trace: 1, blksize: 4096, root_entries: 2, fingerprint: 'hmac-sha256-64' });
    expect(p.entries.map((e) => e.entry.op)).toEqual(['mkdir', 'create', 'write', 'release', 'unlink']);
    expect(p.entries[4].entry.r).toBe('ENOENT');
    expect(p.marker?.marker).toMatchObject({ event: 'end', ops: 5 });
    expect(p.warnings).toEqual(['t: recording began on a filesystem with 2 entries in /; the replay starts empty, so operations on what was there fail']);
    expect(logs.lines).toEqual([]);
    rec.record({ op: 'mkdir', path: '/late', mode: 0 }, 0); // after close: ignored
    expect(readFileSync(path, 'utf8')).not.toContain('/late');
  });

  it('fingerprints pieces with a key of its own: equal pieces equal, zeros "0", not a plain hash', async () => {
    const dir = tempDir();
    const a = await TraceRecorder.open(join(dir, 'a'), { blockSizeBytes: 4096, rootEntries: 0, logger: new Logs() });
    const b = await TraceRecorder.open(join(dir, 'b'), { blockSizeBytes: 4096, rootEntries: 0, logger: new Logs() });
    const block = Buffer.alloc(4096);
    for (let i = 0; i < block.length; i++) block[i] = (i * 31) & 0xff;
    const data = Buffer.concat([block, Buffer.alloc(4096), block, block.subarray(0, 10)]);
    const fa = a.fingerprints(0, data);
    expect(fa.length).toBe(4);
    expect(fa[0]).toMatch(/^[0-9a-f]{16}$/);
    expect(fa[1]).toBe('0');
    expect(fa[2]).toBe(fa[0]);
    expect(fa[3]).not.toBe(fa[0]);
    // Pieces follow file offsets: the same block written at another aligned offset has the same fingerprint.
    expect(a.fingerprints(8192, block)).toEqual([fa[0]]);
    expect(a.fingerprints(100, block).length).toBe(2);
    // Another trace's key: other fingerprints; and no plain sha256 of the content shows.
    expect(b.fingerprints(0, block)[0]).not.toBe(fa[0]);
    expect(fa[0]).not.toBe(createHash('sha256').update(block).digest('hex').slice(0, 16));
    await a.close();
    await b.close();
  });

  it('keeps the previous trace as FILE.1', async () => {
    const dir = tempDir();
    const path = join(dir, 't.trace');
    writeFileSync(path, 'previous mount\n');
    const logs = new Logs();
    const rec = await TraceRecorder.open(path, { blockSizeBytes: 4096, rootEntries: 0, logger: logs });
    await rec.close();
    expect(readFileSync(`${path}.1`, 'utf8')).toBe('previous mount\n');
    expect(parseTrace(readFileSync(path, 'utf8')).entries).toEqual([]);
    expect(logs.lines).toEqual([`trace: the previous trace ${path} was renamed to ${path}.1`]);
  });

  it('flushes at fsync without waiting for the interval', async () => {
    const path = join(tempDir(), 't.trace');
    const rec = await TraceRecorder.open(path, { blockSizeBytes: 4096, rootEntries: 0, logger: new Logs(), flushIntervalMs: 60_000 });
    rec.record({ op: 'create', path: '/f', mode: 0, fh: 1 }, 0);
    await sleep(50);
    expect(readFileSync(path, 'utf8')).not.toContain('"create"');
    rec.record({ op: 'fsync', fh: 1 }, 0);
    for (let i = 0; i < 100 && !readFileSync(path, 'utf8').includes('"fsync"'); i++) await sleep(10);
    expect(readFileSync(path, 'utf8')).toContain('"create"');
    expect(readFileSync(path, 'utf8')).toContain('"fsync"');
    await rec.close();
  });

  it('stops with a marker and one log line when too much is unwritten; the file stays a valid trace', async () => {
    const path = join(tempDir(), 't.trace');
    const logs = new Logs();
    const rec = await TraceRecorder.open(path, { blockSizeBytes: 4096, rootEntries: 0, logger: logs, flushBytes: 1 << 20, flushIntervalMs: 60_000, bufferedBytesMax: 2000 });
    let n = 0;
    while (rec.recording && n < 1000) rec.record({ op: 'mkdir', path: `/d${n++}`, mode: 0 }, 0);
    expect(rec.recording).toBe(false);
    expect(n).toBeGreaterThan(10);
    expect(n).toBeLessThan(100);
    for (let i = 0; i < 10; i++) rec.record({ op: 'mkdir', path: '/after', mode: 0 }, 0);
    await rec.close();
    const text = readFileSync(path, 'utf8');
    expect(text).not.toContain('/after');
    const p = parseTrace(text, 't');
    expect(p.entries.length).toBe(n);
    expect(p.marker?.marker.event).toBe('stopped');
    expect(p.warnings[0]).toMatch(/^t line \d+: recording stopped early: \d+ bytes of trace not yet written: the trace file cannot keep up$/);
    expect(logs.lines.length).toBe(1);
    expect(logs.lines[0]).toMatch(/^trace: recording to .* stopped \(\d+ bytes of trace not yet written: the trace file cannot keep up\); the mount goes on$/);
  });

  it('a write error stops recording with one log line; close still resolves', async () => {
    const logs = new Logs();
    const rec = await TraceRecorder.open('/dev/full', { blockSizeBytes: 4096, rootEntries: 0, logger: logs });
    for (let i = 0; i < 100 && rec.recording; i++) await sleep(10);
    expect(rec.recording).toBe(false);
    rec.record({ op: 'mkdir', path: '/x', mode: 0 }, 0);
    rec.flush();
    await rec.close();
    expect(logs.lines).toEqual(['trace: recording to /dev/full stopped (writing /dev/full failed: ENOSPC: no space left on device, write); the mount goes on']);
  });
});
