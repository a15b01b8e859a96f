// replogtool -r FILE -b BLKSIZE [--json] : dump a replication log file.
// replogtool -r FILE -c CONFIG           : apply a rotated log file to an unmounted slave.
//
// The dump checks a file exactly as a slave would before it reads anything out
// of it, so "replogtool -b" answers "would the slave take this file?" too; it
// then reads the file again and prints as it reads (log-file-visit.ts).
// Both commands read a file in bounded memory, whatever its size.
// Format: docs/replication-log.md; the command: docs/replogtool.md.

import * as fsp from 'node:fs/promises';
import { basename } from 'node:path';
import { replicationModeOf, type LessfsConfig, type ReplicationMode } from '../core/config.ts';
import type { FileHandle, Logger, Primitives } from '../core/drivers.ts';
import { assert } from '../core/errors.ts';
import { FsEngine } from '../core/fs/engine.ts';
import { engineOptionsFromConfig } from '../core/fs/options.ts';
import { ReplogError } from '../core/replication/errors.ts';
import { type Frame, FRAME_TYPE, hex32, type ReplRecord, type Transaction } from '../core/replication/frames.ts';
import { BLOCK_SIZE_BYTES_MAX, BLOCK_SIZE_BYTES_MIN, type LiveLogEnd, type LiveLogStreamScan, LOG_MAGIC, type LogHeader } from '../core/replication/log-file.ts';
import { type CheckedLogFile, type LogFileVisitor, visitLogFile } from '../core/replication/log-file-visit.ts';
import { LIVE_LOG_NAME, parseRotatedLogName } from '../core/replication/master-log.ts';
import { megabytes } from '../core/replication/room-wait.ts';
import { rotatedFileSource, type RotatedFileSource } from '../core/replication/rotated-file.ts';
import { FileNotAppliedError, SlaveApplier, slaveRepairNotice } from '../core/replication/slave.ts';
import { realEngineDrivers, StderrLogger } from '../real/drivers.ts';
import { acquireLock } from '../real/lock.ts';
import { nodePrimitives } from '../real/primitives.ts';
import { CliError, EXIT_OK, loadConfig, parseCommandLine, UsageError, type Command } from './common.ts';

const NAME = 'replogtool';

const usage = `Usage: replogtool -r FILE -b BLKSIZE [--json]
       replogtool -r FILE -c CONFIG

Dump a lessfs replication log file, or apply one to an unmounted slave.

  -r, --replog FILE    the log file: a rotated replog.dta-SEQUENCE, or the live
                       replog.dta (dump only)
  -b, --blksize N      dump FILE; N is the filesystem's BLKSIZE in bytes (or with
                       a K suffix), a power of two between 4096 and 131072
      --json           with -b: print one JSON document instead of text
  -c, --config FILE    apply FILE to the slave of this lessfs.cfg (REPLICATION=
                       masterslave, REPLICATION_ROLE=slave); the slave must not be
                       mounted. A file already applied is skipped.
  -h, --help           show this help

Every file is checked completely (header, whole-file CRC, every frame, record
and transaction) before anything is printed or applied. A file of any size is
read in pieces of 4 MiB: once to check it, once more to print or apply it; if
it changed in between, it is refused (ECHANGED) and the dump stops where the
change was found.

Exit status: 0 dumped, applied or already applied; 1 the file was refused or
another error; 2 usage error.
`;

/** Files at least this large get a progress bar while applied (on a terminal). */
const PROGRESS_FILE_BYTES_MIN = 16 * 1024 * 1024;
const PROGRESS_REDRAW_MS = 100;
const PROGRESS_BAR_WIDTH = 30;
/** Key bytes shown in the text dump; longer keys are cut (the JSON has them whole). */
const KEY_SHOWN_BYTES_MAX = 32;
/** The dump written in pieces of about this size. */
const OUTPUT_CHUNK_BYTES = 64 * 1024;
/** Largest time a JS Date represents (ms after the epoch). */
const DATE_MS_MAX = 8.64e15;
const SLAVE_MODES: readonly ReplicationMode[] = ['slave-watchdir', 'slave-replogtool', 'slave-listen'];

