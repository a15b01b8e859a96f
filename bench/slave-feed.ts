// The live slave alone: a minimal master (handshake, then pre-encoded
// transactions of 64 unique 128 KiB blocks, no send window) streams N MiB to
// the bench slave child (bench/live-slave-child.ts) over 127.0.0.1, and reports
// the slave's apply rate and CPU seconds per GiB (from /proc), per thread with
// FEED_THREADS=1. Not a bench section: a tool for profiling the slave path.
//   npx tsx bench/slave-feed.ts [MiB=1024] [parent dir=/tmp] [cpu-prof dir]
// FEED_NODE_ARGS adds node flags to the slave (e.g. --trace-gc with FEED_TRACE=1).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { encodeTransaction, FRAME_TYPE, type ReplRecord } from '../src/core/replication/frames.ts';
import { decodeAck, decodeHello, encodeCommitNow, encodeHello, WireIn, WireOut } from '../src/core/replication/wire.ts';
import { nodePrimitives as p } from '../src/real/primitives.ts';
import { RealNet } from '../src/real/net.ts';
import { BlockSource } from './measure.ts';
import { REPO_DIR } from './child.ts';

const BS = 128 * 1024;
const mib = Number(process.argv[2] ?? 1024);
const parent = process.argv[3] ?? '/tmp';
const prof = process.argv[4];
const dir = mkdtempSync(join(parent, 'slave-feed-'));
const child = spawn(process.execPath, [...(process.env.FEED_NODE_ARGS ?? '').split(' ').filter(Boolean), ...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []), '--import', 'tsx', join(REPO_DIR, 'bench', 'live-slave-child.ts'), JSON.stringify({ dir, blockBytes: BS, cacheMb: 128 })], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, LESSFS_BENCH_SLAVE_CPU: '1' } });
const port = await new Promise<number>((res) => { let out = ''; child.stdout.on('data', (c: Buffer) => { if (process.env.FEED_TRACE) process.stderr.write(c); out += c; const m = /PORT (\d+)/.exec(out); if (m) res(Number(m[1])); }); });
const cpu = (): number => { const f = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) / 100; };
const cpuSplit = (): string => { const f = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' '); return `user ${Number(f[11]) / 100} sys ${Number(f[12]) / 100}`; };

const conn = await new RealNet().connect('127.0.0.1', port);
const win = new WireIn(p);
const out = new WireOut(p);
let onFrame: (t: number, payload: Uint8Array) => void = () => {};
let drain: (() => void) | undefined;
conn.onDrain(() => { const d = drain; drain = undefined; d?.(); });
conn.onData((c) => { win.push(c); for (let f = win.next(); f; f = win.next()) onFrame(f.type, f.payload); });
conn.onClose(() => {});
const waitFor = (pred: (t: number, pl: Uint8Array) => boolean): Promise<void> => new Promise((r) => { onFrame = (t, pl) => { if (pred(t, pl)) r(); }; });
const send = async (b: Uint8Array): Promise<void> => { if (!conn.write(b)) await new Promise<void>((r) => { drain = r; }); };
const h2 = waitFor((t) => t === FRAME_TYPE.HELLO);
await send(out.frame(FRAME_TYPE.HELLO, 0, encodeHello({ stage: 1, version: 1, blockSizeBytes: BS, fsId: 'feed', nonce: new Uint8Array(16), auth: false })));
await h2;
const acked = waitFor((t) => t === FRAME_TYPE.ACK);
await send(out.frame(FRAME_TYPE.HELLO, 0, encodeHello({ stage: 3, proof: new Uint8Array(0) })));
await acked;
// Pre-encode (so the feeder is cheap while measuring): txns of 64 blocks.
const src = new BlockSource(BS);
const blocks = mib * 8;
const frames: Uint8Array[] = [];
let txn = 0;
const PER_TXN = Number(process.env.FEED_TXN_BLOCKS ?? 64);
for (let b = 0; b < blocks; b += PER_TXN) {
  const recs: ReplRecord[] = [];
  for (let i = b; i < Math.min(blocks, b + PER_TXN); i++) {
    const key = p.hash('sha256', src.block(i)).subarray(0, 24);
    const mk = new Uint8Array(16); new DataView(mk.buffer).setUint32(12, i); new DataView(mk.buffer).setUint32(4, 2);
    recs.push({ type: FRAME_TYPE.KV, kv: { table: 'blockmap', key: mk, value: key } });
    recs.push({ type: FRAME_TYPE.BLOCK, block: { key, codec: 0, rawLength: BS, stored: src.block(i) } });
  }
  frames.push(...encodeTransaction(p, ++txn, recs, { nextIno: 3, timeMs: 0 }));
}
let last = 0;
onFrame = (t, pl) => { if (t === FRAME_TYPE.ACK) last = decodeAck(pl).appliedTxn; };
const c0 = cpu(); const s0 = cpuSplit(); const t0 = performance.now();
for (const f of frames) await send(f);
while (last < txn) await new Promise((r) => setTimeout(r, 2));
const t1 = performance.now(); const c1 = cpu();
const committed = waitFor((t, pl) => t === FRAME_TYPE.ACK && decodeAck(pl).committed);
await send(out.frame(FRAME_TYPE.COMMIT_NOW, 0, encodeCommitNow(1)));
await committed;
const t2 = performance.now(); const c2 = cpu();
const gib = (blocks * BS) / 2 ** 30;
console.log(`${mib} MiB: applied in ${(t1 - t0).toFixed(0)} ms (${((blocks * BS) / 1e6 / ((t1 - t0) / 1000)).toFixed(0)} MB/s); slave CPU ${(c1 - c0).toFixed(2)} s = ${((c1 - c0) / gib).toFixed(2)} s/GiB (${s0} -> ${cpuSplit()}); commit ${(t2 - t1).toFixed(0)} ms, +${(c2 - c1).toFixed(2)} s CPU`);
const { readdirSync } = await import('node:fs');
let mainU = 0, mainS = 0, otherU = 0, otherS = 0;
for (const t of readdirSync(`/proc/${child.pid}/task`)) {
  const st = readFileSync(`/proc/${child.pid}/task/${t}/stat`, 'utf8'); const name = st.slice(st.indexOf('(') + 1, st.lastIndexOf(')')); const f = st.split(') ')[1].split(' ');
  const u = Number(f[11]) / 100, sy = Number(f[12]) / 100; if (process.env.FEED_THREADS) console.log(`  thread ${name}: user ${u} sys ${sy}`);
  if (t === String(child.pid)) { mainU = u; mainS = sy; } else { otherU += u; otherS += sy; }
}
console.log(`  main thread user ${mainU.toFixed(2)} sys ${mainS.toFixed(2)}; other threads user ${otherU.toFixed(2)} sys ${otherS.toFixed(2)} (whole life)`);
if (process.env.FEED_PAUSE) await new Promise((r) => setTimeout(r, Number(process.env.FEED_PAUSE)));
conn.destroy();
child.kill('SIGTERM');
await new Promise((r) => child.on('exit', r));
rmSync(dir, { recursive: true, force: true });