// ---------------------------------------------------------------- dump model

export type DumpRecord =
  | { type: 'KV'; offsetBytes: number; table: string; keyHex: string; keyBytes: number; op: 'put' | 'delete'; valueBytes: number | null }
  | { type: 'BLOCK'; offsetBytes: number; keyHex: string; keyBytes: number; codec: string; codecId: number; rawBytes: number; storedBytes: number }
  /** A live master's block whose stored bytes stay in blockdata.dta at extentOffsetBytes. */
  | { type: 'BLOCKREF'; offsetBytes: number; keyHex: string; keyBytes: number; codec: string; codecId: number; rawBytes: number; storedBytes: number; extentOffsetBytes: number };

export interface DumpTransaction {
  txn: number;
  /** Where its first frame starts. */
  offsetBytes: number;
  recordCount: number;
  nextIno: number;
  timeMs: number;
  /** timeMs as ISO 8601, or null when no date has it (a foreign writer). */
  time: string | null;
  framesCrc32: string;
  records: DumpRecord[];
}

/**
 * The dump as one document (--json prints it; the text says the same). It is
 * written as the file is read (DumpWriter), never held whole: its parts are
 * DumpHead, each DumpTransaction, and DumpEnd.
 */
export interface LogDump {
  file: string;
  kind: 'rotated' | 'live';
  fileBytes: number;
  /** Null only for a live log that is empty or ends inside its header. */
  header: { magic: string; formatVersion: number; fsId: string; blockSizeBytes: number; sequence: number; firstTxn: number; sizeBytes: number } | null;
  transactions: DumpTransaction[];
  /** Rotated files only. */
  trailer: { lastTxn: number; frameCount: number; fileCrc32: string } | null;
  /** Live logs only: what a master would keep and cut at its next mount. */
  live: {
    committedEndBytes: number;
    lastTxn: number;
    frameCount: number;
    uncommitted: { txn: number; records: DumpRecord[] } | null;
    tail: { code: string; offsetBytes: number; bytes: number; detail: string } | null;
  } | null;
  /** Over committed transactions (uncommitted records of a live log are not counted). */
  totals: { transactions: number; kvRecords: number; blockRecords: number; blockStoredBytes: number; fileBytes: number };
}

/** What the dump says before the transactions. */
export type DumpHead = Pick<LogDump, 'file' | 'kind' | 'fileBytes' | 'header'>;
/** What the dump says after them. */
export type DumpEnd = Pick<LogDump, 'trailer' | 'live' | 'totals'>;

function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function codecNameOf(p: Primitives, id: number): string {
  return p.codecs.find((c) => c.id === id)?.name ?? `unknown(${id})`;
}

export function dumpRecord(p: Primitives, r: ReplRecord, offsetBytes: number): DumpRecord {
  if (r.type === FRAME_TYPE.KV) {
    const put = r.kv.value !== undefined;
    return { type: 'KV', offsetBytes, table: r.kv.table, keyHex: toHex(r.kv.key), keyBytes: r.kv.key.length, op: put ? 'put' : 'delete', valueBytes: put ? (r.kv.value as Uint8Array).length : null };
  }
  if (r.type === FRAME_TYPE.BLOCKREF) {
    const f = r.ref;
    return { type: 'BLOCKREF', offsetBytes, keyHex: toHex(f.key), keyBytes: f.key.length, codec: codecNameOf(p, f.codec), codecId: f.codec, rawBytes: f.rawLength, storedBytes: f.storedLength, extentOffsetBytes: f.extentOffsetBytes };
  }
  const b = r.block;
  return { type: 'BLOCK', offsetBytes, keyHex: toHex(b.key), keyBytes: b.key.length, codec: codecNameOf(p, b.codec), codecId: b.codec, rawBytes: b.rawLength, storedBytes: b.stored.length };
}

/** A committed transaction, its records already dumped (`tx.records` may be empty: a streamed read visits them). */
export function dumpTransaction(tx: Transaction, records: DumpRecord[]): DumpTransaction {
  const c = tx.commit;
  return {
    txn: tx.txn,
    offsetBytes: records[0]?.offsetBytes ?? tx.commitFrame.offsetBytes,
    recordCount: c.recordCount,
    nextIno: c.nextIno,
    timeMs: c.timeMs,
    time: c.timeMs <= DATE_MS_MAX ? new Date(c.timeMs).toISOString() : null,
    framesCrc32: hex32(c.framesCrc32),
    records,
  };
}

export function dumpHeader(h: LogHeader): NonNullable<LogDump['header']> {
  return { magic: LOG_MAGIC, formatVersion: h.formatVersion, fsId: h.fsId, blockSizeBytes: h.blockSizeBytes, sequence: h.sequence, firstTxn: h.firstTxn, sizeBytes: h.sizeBytes };
}

/** Count a committed transaction into the totals. */
export function addToTotals(totals: LogDump['totals'], tx: DumpTransaction): void {
  totals.transactions++;
  for (const r of tx.records) {
    if (r.type === 'KV') totals.kvRecords++;
    else {
      totals.blockRecords++;
      totals.blockStoredBytes += r.storedBytes;
    }
  }
}

/** A live log's state at the end of the dump; `uncommitted` holds the records after its last COMMIT. */
export function dumpLive(scan: LiveLogEnd, fileBytes: number, uncommitted: { txn: number; records: DumpRecord[] } | undefined): NonNullable<LogDump['live']> {
  return {
    committedEndBytes: scan.committedEndBytes,
    lastTxn: scan.lastTxn,
    frameCount: scan.frameCount,
    uncommitted: uncommitted ?? null,
    tail: scan.tail ? { code: scan.tail.code, offsetBytes: scan.tail.offsetBytes, bytes: fileBytes - scan.tail.offsetBytes, detail: scan.tail.detail } : null,
  };
}

// ---------------------------------------------------------------- text

function keyText(hex: string, keyBytes: number): string {
  if (keyBytes <= KEY_SHOWN_BYTES_MAX) return `${hex} (${keyBytes} bytes)`;
  return `${hex.slice(0, KEY_SHOWN_BYTES_MAX * 2)}... (${keyBytes} bytes)`;
}

function recordText(r: DumpRecord): string {
  if (r.type === 'KV') {
    const what = r.op === 'put' ? `put    key ${keyText(r.keyHex, r.keyBytes)}, value ${r.valueBytes} bytes` : `delete key ${keyText(r.keyHex, r.keyBytes)}`;
    return `  KV    ${r.table.padEnd(9)} ${what}`;
  }
  if (r.type === 'BLOCKREF') return `  BLOCKREF key ${keyText(r.keyHex, r.keyBytes)}, codec ${r.codec}, raw ${r.rawBytes} bytes, stored ${r.storedBytes} bytes at blockdata.dta offset ${r.extentOffsetBytes}`;
  return `  BLOCK key ${keyText(r.keyHex, r.keyBytes)}, codec ${r.codec}, raw ${r.rawBytes} bytes, stored ${r.storedBytes} bytes`;
}

/** The text dump's first lines, one a line. */
export function* headLines(d: DumpHead): Generator<string> {
  yield `${d.file}: ${d.kind === 'rotated' ? 'rotated replication log' : 'live replication log (no trailer)'}, ${d.fileBytes} bytes`;
  const h = d.header;
  if (h) {
    yield `header: magic ${h.magic} version ${h.formatVersion}, fs id ${h.fsId}, block size ${h.blockSizeBytes}, sequence ${h.sequence}, first txn ${h.firstTxn}, ${h.sizeBytes} bytes`;
  } else {
    yield d.fileBytes === 0 ? 'header: none (empty file: nothing logged since the last rotation)' : `header: none (the file ends inside its header: torn before anything was logged)`;
  }
}

/** A transaction's lines in the text dump. */
export function* transactionLines(tx: DumpTransaction): Generator<string> {
  const when = tx.time ?? `${tx.timeMs} ms (not a date)`;
  yield `txn ${tx.txn} at offset ${tx.offsetBytes}: ${tx.recordCount} records, nextIno ${tx.nextIno}, master time ${when}`;
  for (const r of tx.records) yield recordText(r);
}

/** The text dump's last lines; `firstTxn` is the first committed transaction's (undefined when none). */
export function* endLines(d: DumpEnd, firstTxn: number | undefined): Generator<string> {
  if (d.trailer) {
    yield `trailer: last txn ${d.trailer.lastTxn}, ${d.trailer.frameCount} frames, file CRC-32 ${d.trailer.fileCrc32}`;
  }
  const t = d.totals;
  if (d.live) {
    const l = d.live;
    const range = firstTxn !== undefined ? ` (txns ${firstTxn}..${l.lastTxn})` : '';
    yield `live log: ${t.transactions} committed transactions${range}, ${l.frameCount} frames, committed data ends at offset ${l.committedEndBytes}`;
    if (l.uncommitted) {
      yield `uncommitted: txn ${l.uncommitted.txn} has ${l.uncommitted.records.length} records and no COMMIT (logged, never committed; the master drops them)`;
      for (const r of l.uncommitted.records) yield recordText(r);
    }
    if (l.tail) {
      yield `torn tail: ${l.tail.bytes} bytes from offset ${l.tail.offsetBytes} (${l.tail.code}: ${l.tail.detail}); the master cuts them at its next mount if its database has not committed txn ${l.lastTxn + 1}, else the log is damaged and the master refuses to mount`;
    }
  }
  yield `totals: ${t.transactions} transactions, ${t.kvRecords} KV records, ${t.blockRecords} BLOCK records, ${t.blockStoredBytes} block bytes stored, ${t.fileBytes} file bytes`;
}

// ---------------------------------------------------------------- streamed dump

/** `value` as JSON.stringify(value, null, 2) writes it `depth` levels deep in a document (strings hold no raw newline). */
function jsonAt(value: unknown, depth: number): string {
  return JSON.stringify(value, null, 2).replaceAll('\n', `\n${'  '.repeat(depth)}`);
}

/**
 * Writes the dump as the file is read: the text lines, or the LogDump
 * document in the bytes JSON.stringify(dump, null, 2) gives it (head,
 * each transaction, end), holding only the records of the transaction
 * being read.
 */
class DumpWriter implements LogFileVisitor {
  private live: LiveLogStreamScan | undefined;
  private trailer: LogDump['trailer'] = null;
  private records: DumpRecord[] = [];
  private readonly totals: LogDump['totals'] = { transactions: 0, kvRecords: 0, blockRecords: 0, blockStoredBytes: 0, fileBytes: 0 };
  private firstTxn: number | undefined;

  constructor(
    private readonly p: Primitives,
    private readonly file: string,
    private readonly json: boolean,
    private readonly write: (text: string) => void,
  ) {}

  checked(f: CheckedLogFile): void {
    const header = f.kind === 'rotated' ? f.header : f.scan.header;
    const head: DumpHead = { file: this.file, kind: f.kind, fileBytes: f.sizeBytes, header: header ? dumpHeader(header) : null };
    this.totals.fileBytes = f.sizeBytes;
    if (f.kind === 'rotated') this.trailer = { lastTxn: f.trailer.lastTxn, frameCount: f.trailer.frameCount, fileCrc32: hex32(f.trailer.fileCrc32) };
    else this.live = f.scan;
    // The document without its closing "\n}": the transactions follow.
    if (this.json) this.write(`${JSON.stringify(head, null, 2).slice(0, -2)},\n  "transactions": `);
    else for (const line of headLines(head)) this.write(`${line}\n`);
  }

  record(frame: Frame, record: ReplRecord): void {
    this.records.push(dumpRecord(this.p, record, frame.offsetBytes));
  }

  commit(transaction: Transaction): void {
    const tx = dumpTransaction(transaction, this.records);
    this.records = [];
    addToTotals(this.totals, tx);
    if (this.json) this.write(`${this.firstTxn === undefined ? '[' : ','}\n    ${jsonAt(tx, 2)}`);
    else for (const line of transactionLines(tx)) this.write(`${line}\n`);
    this.firstTxn ??= tx.txn;
  }

  /** After the file was read whole: the trailer or the live log's state, and the totals. */
  end(): void {
    const scan = this.live;
    const uncommitted = scan?.uncommitted;
    assert(this.records.length === (uncommitted ? uncommitted.recordCount : 0), `${this.records.length} records after the last COMMIT`);
    const end: DumpEnd = {
      trailer: this.trailer,
      live: scan ? dumpLive(scan, this.totals.fileBytes, uncommitted && { txn: uncommitted.txn, records: this.records }) : null,
      totals: this.totals,
    };
    // The rest of the document after its opening "{".
    if (this.json) this.write(`${this.firstTxn === undefined ? '[]' : '\n  ]'},${JSON.stringify(end, null, 2).slice(1)}\n`);
    else for (const line of endLines(end, this.firstTxn)) this.write(`${line}\n`);
  }
}

/**
 * Check a log file and write its dump (text, or the JSON document) to
 * `write` as it is read. The file is checked as a slave checks it before
 * anything is written: a rotated file (its own fs id, block size
 * `blockSizeBytes`, and sequence N when named replog.dta-N), or, named
 * replog.dta with no trailer as its only fault, the live log. Throws
 * ReplogError; ECHANGED when the file changed between its two reads, after
 * part of the dump was written.
 */
export async function dumpLog(p: Primitives, source: RotatedFileSource, file: string, blockSizeBytes: number, json: boolean, write: (text: string) => void): Promise<void> {
  const writer = new DumpWriter(p, file, json, write);
  const name = basename(file);
  await visitLogFile(p, source, { fileName: file, blockSizeBytes, liveName: name === LIVE_LOG_NAME, nameSequence: parseRotatedLogName(name) }, writer);
  writer.end();
}


// ---------------------------------------------------------------- edges

/** Bytes of -b: a power of two in 4096..131072, in bytes or with a K suffix. */
export function parseBlockSizeArg(raw: string): number {
  const m = /^([0-9]{1,7})([kK]?)$/.exec(raw);
  const n = m ? Number(m[1]) * (m[2] ? 1024 : 1) : NaN;
  if (!(n >= BLOCK_SIZE_BYTES_MIN && n <= BLOCK_SIZE_BYTES_MAX && (n & (n - 1)) === 0)) {
    throw new UsageError(`-b ${raw} is invalid: expected the filesystem's BLKSIZE in bytes, a power of two between ${BLOCK_SIZE_BYTES_MIN} and ${BLOCK_SIZE_BYTES_MAX} (e.g. -b 131072 or -b 128K)`);
  }
  return n;
}

function openErrorText(err: unknown): string {
  const code = (err as { code?: string }).code;
  return code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
}

/**
 * An open log file, read in chunks (rotated-file.ts): checked, then read
 * again as it is applied (-c) or dumped (-b), so its size is not bounded by
 * memory or by what one buffer holds.
 */
async function openLogFile(path: string): Promise<{ file: Pick<FileHandle, 'read'>; sizeBytes: number; close(): Promise<void> }> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(path, 'r');
  } catch (err) {
    throw new CliError(`cannot read log file ${path}: ${openErrorText(err)}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new CliError(`cannot read log file ${path}: not a regular file`);
    const read = async (positionBytes: number, length: number, into?: Uint8Array): Promise<Uint8Array> => {
      const out = into ?? new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(out, done, length - done, positionBytes + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return out.subarray(0, done);
    };
    return { file: { read }, sizeBytes: st.size, close: () => fh.close() };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** Thrown by the dump's output once its reader went away: the dump stops there (exit 0, as `head` wants). */
const READER_GONE = new Error('the reader of the dump went away');

/**
 * Stdout in pieces of OUTPUT_CHUNK_BYTES that stops quietly once the reader
 * went away (`replogtool ... | head`): the next write throws READER_GONE,
 * which ends the dump, so the rest of the file is not read for nothing.
 * `drained` waits while stdout holds what it could not pass on yet, so the
 * dump reads on only as fast as its reader takes the output.
 */
function stdoutSink(): { write(text: string): void; flush(): void; drained(): Promise<void> } {
  const stdout = process.stdout;
  let gone = false;
  let chunk = '';
  stdout.on('error', (err: Error & { code?: string }) => {
    if (err.code !== 'EPIPE') throw err;
    gone = true;
  });
  const flush = (): void => {
    if (!gone && chunk !== '') stdout.write(chunk);
    chunk = '';
  };
  return {
    write: (text) => {
      if (gone) throw READER_GONE;
      chunk += text;
      if (chunk.length >= OUTPUT_CHUNK_BYTES) flush();
    },
    flush,
    drained: () =>
      new Promise((resolve) => {
        if (gone || !stdout.writableNeedDrain) return resolve();
        const done = (): void => {
          stdout.off('drain', done);
          stdout.off('close', done);
          resolve();
        };
        stdout.on('drain', done);
        stdout.on('close', done);
      }),
  };
}

async function dump(path: string, blockSizeBytes: number, json: boolean): Promise<number> {
  const log = await openLogFile(path);
  const out = stdoutSink();
  try {
    const file: Pick<FileHandle, 'read'> = {
      read: async (positionBytes, length, into) => {
        await out.drained();
        return log.file.read(positionBytes, length, into);
      },
    };
    await dumpLog(nodePrimitives, await rotatedFileSource(file, log.sizeBytes), path, blockSizeBytes, json, out.write);
    out.flush();
    return EXIT_OK;
  } catch (err) {
    if (err === READER_GONE) return EXIT_OK;
    if (err instanceof ReplogError) throw new CliError(err.withFileName(path).message);
    throw err;
  } finally {
    await log.close();
  }
}

interface ProgressBar {
  start(text: string): void;
  update(done: number, total: number): void;
  /** End the bar's line so another message gets its own; the next update draws on a new line. */
  breakLine(): void;
  finish(): void;
}

/** A progress bar on stderr, redrawn at most every PROGRESS_REDRAW_MS (the last state always). */
function progressBar(label: string): ProgressBar {
  let lastDrawMs = -Infinity;
  let lineOpen = false;
  const breakLine = (): void => {
    if (lineOpen) process.stderr.write('\n');
    lineOpen = false;
  };
  return {
    start(text) {
      process.stderr.write(text);
      lineOpen = true;
    },
    update(done, total) {
      const now = Date.now();
      if (done < total && now - lastDrawMs < PROGRESS_REDRAW_MS) return;
      lastDrawMs = now;
      const fraction = total === 0 ? 1 : done / total;
      const filled = Math.round(fraction * PROGRESS_BAR_WIDTH);
      // \x1b[K clears what a longer previous line left behind (stderr is a terminal here).
      process.stderr.write(`\r${label} [${'#'.repeat(filled)}${' '.repeat(PROGRESS_BAR_WIDTH - filled)}] ${Math.floor(fraction * 100)}% ${done}/${total} transactions\x1b[K`);
      lineOpen = true;
    },
    breakLine,
    finish: breakLine,
  };
}

function notASlave(cfgPath: string, config: LessfsConfig, mode: ReplicationMode): CliError {
  const has = mode === 'off' ? 'REPLICATION=off' : `REPLICATION_ROLE=${config.replicationRole} (a ${mode === 'master-batch' ? 'batch ' : ''}master)`;
  return new CliError(
    `-c needs a replication slave's configuration (REPLICATION=masterslave, REPLICATION_ROLE=slave), but ${cfgPath} has ${has}: ` +
      'log files are applied to slaves only (to read the file, use -b BLKSIZE)',
  );
}

async function apply(path: string, cfgPath: string): Promise<number> {
  const config = loadConfig(NAME, cfgPath);
  const mode = replicationModeOf(config);
  if (!SLAVE_MODES.includes(mode)) throw notASlave(cfgPath, config, mode);
  const log = await openLogFile(path);
  const base = basename(path);
  let lock;
  try {
    lock = acquireLock(config.metaPath, NAME);
  } catch (err) {
    await log.close();
    throw err;
  }
  try {
    const source = await rotatedFileSource(log.file, log.sizeBytes);
    const bar = process.stderr.isTTY === true && log.sizeBytes > PROGRESS_FILE_BYTES_MIN ? progressBar(`${NAME}: applying ${base}`) : undefined;
    const stderrLogger = new StderrLogger(config.debug, NAME);
    const logger: Logger = {
      log: (level, message) => {
        bar?.breakLine();
        stderrLogger.log(level, message);
      },
    };
    const drivers = realEngineDrivers(logger);
    // No attach: the slave's log is the master's; nothing here writes one.
    const engine = await FsEngine.open(drivers, engineOptionsFromConfig(config));
    let failed = true;
    try {
      const applier = new SlaveApplier(engine, drivers.primitives, logger);
      const repaired = slaveRepairNotice(applier.position());
      if (repaired) logger.log(0, `warning: ${repaired}`);
      bar?.start(`${NAME}: checking ${base} (${log.sizeBytes} bytes)...`);
      let outcome;
      try {
        outcome = await applier.applyFile(source, base, parseRotatedLogName(base), bar?.update);
      } catch (err) {
        // applyFile throws ReplogError only before it applies anything.
        if (err instanceof ReplogError) throw new CliError(`${err.withFileName(path).message}; nothing was applied`);
        // Applied to the cache, then dropped again: the slave is where it was.
        if (err instanceof FileNotAppliedError && err.code === 'ENOSPC' && err.dropped) {
          throw new CliError(`${err.message}; make room (its blocks take about ${megabytes(err.blockBytes)}) and run replogtool again`);
        }
        if (err instanceof FileNotAppliedError) throw new CliError(err.message);
        throw err;
      } finally {
        bar?.finish();
      }
      failed = false;
      if (outcome.kind === 'duplicate') {
        process.stdout.write(`skipped ${path}: already applied (slave at txn ${outcome.appliedTxn}, sequence ${outcome.appliedSequence})\n`);
        return EXIT_OK;
      }
      const pos = applier.position();
      const range = outcome.transactions > 0 ? `txns ${outcome.firstTxn}..${outcome.lastTxn}` : 'none new';
      process.stdout.write(`applied ${path}: ${outcome.transactions} transactions (${range}), ${outcome.bytes} bytes; slave now at txn ${pos.txn}, sequence ${pos.sequence}\n`);
      return EXIT_OK;
    } finally {
      // After a failure its reason is what counts; a close that fails too (its
      // commit, on the same full disk) only means the next open recovers.
      await engine.close().catch((err: unknown) => {
        if (!failed) throw err;
        logger.log(0, `closing ${config.metaPath} failed too (${(err as Error).message}); the next open recovers from the last durable transaction`);
      });
    }
  } finally {
    lock.release();
    await log.close();
  }
}

export const replogtool: Command = {
  name: NAME,
  usage,
  async run(argv) {
    const { values } = parseCommandLine(argv, {
      options: {
        replog: { type: 'string', short: 'r' },
        blksize: { type: 'string', short: 'b' },
        config: { type: 'string', short: 'c' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
      strict: true,
    });
    if (values.help) {
      process.stdout.write(usage);
      return EXIT_OK;
    }
    const file = values.replog;
    if (file === undefined || file === '') throw new UsageError('no log file given (expected -r FILE)');
    if (values.blksize !== undefined && values.config !== undefined) {
      throw new UsageError('-b and -c exclude each other: -b BLKSIZE dumps the file, -c CONFIG applies it to a slave');
    }
    if (values.config !== undefined) {
      if (values.json) throw new UsageError('--json goes with -b (dump), not with -c (apply)');
      if (values.config === '') throw new UsageError('-c needs the slave\'s lessfs.cfg');
      return apply(file, values.config);
    }
    if (values.blksize === undefined) throw new UsageError('nothing to do: give -b BLKSIZE to dump the file, or -c CONFIG to apply it to a slave');
    return dump(file, parseBlockSizeArg(values.blksize), values.json === true);
  },
};
