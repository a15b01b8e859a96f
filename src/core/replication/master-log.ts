// The master's replication log: `BLOCKDATA_PATH/replog.dta`, one transaction
// per engine commit, durable before the store commit it describes (DESIGN §4).
// In batch mode it also rotates: the live log gets its trailer and becomes
// `replog.dta-SEQUENCE`, and a new live log starts with SEQUENCE + 1.
//
// Crash rules (docs/replication-log.md, "The master's log"):
//  - At open, a torn tail is cut at the last whole COMMIT, and a transaction
//    logged but not in the store (the store commit never happened) is dropped:
//    nothing past the store's durable txn ever leaves the master (rotation and
//    sending wait for the store commit), so dropping it is consistent.
//  - Rotation: trailer + fsync; the next log is written complete under
//    replog.dta.next and synced; rename replog.dta -> replog.dta-N, sync the
//    directory; rename replog.dta.next -> replog.dta, sync the directory. At open,
//    a .next beside a replog.dta means the rotation did not happen (the trailer
//    is cut as a torn tail); a .next alone means it must be finished.

import { BUGGIFY_OFF, buggifyDelay, buggifySplitWrite, type Buggify } from '../buggify.ts';
import { ScratchBuffers } from '../bytes.ts';
import type { Clock, Disk, FileHandle, Logger, Primitives, StoreOp, TimerHandle } from '../drivers.ts';
import { FormatError } from '../errors.ts';
import type { FsEngine } from '../fs/engine.ts';
import { joinPath } from '../fs/engine.ts';
import type { Extent } from '../fs/allocator.ts';
import { alignExtent, decodeBlock as decodeBlockRecord, encodeJson, META, metaKey, T } from '../fs/schema.ts';
import type { CommitContext, CommitObserver } from '../fs/types.ts';
import { ReplogError } from './errors.ts';
import {
  blockFrameBytes,
  blockFrameCrc,
  blockFrameCrcOf,
  decodeBlockRef,
  encodeBlockRefFrameOf,
  encodeCommitFrame,
  encodeRecordFrame,
  FRAME_HEADER_BYTES,
  FRAME_TYPE,
  foldFrameCrc,
  isReplTable,
  writeBlockFrameFromRef,
  type BlockHead,
  type BlockPayload,
  type Frame,
  type ReplRecord,
  type Transaction,
} from './frames.ts';
import {
  decodeHeader,
  decodeTrailer,
  FS_ID_BYTES_MAX,
  HEADER_FIXED_BYTES,
  LogWriterState,
  scanLiveLogFile,
  TRAILER_BYTES,
  withoutLastTransaction,
  type LiveLogEnd,
  type LiveLogStreamScan,
  type LiveLogVisitor,
  type LogHeader,
} from './log-file.ts';

export const LIVE_LOG_NAME = 'replog.dta';
export const NEXT_LOG_NAME = 'replog.dta.next';
export const rotatedLogName = (sequence: number): string => `replog.dta-${sequence}`;
export const processedLogName = (sequence: number): string => `replog.dta-${sequence}-processed`;

/** The sequence of a complete rotated file's name, or undefined (temporary names, -processed, others). */
export function parseRotatedLogName(name: string): number | undefined {
  const m = /^replog\.dta-([1-9][0-9]{0,15})$/.exec(name);
  if (!m) return undefined;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** What a master keeps in its store about the log (meta 'replication'), committed with every transaction. */
export interface MasterReplicationMeta {
  role: 'master';
  /** Sequence of the live log when the transaction was committed. */
  sequence: number;
  /**
   * The transaction this was committed with: the last one this master logged.
   * The store's txn beyond it means commits without the log (a mount with
   * REPLICATION=off, or a repair); the log ending before it means the log lost
   * committed transactions (damaged). Absent in stores written before it was recorded.
   */
  txn?: number;
  /**
   * Transactions `lessfsck -r` committed since `txn` (each repair is one, not
   * logged): they tell the next mount's gap message its cause. The next
   * commit with the log writes the meta without them.
   */
  repairTxns?: number[];
  /**
   * Log sequences up to this one that are missing from the master's directory
   * were given up knowingly (a mount with `--accept-replog-gap`, or a log the
   * mount discarded and reported): the check at mount no longer refuses them.
   */
  gapAcceptedThrough?: number;
}

export interface MasterLogOptions {
  fsId: string;
  blockSizeBytes: number;
  /** Where replog.dta lives (BLOCKDATA_PATH). */
  dir: string;
  /** Batch mode: rotate by size and timer (REPLICATION_PARTNER_IP=-1). */
  batch: boolean;
  /** 0: no rotation by size. */
  rotateSizeBytes: number;
  /** 0: no rotation on a timer. */
  rotateIntervalMs: number;
  /** Rotation by size and timer runs only while this says so (REPLICATION_ENABLED). */
  enabled: boolean;
  /** Rare-path hooks (simulation only). */
  buggify?: Buggify;
  /**
   * `lessfs --accept-replog-gap`: mount even though log files holding committed
   * transactions are missing (replog.dta, or a rotated file before the newest);
   * the gap is logged and a new sequence starts. Without it such a mount is refused.
   */
  acceptGap?: boolean;
  /** Bytes per read when the live log is scanned at open (LIVE_LOG_SCAN_CHUNK_BYTES unless set: tests set it small). */
  scanChunkBytes?: number;
}

export interface MasterLogDrivers {
  disk: Disk;
  primitives: Primitives;
  logger: Logger;
  clock: Clock;
}

/** Frames written per writev while appending a transaction. */
const APPEND_BATCH_BYTES = 4 * 1024 * 1024;
/** Stored bytes of new blocks read back from the data file per read. */
const READ_SPAN_BYTES = 4 * 1024 * 1024;
/** Extents are aligned to 512 bytes: blocks closer than this are read in one span. */
const READ_GAP_BYTES = 512;
/** Span buffers kept for reuse (reads run one at a time per sender). */
const SPAN_BUFFERS_KEPT = 2;
/** A live log refers to blocks of at least this many stored bytes (BLOCKREF); smaller ones are copied. */
export const BLOCKREF_MIN_STORED_BYTES = 256;

/**
 * A BLOCKREF in the live log: where it lies in the file, where the BLOCK it
 * stands for lies in the stream the sender reads (wire offsets), and the extent
 * of blockdata.dta that holds the block's bytes.
 */
/** What a transaction's records are built from: a record, or a block to refer to whose stored bytes' CRC-32 is known. */
type LogItem =
  | { kind: 'record'; record: ReplRecord; extentOffsetBytes: number }
  | { kind: 'ref'; head: BlockHead; extentOffsetBytes: number; storedCrc32: number };

interface LogRef {
  txn: number;
  logOffset: number;
  logBytes: number;
  wireOffset: number;
  wireBytes: number;
  extent: Extent;
  /** Stored bytes of the block at extent.offsetBytes (the extent is rounded up). */
  storedBytes: number;
  /** Wire bytes minus file bytes of the log up to the end of this frame. */
  deltaAfter: number;
}

/**
 * What open keeps of the live log while it streams it (scanLiveLogFile):
 * each transaction's end in stream offsets, its commit time, and the
 * BLOCKREFs; records are not kept. A transaction's BLOCKREFs count only once
 * its COMMIT is read (a transaction without one is dropped).
 */
class LogIndex implements LiveLogVisitor {
  readonly ends: number[] = [];
  readonly refs: LogRef[] = [];
  readonly commitTimes = new Map<number, number>();
  /** BLOCKREFs of the transaction being read. */
  private open: LogRef[] = [];
  /** Stream minus file offset after the last BLOCKREF read. */
  private delta = 0;

  record(frame: Frame, r: ReplRecord): void {
    if (r.type !== FRAME_TYPE.BLOCKREF) return;
    const wireOffset = frame.offsetBytes + this.delta;
    this.delta += r.ref.blockFrameBytes - frame.sizeBytes;
    this.open.push({
      txn: frame.txn,
      logOffset: frame.offsetBytes,
      logBytes: frame.sizeBytes,
      wireOffset,
      wireBytes: r.ref.blockFrameBytes,
      extent: { offsetBytes: r.ref.extentOffsetBytes, lengthBytes: alignExtent(Math.max(1, r.ref.storedLength)) },
      storedBytes: r.ref.storedLength,
      deltaAfter: this.delta,
    });
  }

  commit(t: Transaction): void {
    for (const r of this.open) this.refs.push(r);
    this.open = [];
    this.ends.push(t.endOffsetBytes + this.delta);
    this.commitTimes.set(t.txn, t.commit.timeMs);
  }

  /** Forget the last committed transaction, txn (logged, never committed to the store). */
  dropLast(txn: number): void {
    this.ends.pop();
    this.commitTimes.delete(txn);
    while (this.refs.length > 0 && this.refs[this.refs.length - 1].txn === txn) this.refs.pop();
    this.delta = this.refs.length > 0 ? this.refs[this.refs.length - 1].deltaAfter : 0;
  }
}

export class MasterLog implements CommitObserver {
  private writer: LogWriterState;
  /** Reused buffers for the extents read() resolves BLOCKREFs from. */
  private readonly spanBuffers = new ScratchBuffers(SPAN_BUFFERS_KEPT, 64 * 1024, READ_SPAN_BYTES);
  /**
   * A span buffer the engine reads past the page cache (its data file is
   * written direct, so blocks no longer in the engine's memory are not in the
   * page cache either: a buffered read would first fill fresh cache pages, on
   * these VMs ~1 s of system time per GiB). Undefined until first wanted,
   * null where the engine has none; busy while a read uses it.
   */
  private directSpan: Uint8Array | null | undefined;
  private directSpanBusy = false;
  /** Stored bytes of BLOCKs read() sent from the engine's memory, and from the data file. */
  readonly extentBytes = { fromMemory: 0, fromDisk: 0 };
  /** The writer before the last append (what a retried or rolled-back transaction returns to). */
  private beforeLast: LogWriterState | undefined;
  /** A write failed: bytes past writer.sizeBytes may be garbage and are cut before the next append. */
  private dirtyTail = false;

  /** Bytes past the last commit are in the live log (a failed append or rotation left them): the next append cuts them, as recovery would. */
  get tailPending(): boolean {
    return this.dirtyTail;
  }
  /** Last txn whose store commit is durable. */
  private durableTxn: number;
  private rotateRequested = false;
  private timer: TimerHandle | undefined;
  private closed = false;
  /** The next log's writer while a rotation is between its renames (see finishRotation). */
  private unfinished: LogWriterState | undefined;
  private enabledFlag: boolean;
  /** The last error of an append, rotation or timer, for the status file. */
  lastError: string | undefined;
  /** Written to the meta with every commit (MasterReplicationMeta.gapAcceptedThrough). */
  private gapAcceptedThrough: number | undefined;
  rotations = 0;
  /** End offset of each transaction in the stream the sender reads (BLOCKREFs counted as their BLOCKs), txn firstTxn first. */
  private ends: number[];
  /** Txn -> the master's clock at its commit (the COMMIT's timeMs), for the transactions the log held when opened. */
  recoveredCommitTimes: ReadonlyMap<number, number> = new Map();
  /**
   * A live master's log refers to new blocks' extents instead of copying their
   * bytes (docs/replication-log.md, "Block references"): the BLOCKREFs of the
   * live log, in order. Their extents are pinned (never reused, even freed)
   * until the slave has acknowledged their transaction.
   */
  private refs: LogRef[] = [];
  /** refs[pinFrom..] are pinned: their txn is not acknowledged yet. */
  private pinFrom = 0;
  /** Extent offset -> the pinned extent and the txn of the newest BLOCKREF to it (an extent reused after an ack is referred to again). */
  private readonly pins = new Map<number, { extent: Extent; txn: number }>();
  private pinsSorted: Extent[] | undefined;
  /** After a trim the file is empty: this header is written before the next append. */
  private pendingHeader: Uint8Array | undefined;
  /** A live sender: sees every commit of the master (commit coordination, streaming). */
  coordinator: { beforeMasterCommit(): Promise<void>; afterMasterCommit(txn: number): void; masterCommitEnded(): void } | undefined;

  private constructor(
    private readonly drivers: MasterLogDrivers,
    private readonly options: MasterLogOptions,
    private readonly engine: FsEngine,
    private file: FileHandle,
    writer: LogWriterState,
    storeTxn: number,
  ) {
    this.writer = writer;
    this.ends = [];
    this.durableTxn = storeTxn;
    this.enabledFlag = options.enabled;
  }

  /** A live master's log refers to block extents; a batch master's files carry the bytes. */
  private get useRefs(): boolean {
    return !this.options.batch;
  }

  /** The engine computes each new block's stored-bytes CRC as it stores it, so BLOCKREFs need no read-back. */
  get wantsStoredCrc32(): boolean {
    return this.useRefs;
  }

  private get wireDelta(): number {
    return this.refs.length > 0 ? this.refs[this.refs.length - 1].deltaAfter : 0;
  }

  /** Size of the live log as the sender streams it (BLOCKREFs counted as the BLOCKs they stand for). */
  private get wireSizeBytes(): number {
    return this.writer.sizeBytes + this.wireDelta;
  }

  /** Transaction ends and BLOCKREFs (in stream offsets) of a scanned live log. */
  private adoptScan(index: LogIndex): void {
    this.recoveredCommitTimes = index.commitTimes;
    this.ends = index.ends;
    this.refs = index.refs;
    this.pinFrom = 0;
    this.pins.clear();
    for (const r of this.refs) this.pin(r);
    this.pinsSorted = undefined;
  }

  /** Pins are non-overlapping extents: does `e` overlap one? */
  private isPinned(e: Extent): boolean {
    if (this.pins.size === 0) return false;
    if (this.pins.has(e.offsetBytes)) return true;
    if (!this.pinsSorted) this.pinsSorted = [...this.pins.values()].map((p) => p.extent).sort((a, b) => a.offsetBytes - b.offsetBytes);
    const sorted = this.pinsSorted;
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid].offsetBytes < e.offsetBytes + e.lengthBytes) lo = mid + 1;
      else hi = mid;
    }
    return lo > 0 && sorted[lo - 1].offsetBytes + sorted[lo - 1].lengthBytes > e.offsetBytes;
  }

  /** Drop the BLOCKREFs at or past file offset `logSize` (a rolled-back append). */
  private dropRefsFrom(logSize: number): void {
    let changed = false;
    while (this.refs.length > 0 && this.refs[this.refs.length - 1].logOffset >= logSize) {
      const r = this.refs.pop() as LogRef;
      if (this.refs.length >= this.pinFrom) this.unpin(r);
      changed = true;
    }
    this.pinFrom = Math.min(this.pinFrom, this.refs.length);
    if (changed) this.unpinned();
  }

  private pin(r: LogRef): void {
    this.pins.set(r.extent.offsetBytes, { extent: r.extent, txn: r.txn });
  }

  /** Only the newest reference to an extent holds its pin. */
  private unpin(r: LogRef): void {
    if (this.pins.get(r.extent.offsetBytes)?.txn === r.txn) this.pins.delete(r.extent.offsetBytes);
  }

  private unpinned(): void {
    this.pinsSorted = undefined;
    this.engine.unpinExtents();
  }

  /**
   * The slave has acknowledged everything up to txn as durable: the sender
   * will never read those BLOCKREFs again, so their extents may be reused once freed.
   */
  acknowledged(txn: number): void {
    const from = this.pinFrom;
    while (this.pinFrom < this.refs.length && this.refs[this.pinFrom].txn <= txn) {
      this.unpin(this.refs[this.pinFrom]);
      this.pinFrom++;
    }
    if (this.pinFrom !== from) this.unpinned();
  }

  /** Extents the log still needs and the freed ones among them kept from reuse (status). */
  get pinnedExtents(): number {
    return this.pins.size;
  }

  private get bug(): Buggify {
    return this.options.buggify ?? BUGGIFY_OFF;
  }

  private get livePath(): string {
    return joinPath(this.options.dir, LIVE_LOG_NAME);
  }

  /**
   * Open (or create) replog.dta for an engine being opened, before its first
   * commit. Recovers from a crash as described at the top of this file.
   */
  static async open(drivers: MasterLogDrivers, options: MasterLogOptions, engine: FsEngine): Promise<MasterLog> {
    const { disk, logger } = drivers;
    const dir = options.dir;
    const livePath = joinPath(dir, LIVE_LOG_NAME);
    const nextPath = joinPath(dir, NEXT_LOG_NAME);
    const storeTxn = engine.txn;
    const meta = engine.replicationMeta() as Partial<MasterReplicationMeta> | undefined;
    if (meta !== undefined && meta.role !== undefined && meta.role !== 'master') {
      throw new FormatError('EFORMAT', `${engine.options.metaPath} holds a replication ${String(meta.role)}'s state; it cannot be mounted as a master (REPLICATION_ROLE=master)`);
    }
    // The directory's entries are durable before anything builds on them: a
    // process that died after a rename here and before its directory sync
    // (a failed syncDir, then kill -9) leaves entries only the page cache
    // has, and commits appended to that replog.dta would not survive a power
    // loss (found by lessfs-sim's I/O errors, swarm seed 2804).
    await disk.syncDir(dir);
    let liveSt = await disk.stat(livePath);
    if (await disk.stat(nextPath)) {
      if (liveSt) {
        logger.log(1, `replication log: a rotation was interrupted before it renamed ${LIVE_LOG_NAME}; undoing it (its transactions stay in ${LIVE_LOG_NAME})`);
        await disk.unlink(nextPath);
      } else {
        logger.log(1, `replication log: a rotation was interrupted after it renamed ${LIVE_LOG_NAME}; finishing it`);
        await disk.rename(nextPath, livePath);
      }
      await disk.syncDir(dir);
      liveSt = await disk.stat(livePath);
    }
    // Log files that held committed transactions and are gone (docs/replication-log.md, "Missing log files").
    const gap = await findLogGaps(drivers, dir, meta, liveSt ? { header: await peekHeader(disk, drivers.primitives, livePath, liveSt.sizeBytes) } : undefined);
    if (gap && !options.acceptGap) throw new FormatError('ECORRUPT', gapRefusal(dir, gap, options.batch));
    const acceptedNote = gap ? `log files missing, accepted by --accept-replog-gap: ${gap.text}; a slave that has not applied txn ${gap.lastTxn ?? storeTxn} must be re-seeded` : undefined;
    if (acceptedNote) logger.log(0, `replication log: ${acceptedNote}`);
    else if (options.acceptGap) logger.log(1, 'replication log: --accept-replog-gap given, but no log file is missing: nothing to accept');
    let skippedThrough: number | undefined;
    const log = await (async (): Promise<MasterLog> => {
      const create = async (wanted: number): Promise<{ file: FileHandle; writer: LogWriterState }> => {
        // Never a sequence a rotated file already has: a rotation of an empty log
        // commits nothing, so the store's record of the sequence can be behind
        // the files (and a .next left by a cut create() can bring back an empty log).
        const rotated = (await disk.readdir(dir)).map(parseRotatedLogName).filter((n): n is number => n !== undefined);
        const sequence = Math.max(wanted, ...rotated.map((n) => n + 1));
        const made = LogWriterState.create(drivers.primitives, { fsId: options.fsId, blockSizeBytes: options.blockSizeBytes, sequence, firstTxn: storeTxn + 1 });
        await writeFileDurably(disk, nextPath, made.headerBytes);
        await disk.rename(nextPath, livePath);
        await disk.syncDir(dir);
        return { file: await disk.open(livePath), writer: made.state };
      };
      if (!liveSt || liveSt.sizeBytes === 0) {
        let missingNote: string | undefined;
        let sequence = 1;
        if (meta?.sequence !== undefined) {
          sequence = liveSt ? meta.sequence : meta.sequence + 1;
          if (!liveSt && gap === undefined && meta.txn !== undefined) {
            // Every transaction committed with the log is in a rotated file (the
            // live log held none): nothing is lost, and its number was never shipped.
            sequence = meta.sequence;
            logger.log(1, `replication log: ${livePath} is missing; the rotated files hold every transaction committed with the log (up to txn ${meta.txn}): starting it again`);
            if (storeTxn > meta.txn) {
              missingNote = `${LIVE_LOG_NAME} was missing: ${gapCause(meta.txn, storeTxn, meta)}; a slave must be re-seeded`;
              logger.log(0, `replication log: ${missingNote}`);
            }
          } else if (!liveSt) {
            skippedThrough = sequence - 1;
            logger.log(0, `replication log: ${livePath} is missing (the log of sequence ${meta.sequence} was moved or lost); starting sequence ${sequence} at txn ${storeTxn + 1}: a slave that has not applied up to txn ${storeTxn} will refuse it and must be re-seeded`);
          }
        }
        const made = await create(sequence);
        const fresh = new MasterLog(drivers, options, engine, made.file, made.writer, storeTxn);
        fresh.lastError = missingNote;
        return fresh.ready(undefined);
      }
      const file = await disk.open(livePath);
      try {
        // Streamed: a log of what a slave has not acknowledged can be any size (docs/architecture.md, "Limits at scale").
        const index = new LogIndex();
        let scan: LiveLogStreamScan;
        try {
          scan = await scanLiveLogFile(drivers.primitives, file, liveSt.sizeBytes, { fileName: LIVE_LOG_NAME, visit: index, chunkBytes: options.scanChunkBytes });
        } catch (err) {
          if (!(err instanceof ReplogError)) throw err; // the disk's, not the log's
          throw new FormatError('ECORRUPT', `replication log ${livePath} is damaged beyond a torn tail (${(err as Error).message}); move it away to mount (a slave will then need re-seeding)`);
        }
        const header = scan.header;
        if (header && header.fsId !== options.fsId) {
          throw new FormatError('EFORMAT', `replication log ${livePath} belongs to filesystem ${header.fsId}, this is ${options.fsId}; move it away`);
        }
        if (header && header.blockSizeBytes !== options.blockSizeBytes) {
          throw new FormatError('EFORMAT', `replication log ${livePath} has block size ${header.blockSizeBytes}, this filesystem ${options.blockSizeBytes}; move it away`);
        }
        if (!header) {
          // Torn inside the header of a first log: nothing in it was ever durable.
          await file.close();
          logger.log(1, `replication log: ${LIVE_LOG_NAME} ends inside its header; starting it again`);
          const made = await create(meta?.sequence ?? 1);
          return new MasterLog(drivers, options, engine, made.file, made.writer, storeTxn).ready(undefined);
        }
        const loggedTxn = meta?.txn;
        if (loggedTxn !== undefined && header.firstTxn <= loggedTxn && scan.lastTxn < loggedTxn) {
          // Every transaction up to loggedTxn was durable in this log before its
          // store commit: a crash cannot tear it. The file was damaged or replaced
          // afterwards; cutting it would silently drop what a slave may still need.
          throw new FormatError('ECORRUPT', lostCommitted(livePath, options.blockSizeBytes, scan, loggedTxn));
        }
        if (scan.tail) logger.log(1, `replication log: cutting a torn tail of ${liveSt.sizeBytes - scan.tail.offsetBytes} bytes at offset ${scan.tail.offsetBytes} (${scan.tail.detail})`);
        if (scan.uncommitted) logger.log(1, `replication log: dropping ${scan.uncommitted.recordCount} records of txn ${scan.uncommitted.txn}, which has no COMMIT`);
        if (scan.lastTxn > storeTxn + 1) {
          throw new FormatError('ECORRUPT', `replication log ${livePath} reaches txn ${scan.lastTxn} but the database is at txn ${storeTxn}: more than the last transaction is missing from the database`);
        }
        if (scan.lastTxn === storeTxn + 1) {
          // Logged and durable, but the store commit never happened: drop it.
          logger.log(1, `replication log: dropping txn ${storeTxn + 1}, logged but never committed to the database`);
          scan = withoutLastTransaction(scan);
          index.dropLast(storeTxn + 1);
        }
        let writer = LogWriterState.resume(drivers.primitives, scan);
        if (liveSt.sizeBytes > scan.committedEndBytes) {
          await file.truncate(scan.committedEndBytes);
          await file.sync();
        }
        if (writer.lastTxn < storeTxn) {
          // Transactions were committed without being logged (a mount with
          // REPLICATION=off, a repair by lessfsck -r): the log cannot describe
          // them. Close what it holds and start a new sequence after them; a
          // slave refuses the gap.
          const gapError = `${LIVE_LOG_NAME} ends at txn ${writer.lastTxn}: ${gapCause(writer.lastTxn, storeTxn, meta)}; a slave must be re-seeded`;
          logger.log(0, `replication log: ${gapError}`);
          let sequence = writer.header.sequence;
          if (index.refs.length > 0) {
            // Its BLOCKREFs name extents that mount may have reused: nothing in it can be trusted to send.
            logger.log(0, `replication log: ${LIVE_LOG_NAME} refers to blockdata.dta extents that a mount without replication may have reused; discarding it (txns ${writer.header.firstTxn}..${writer.lastTxn})`);
            await file.close();
            await disk.unlink(livePath);
            await disk.syncDir(dir);
            skippedThrough = sequence;
            sequence++;
          } else if (writer.transactionCount > 0) {
            const old = new MasterLog(drivers, options, engine, file, writer, storeTxn);
            await old.closeAndRename();
            await old.file.close();
            sequence++;
          } else {
            await file.close();
          }
          const made = await create(sequence);
          const log = new MasterLog(drivers, options, engine, made.file, made.writer, storeTxn);
          log.lastError = gapError; // status shows it for this mount
          return log.ready(undefined);
        }
        writer = writer.clone();
        return await new MasterLog(drivers, options, engine, file, writer, storeTxn).ready(index);
      } catch (err) {
        await file.close().catch(() => undefined);
        throw err;
      }
    })();
    const through = Math.max(meta?.gapAcceptedThrough ?? 0, gap?.throughSequence ?? 0, skippedThrough ?? 0);
    if (through > 0) log.gapAcceptedThrough = through;
    if (acceptedNote && log.lastError === undefined) log.lastError = acceptedNote;
    return log;
  }

  /**
   * Last step of open: take the scanned log's transactions and BLOCKREFs; a
   * live master pins their extents, a batch master (mounted live before)
   * rewrites the log with the blocks' bytes, as rotated files must carry them.
   */
  private async ready(index: LogIndex | undefined): Promise<MasterLog> {
    if (index) this.adoptScan(index);
    if (this.useRefs) this.engine.pinExtents((e) => this.isPinned(e));
    else if (this.refs.length > 0) await this.materialize();
    return this;
  }

  /**
   * Rewrite the live log with every BLOCKREF replaced by its BLOCK: written
   * whole under replog.dta.next, synced, renamed over replog.dta (a crash
   * before the rename leaves the old log, which open then rewrites again).
   */
  private async materialize(): Promise<void> {
    const { disk, logger, primitives } = this.drivers;
    const dir = this.options.dir;
    const nextPath = joinPath(dir, NEXT_LOG_NAME);
    const count = this.refs.length;
    const headerBytes = await this.read(0, this.writer.header.sizeBytes);
    const out = await disk.open(nextPath, { create: true });
    try {
      await out.truncate(0);
      await out.write(0, headerBytes);
      const end = this.wireSizeBytes;
      for (let at = headerBytes.length; at < end; ) {
        const bytes = await this.read(at, Math.min(end, at + READ_SPAN_BYTES));
        await out.write(at, bytes);
        at += bytes.length;
      }
      await out.sync();
    } finally {
      await out.close();
    }
    await disk.rename(nextPath, this.livePath);
    await disk.syncDir(dir);
    await this.file.close();
    this.file = await disk.open(this.livePath);
    const st = await disk.stat(this.livePath);
    const index = new LogIndex();
    const scan = await scanLiveLogFile(primitives, this.file, st?.sizeBytes ?? 0, { fileName: LIVE_LOG_NAME, visit: index, chunkBytes: this.options.scanChunkBytes });
    if (scan.tail || scan.uncommitted || scan.lastTxn !== this.writer.lastTxn) {
      throw new FormatError('ECORRUPT', `replication log: rewriting ${LIVE_LOG_NAME} with its blocks' bytes gave a log ending at txn ${scan.lastTxn}${scan.tail ? ` (${scan.tail.detail})` : ''}, expected txn ${this.writer.lastTxn}`);
    }
    this.writer = LogWriterState.resume(primitives, scan).clone();
    this.beforeLast = undefined;
    this.adoptScan(index);
    logger.log(1, `replication log: ${LIVE_LOG_NAME} of a live master rewritten for batch mode: ${count} block references replaced by the blocks' bytes (${this.writer.sizeBytes} bytes)`);
  }

  /** Start the rotation timer (after open: the engine is ready). */
  start(): void {
    this.armTimer();
  }

  // ------------------------------------------------------------ status

  get sequence(): number {
    return this.writer.header.sequence;
  }
  get lastTxn(): number {
    return this.writer.lastTxn;
  }
  get sizeBytes(): number {
    return this.pendingHeader ? 0 : this.writer.sizeBytes;
  }
  /** Transactions in the live log (not yet in a rotated file). */
  get pendingTransactions(): number {
    return this.writer.transactionCount;
  }
  get enabled(): boolean {
    return this.enabledFlag;
  }
  setEnabled(on: boolean): void {
    this.enabledFlag = on;
    this.drivers.logger.log(1, `replication ${on ? 'enabled' : 'disabled'}: log rotation by size and timer ${on ? 'runs' : 'paused'}`);
  }

  // ------------------------------------------------------------ commit observer

  async commitStarting(): Promise<void> {
    await this.coordinator?.beforeMasterCommit();
  }

  commitEnded(): void {
    this.coordinator?.masterCommitEnded();
  }

  async beforeCommit(ctx: CommitContext): Promise<StoreOp[]> {
    await this.finishRotation();
    if (this.writer.lastTxn >= ctx.txn) {
      // This txn was appended but its store commit failed: append it afresh.
      if (!this.beforeLast || this.beforeLast.lastTxn !== ctx.txn - 1) {
        throw new FormatError('ECORRUPT', `replication log holds txn ${this.writer.lastTxn} and cannot roll back to before txn ${ctx.txn}`);
      }
      this.writer = this.beforeLast;
      this.ends.pop();
      this.dropRefsFrom(this.writer.sizeBytes);
      this.dirtyTail = true;
    }
    if (this.writer.lastTxn !== ctx.txn - 1) {
      throw new FormatError('ECORRUPT', `replication log ends at txn ${this.writer.lastTxn}, cannot append txn ${ctx.txn}`);
    }
    try {
      if (this.pendingHeader) {
        // The header is durable before any frame after it (see scanLiveLog).
        // Emptied again first: a trim whose truncate or sync failed may have
        // left the old log there, or not (trimIfAcked).
        await this.file.truncate(0);
        await this.file.write(0, this.pendingHeader);
        await this.file.sync();
        this.pendingHeader = undefined;
      }
      if (this.dirtyTail) {
        await this.file.truncate(this.writer.sizeBytes);
        this.dirtyTail = false;
      }
      const before = this.writer.clone();
      await this.appendTransaction(ctx);
      this.beforeLast = before;
      if (this.options.batch && this.enabledFlag && this.bug.fires('rotate-mid-commit')) this.rotateRequested = true;
    } catch (err) {
      this.dirtyTail = true;
      this.lastError = `append of txn ${ctx.txn}: ${(err as Error).message}`;
      throw err;
    }
    const meta: MasterReplicationMeta = { role: 'master', sequence: this.writer.header.sequence, txn: ctx.txn };
    if (this.gapAcceptedThrough !== undefined) meta.gapAcceptedThrough = this.gapAcceptedThrough;
    return [{ table: T.meta, key: metaKey(META.replication), value: encodeJson(meta) }];
  }

  async afterCommit(txn: number): Promise<void> {
    this.durableTxn = txn;
    this.coordinator?.afterMasterCommit(txn);
    if (!this.options.batch) return;
    const bySize = this.enabledFlag && this.options.rotateSizeBytes > 0 && this.writer.sizeBytes >= this.options.rotateSizeBytes;
    if (this.rotateRequested || bySize) await this.rotateNow(this.rotateRequested ? 'requested' : `size ${this.writer.sizeBytes} >= ROTATE_REPLOG_SIZE`);
  }

  /**
   * Records of one transaction: first the blocks a live log refers to by the
   * CRC the engine computed when storing them (nothing read back), then the
   * other new blocks (read back in file order), then KV changes.
   */
  private async *records(ctx: CommitContext): AsyncGenerator<LogItem> {
    const fresh: { key: Uint8Array; codec: number; rawLength: number; offsetBytes: number; storedBytes: number }[] = [];
    for (const op of ctx.ops) {
      if (op.table !== T.block || op.value === undefined) continue;
      if (ctx.before.get(T.block, op.key) !== undefined) continue; // a refcount change: the slave derives it
      const rec = decodeBlockRecord(op.value);
      const b = { key: op.key, codec: rec.codec, rawLength: rec.rawBytes, offsetBytes: rec.offsetBytes, storedBytes: rec.storedBytes };
      // A reference whose CRC the engine computed when it stored the block: nothing to read back.
      const storedCrc32 = this.useRefs && b.storedBytes >= BLOCKREF_MIN_STORED_BYTES ? ctx.storedCrc32(b.offsetBytes) : undefined;
      if (storedCrc32 === undefined) fresh.push(b);
      else yield { kind: 'ref', head: { key: b.key, codec: b.codec, rawLength: b.rawLength, storedLength: b.storedBytes }, extentOffsetBytes: b.offsetBytes, storedCrc32 };
    }
    fresh.sort((a, b) => a.offsetBytes - b.offsetBytes);
    for (let i = 0; i < fresh.length; ) {
      let j = i + 1;
      let end = fresh[i].offsetBytes + fresh[i].storedBytes;
      while (j < fresh.length && fresh[j].offsetBytes - end < READ_GAP_BYTES && fresh[j].offsetBytes + fresh[j].storedBytes - fresh[i].offsetBytes <= READ_SPAN_BYTES) {
        end = Math.max(end, fresh[j].offsetBytes + fresh[j].storedBytes);
        j++;
      }
      const start = fresh[i].offsetBytes;
      const span = await ctx.readStored(start, end - start);
      for (; i < j; i++) {
        const b = fresh[i];
        const stored = span.subarray(b.offsetBytes - start, b.offsetBytes - start + b.storedBytes);
        yield { kind: 'record', record: { type: FRAME_TYPE.BLOCK, block: { key: b.key, codec: b.codec, rawLength: b.rawLength, stored } }, extentOffsetBytes: b.offsetBytes };
      }
    }
    for (const op of ctx.ops) {
      if (op.table === T.meta || !isReplTable(op.table)) continue;
      yield { kind: 'record', record: { type: FRAME_TYPE.KV, kv: { table: op.table, key: op.key, value: op.value } }, extentOffsetBytes: -1 };
    }
  }

  /** Append ctx.txn's frames in batches, then make them durable. */
  private async appendTransaction(ctx: CommitContext): Promise<void> {
    const p = this.drivers.primitives;
    const staged = this.writer.clone();
    let position = this.writer.sizeBytes;
    let batch: Uint8Array[] = [];
    let batchBytes = 0;
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return;
      if (this.bug.fires('short-append')) await buggifySplitWrite(this.bug, 'short-append', this.drivers.clock, this.file, position, batch);
      else await this.file.writev(position, batch);
      position += batchBytes;
      batch = [];
      batchBytes = 0;
    };
    let count = 0;
    let framesCrc32 = 0;
    const add = async (frame: Uint8Array): Promise<void> => {
      staged.append(frame);
      batch.push(frame);
      batchBytes += frame.length;
      if (batchBytes >= APPEND_BATCH_BYTES) await flush();
    };
    // A live log refers to each new block's extent (BLOCKREF) instead of
    // copying its bytes: the frame binds the CRC of the BLOCK it stands for.
    const refs: LogRef[] = [];
    let delta = this.wireDelta;
    for await (const item of this.records(ctx)) {
      let frame: Uint8Array;
      let bound: number;
      const head: BlockHead | undefined =
        item.kind === 'ref'
          ? item.head
          : this.useRefs && item.record.type === FRAME_TYPE.BLOCK && item.record.block.stored.length >= BLOCKREF_MIN_STORED_BYTES
            ? { ...item.record.block, storedLength: item.record.block.stored.length }
            : undefined;
      if (head) {
        bound = item.kind === 'ref' ? blockFrameCrcOf(p, ctx.txn, head, item.storedCrc32) : blockFrameCrc(p, ctx.txn, (item.record as { block: BlockPayload }).block);
        frame = encodeBlockRefFrameOf(p, ctx.txn, head, item.extentOffsetBytes, bound);
        const wireBytes = blockFrameBytes(head.key.length, head.storedLength);
        const logOffset = staged.sizeBytes;
        delta += wireBytes - frame.length;
        refs.push({
          txn: ctx.txn,
          logOffset,
          logBytes: frame.length,
          wireOffset: logOffset + delta - (wireBytes - frame.length),
          wireBytes,
          extent: { offsetBytes: item.extentOffsetBytes, lengthBytes: alignExtent(Math.max(1, head.storedLength)) },
          storedBytes: head.storedLength,
          deltaAfter: delta,
        });
      } else {
        frame = encodeRecordFrame(p, ctx.txn, (item as { record: ReplRecord }).record);
        bound = new DataView(frame.buffer, frame.byteOffset + 4, 4).getUint32(0);
      }
      framesCrc32 = foldFrameCrc(p, framesCrc32, bound);
      count++;
      await add(frame);
    }
    await add(encodeCommitFrame(p, ctx.txn, { recordCount: count, nextIno: ctx.nextIno, framesCrc32, timeMs: Math.max(0, Math.floor(ctx.timeMs)) }));
    await flush();
    await this.file.sync();
    this.writer = staged;
    for (const r of refs) {
      this.refs.push(r);
      this.pin(r);
    }
    if (refs.length > 0) this.pinsSorted = undefined;
    this.ends.push(staged.sizeBytes + delta);
  }

  // ------------------------------------------------------------ rotation

  /**
   * Rotate now (rotate_replog): commit what is cached, then close the live log
   * as replog.dta-SEQUENCE. Only a batch-mode master rotates.
   */
  async rotate(): Promise<void> {
    if (!this.options.batch) throw new FormatError('EFORMAT', 'only a batch-mode master (REPLICATION_PARTNER_IP=-1) rotates its log');
    const rotationsBefore = this.rotations;
    this.rotateRequested = true;
    if (this.bug.fires('rotate-request-early')) await buggifyDelay(this.bug, 'rotate-request-early', this.drivers.clock, 3000);
    await this.engine.commit('rotate');
    // A commit already running when this was asked may have taken the request
    // and rotated before what was cached here got committed: rotate again then.
    await this.engine.withCommitLock(async () => {
      if (this.rotations === rotationsBefore || this.writer.transactionCount > 0) await this.rotateNow('requested');
    });
  }

  /** Under the commit lock. */
  private async rotateNow(why: string): Promise<void> {
    this.rotateRequested = false;
    if (this.closed) return;
    await this.finishRotation();
    if (this.writer.lastTxn > this.durableTxn) {
      // A failed store commit left its transaction in the log: it must not ship.
      if (!this.beforeLast || this.beforeLast.lastTxn !== this.durableTxn) {
        throw new FormatError('ECORRUPT', `replication log holds txn ${this.writer.lastTxn} beyond the database's ${this.durableTxn} and cannot roll it back`);
      }
      this.writer = this.beforeLast;
      this.ends.pop();
      this.dropRefsFrom(this.writer.sizeBytes);
      await this.file.truncate(this.writer.sizeBytes);
    }
    const sequence = this.writer.header.sequence;
    const first = this.writer.header.firstTxn;
    const last = this.writer.lastTxn;
    const size = this.writer.sizeBytes + 32;
    try {
      await this.closeAndRename();
      this.rotations++;
      this.drivers.logger.log(1, `replication log rotated (${why}): ${rotatedLogName(sequence)} holds txns ${first}..${last} (${last - first + 1} transactions, ${size} bytes)`);
    } catch (err) {
      this.lastError = `rotation of sequence ${sequence}: ${(err as Error).message}`;
      this.drivers.logger.log(0, `replication log: ${this.lastError}`);
      throw err;
    }
  }

  /**
   * Trailer, fsync, and the live log becomes replog.dta-SEQUENCE, with the next
   * log written complete under replog.dta.next first. A failure before the
   * first rename leaves the live log as it was (the trailer is overwritten by
   * the next append); one between the renames is finished here or, failing
   * that, before the next append (commits fail until it is) or at the next mount.
   */
  private async closeAndRename(): Promise<void> {
    const { disk } = this.drivers;
    const dir = this.options.dir;
    const target = joinPath(dir, rotatedLogName(this.writer.header.sequence));
    const nextPath = joinPath(dir, NEXT_LOG_NAME);
    if (await disk.stat(target)) {
      throw new ReplogError('ESEQUENCE', `${rotatedLogName(this.writer.header.sequence)} already exists in ${dir}; move it away so the log can rotate`);
    }
    const made = LogWriterState.create(this.drivers.primitives, this.writer.nextHeaderFields());
    try {
      await this.file.write(this.writer.sizeBytes, this.writer.encodeTrailer());
      await this.file.sync();
      await writeFileDurably(disk, nextPath, made.headerBytes);
      await disk.rename(this.livePath, target);
    } catch (err) {
      this.dirtyTail = true;
      await disk.unlink(nextPath).catch(() => undefined);
      throw err;
    }
    // The open handle now belongs to the rotated file: never append to it again.
    const old = this.file;
    this.unfinished = made.state;
    try {
      await this.finishRotation();
    } finally {
      await old.close().catch(() => undefined);
    }
  }

  /**
   * The second half of a rotation, idempotent: retried before the next append
   * when it failed (an EIO on a directory sync, say).
   */
  private async finishRotation(): Promise<void> {
    const next = this.unfinished;
    if (!next) return;
    const { disk } = this.drivers;
    const nextPath = joinPath(this.options.dir, NEXT_LOG_NAME);
    try {
      if (await disk.stat(nextPath)) {
        await disk.syncDir(this.options.dir);
        await disk.rename(nextPath, this.livePath);
      }
      await disk.syncDir(this.options.dir);
      this.file = await disk.open(this.livePath);
    } catch (err) {
      this.lastError = `a rotation stopped between its renames (${(err as Error).message}); retried before the next commit`;
      throw err;
    }
    this.unfinished = undefined;
    this.ends = [];
    this.writer = next;
    this.beforeLast = undefined;
    this.dirtyTail = false;
  }

  private armTimer(): void {
    if (!this.options.batch || this.options.rotateIntervalMs <= 0 || this.closed) return;
    this.timer = this.drivers.clock.setTimer(this.options.rotateIntervalMs, () => {
      this.timer = undefined;
      if (this.closed) return;
      const due = this.enabledFlag && (this.writer.transactionCount > 0 || this.engine.dirty);
      const run = due ? this.rotate() : Promise.resolve();
      run.then(
        () => this.armTimer(),
        (err: unknown) => {
          this.lastError = `timed rotation: ${(err as Error).message}`;
          this.drivers.logger.log(0, `replication log: ${this.lastError}`);
          this.armTimer();
        },
      );
    });
  }

  // ------------------------------------------------------------ live sending

  /** Txn of the first transaction the live log holds (or would hold next, when it holds none). */
  get firstTxn(): number {
    return this.writer.header.firstTxn;
  }

  /** Last transaction whose store commit is durable (the last one that may leave the master). */
  get committedTxn(): number {
    return Math.min(this.durableTxn, this.writer.lastTxn);
  }

  /** Byte offset in replog.dta where transaction txn starts (firstTxn <= txn <= lastTxn + 1). */
  startOf(txn: number): number {
    const i = txn - this.writer.header.firstTxn;
    if (!(i >= 0 && i <= this.ends.length)) {
      throw new FormatError('ECORRUPT', `replication log: txn ${txn} is not in replog.dta (it holds txns ${this.writer.header.firstTxn}..${this.writer.lastTxn})`);
    }
    return i === 0 ? this.writer.header.sizeBytes : this.ends[i - 1];
  }

  /** Bytes of the transactions after txn (what a slave at txn still needs). */
  bytesAfter(txn: number): number {
    if (txn >= this.writer.lastTxn) return 0;
    return this.wireSizeBytes - this.startOf(Math.max(txn + 1, this.writer.header.firstTxn));
  }

  /**
   * Bytes [startBytes, endBytes) of the log as the sender streams it: every
   * BLOCKREF replaced by its BLOCK frame, the stored bytes read from
   * blockdata.dta and checked against the CRC the BLOCKREF recorded. The range
   * may come back shorter (it stops before a BLOCK it would cut) or, when it
   * starts at a BLOCK longer than the range, longer (that whole BLOCK).
   * `verify` false: the extents' CRCs are not computed here (the frames carry
   * the logged CRC, which the slave checks: a sender verifies after a NAK).
   * startBytes must not lie inside a BLOCK that stands for a BLOCKREF.
   */
  async read(startBytes: number, endBytes: number, verify = true, alloc?: (bytes: number) => Uint8Array): Promise<Uint8Array> {
    const refs = this.refs;
    let lo = 0;
    let hi = refs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (refs[mid].wireOffset + refs[mid].wireBytes <= startBytes) lo = mid + 1;
      else hi = mid;
    }
    const first = lo;
    if (first < refs.length && refs[first].wireOffset < startBytes) {
      throw new FormatError('ECORRUPT', `replication log: read from offset ${startBytes}, inside the BLOCK of txn ${refs[first].txn} at ${refs[first].wireOffset}`);
    }
    let end = endBytes;
    let last = first;
    while (last < refs.length && refs[last].wireOffset < end) {
      const r = refs[last];
      if (r.wireOffset + r.wireBytes > end) {
        if (r.wireOffset > startBytes) {
          end = r.wireOffset;
          break;
        }
        end = r.wireOffset + r.wireBytes;
      }
      last++;
    }
    const deltaBefore = first > 0 ? refs[first - 1].deltaAfter : 0;
    const deltaEnd = last > first ? refs[last - 1].deltaAfter : deltaBefore;
    const logStart = startBytes - deltaBefore;
    const logEnd = end - deltaEnd;
    const logBytes = await this.file.read(logStart, logEnd - logStart);
    if (logBytes.length !== logEnd - logStart) throw new FormatError('ECORRUPT', `replication log: short read of ${logBytes.length} of ${logEnd - logStart} bytes at ${logStart}`);
    if (last === first) return logBytes;
    const out = alloc ? alloc(end - startBytes).subarray(0, end - startBytes) : new Uint8Array(end - startBytes);
    let w = 0;
    let l = 0;
    /** Write r's BLOCK frame from bytes, which hold the data file from offset base on. */
    const frameOf = (r: LogRef, bytes: Uint8Array, base: number): void => {
      const at = r.logOffset - logStart;
      out.set(logBytes.subarray(l, at), w);
      w += at - l;
      const ref = decodeBlockRef(logBytes.subarray(at + FRAME_HEADER_BYTES, at + r.logBytes), r.logOffset);
      const from = ref.extentOffsetBytes - base;
      if (from < 0 || !writeBlockFrameFromRef(this.drivers.primitives, r.txn, ref, bytes.subarray(from, from + ref.storedLength), out, w, verify)) {
        throw new FormatError(
          'ECORRUPT',
          `blockdata.dta at ${ref.extentOffsetBytes} (${ref.storedLength} bytes) no longer holds the block txn ${r.txn} logged there (CRC-32 mismatch): the data file is damaged; run lessfsck -t, and re-seed the slave if blocks are lost`,
        );
      }
      w += r.wireBytes;
      l = at + r.logBytes;
    };
    for (let i = first; i < last; ) {
      // The engine's memory has a live master's newest blocks.
      const inMemory = this.engine.storedInMemory(refs[i].extent.offsetBytes);
      if (inMemory && inMemory.length >= refs[i].storedBytes) {
        frameOf(refs[i], inMemory, refs[i].extent.offsetBytes);
        this.extentBytes.fromMemory += refs[i].storedBytes;
        i++;
        continue;
      }
      // Extents written one after another are read in one span.
      let j = i + 1;
      let spanEnd = refs[i].extent.offsetBytes + refs[i].storedBytes;
      while (
        j < last &&
        this.engine.storedInMemory(refs[j].extent.offsetBytes) === undefined &&
        refs[j].extent.offsetBytes >= spanEnd &&
        refs[j].extent.offsetBytes - spanEnd < READ_GAP_BYTES &&
        refs[j].extent.offsetBytes + refs[j].storedBytes - refs[i].extent.offsetBytes <= READ_SPAN_BYTES
      ) {
        spanEnd = refs[j].extent.offsetBytes + refs[j].storedBytes;
        j++;
      }
      const spanStart = refs[i].extent.offsetBytes;
      // Into a buffer read after read: fresh memory per span cost the sender
      // page faults (on these VMs ~2 s of system time per GiB touched).
      const direct = spanEnd - spanStart <= READ_SPAN_BYTES ? this.takeDirectSpan() : undefined;
      const scratch = direct ?? (spanEnd - spanStart <= READ_SPAN_BYTES ? this.spanBuffers.take(spanEnd - spanStart) : undefined);
      try {
        const span = await this.engine.readExtent(spanStart, spanEnd - spanStart, scratch);
        this.extentBytes.fromDisk += spanEnd - spanStart;
        for (; i < j; i++) frameOf(refs[i], span, spanStart);
      } finally {
        if (direct) this.directSpanBusy = false;
        else if (scratch) this.spanBuffers.give(scratch);
      }
    }
    out.set(logBytes.subarray(l), w);
    return out;
  }

  private takeDirectSpan(): Uint8Array | undefined {
    if (this.directSpan === undefined) this.directSpan = this.engine.extentReadBuffer(READ_SPAN_BYTES) ?? null;
    if (this.directSpan === null || this.directSpanBusy) return undefined;
    this.directSpanBusy = true;
    return this.directSpan;
  }

  /**
   * The slave has acknowledged everything up to txn as durable: when that is
   * all the log holds, cut it to size 0 (call under the engine's commit lock).
   */
  async trimIfAcked(txn: number): Promise<boolean> {
    if (this.closed || this.unfinished || txn < this.writer.lastTxn || this.writer.lastTxn > this.durableTxn) return false;
    if (this.pendingHeader) return false; // already empty
    // Empty in memory first: if the truncate or its sync fails (EIO), the
    // file may be cut to 0 or not, and the next append must not extend it
    // with zeros from the old size (a log that starts with zeros: found by
    // lessfs-sim's I/O errors, seed 8 of the disk profile). It starts the
    // file afresh (truncate, header, sync) whatever this left; everything in
    // the old log is acknowledged, and a crash before then recovers either.
    const made = LogWriterState.create(this.drivers.primitives, { ...this.writer.nextHeaderFields(), sequence: this.writer.header.sequence });
    this.writer = made.state;
    this.pendingHeader = made.headerBytes;
    this.beforeLast = undefined;
    this.dirtyTail = false;
    this.ends = [];
    this.refs = [];
    this.pinFrom = 0;
    if (this.pins.size > 0) {
      this.pins.clear();
      this.unpinned();
    }
    await this.file.truncate(0);
    await this.file.sync();
    return true;
  }

  /** After the engine's last commit (unmount). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.timer?.cancel();
    this.timer = undefined;
    if (this.unfinished) {
      // The handle is the rotated file's (closed); a remount finishes the rotation.
      await this.finishRotation().catch((err: unknown) => this.drivers.logger.log(0, `replication log: ${(err as Error).message}; the next mount finishes the rotation`));
      if (this.unfinished) return;
    }
    await this.file.close();
  }
}

/**
 * Why the store's txns after `logEnd`, the log's last, up to `storeTxn` are not
 * in the log: repairs by lessfsck -r (the meta lists them), a mount with
 * REPLICATION=off (the meta records the last txn logged), or, in a store from
 * before that record, either that or a damaged log.
 */
function gapCause(logEnd: number, storeTxn: number, meta: Partial<MasterReplicationMeta> | undefined): string {
  const gap = `transactions ${logEnd + 1}..${storeTxn}`;
  const known = meta?.txn !== undefined;
  const repairs = (meta?.repairTxns ?? []).filter((t) => t > logEnd && t <= storeTxn);
  if (repairs.length === 0) {
    return known
      ? `${gap} were committed without replication (a mount with REPLICATION=off); they cannot be replicated`
      : `the database is at txn ${storeTxn} (${gap} were committed without replication, or lost from a damaged log: this database predates the record that tells which); they cannot be replicated`;
  }
  const repaired = `the database was repaired by lessfsck -r at txn${repairs.length > 1 ? 's' : ''} ${repairs.join(', ')}`;
  const others = storeTxn - logEnd - repairs.length;
  if (others === 0) return `${repaired}, which the log does not hold and cannot replicate`;
  const how = known ? 'by a mount with REPLICATION=off' : 'by a mount with REPLICATION=off, or lost from a damaged log';
  return `${repaired}, and the other ${others} of ${gap} were committed without replication (${how}); none of them can be replicated`;
}

/**
 * Why a live log that ends before `loggedTxn`, the last transaction the store
 * committed with it, is refused, and what the operator can do.
 */
function lostCommitted(livePath: string, blockSizeBytes: number, scan: LiveLogEnd, loggedTxn: number): string {
  const txn = scan.lastTxn + 1;
  const found = scan.tail
    ? `the frame at offset ${scan.tail.offsetBytes} (in txn ${txn}) fails its check (${scan.tail.code}: ${scan.tail.detail})`
    : `it ends at offset ${scan.committedEndBytes}, after txn ${scan.lastTxn}`;
  return (
    `replication log ${livePath} is damaged: ${found}, but the database committed txns up to ${loggedTxn} with this log, ` +
    `which was durable before each commit, so this is not the torn tail of a crash: the file was damaged or replaced since. ` +
    `Txns ${txn}..${loggedTxn} cannot be replicated from it; nothing was changed. ` +
    `Inspect it (replogtool -r ${livePath} -b ${blockSizeBytes}); a slave that has not applied txn ${loggedTxn} must be re-seeded from a copy of this master. ` +
    `Then move the file aside (e.g. to ${LIVE_LOG_NAME}.damaged) and mount once with --accept-replog-gap: a new log sequence starts after the database's txn`
  );
}

/** The header of the live log, when it has a whole valid one (anything else is judged by the full scan). */
async function peekHeader(disk: Disk, p: Primitives, path: string, sizeBytes: number): Promise<LogHeader | undefined> {
  if (sizeBytes === 0) return undefined;
  const f = await disk.open(path, { readOnly: true });
  try {
    return decodeHeader(p, await f.read(0, Math.min(sizeBytes, HEADER_FIXED_BYTES + FS_ID_BYTES_MAX)));
  } catch {
    return undefined; // the scan that follows reports what is wrong with it
  } finally {
    await f.close();
  }
}

/** First and last txn of a rotated file, from its header and trailer (not the whole file: that is the slave's check). */
async function rotatedTxns(disk: Disk, p: Primitives, dir: string, sequence: number): Promise<{ firstTxn: number; lastTxn: number } | undefined> {
  const path = joinPath(dir, rotatedLogName(sequence));
  const st = await disk.stat(path);
  if (!st || st.sizeBytes < HEADER_FIXED_BYTES + 1 + TRAILER_BYTES) return undefined;
  const f = await disk.open(path, { readOnly: true });
  try {
    const header = decodeHeader(p, await f.read(0, Math.min(st.sizeBytes - TRAILER_BYTES, HEADER_FIXED_BYTES + FS_ID_BYTES_MAX)));
    const trailer = decodeTrailer(p, await f.read(st.sizeBytes - TRAILER_BYTES, TRAILER_BYTES));
    return { firstTxn: header.firstTxn, lastTxn: trailer.lastTxn };
  } catch {
    return undefined; // damaged: its range is not known (the slave refuses it, naming what is wrong)
  } finally {
    await f.close();
  }
}

/** Log files missing from the master's directory: what the refusal or the accepting log line says. */
export interface LogGap {
  /** The missing files and the txns each held, as far as the files around them tell. */
  text: string;
  /** The last committed txn known to be in a missing file (undefined: not known). */
  lastTxn: number | undefined;
  /** The highest missing sequence: a mount that accepts the gap records it in the meta. */
  throughSequence: number;
  /** The live log is among them. */
  liveLost: boolean;
}

/**
 * Which log files that held committed transactions are gone. A master rotates
 * in sequence and its files are shipped in ascending order and only then moved
 * away, so the rotated files on disk and the live log form an unbroken run of
 * sequences: a number missing inside it was deleted or lost before it was
 * shipped. The live log is lost when the store committed transactions with the
 * log of sequence S (meta) and neither replog.dta nor a rotated file of
 * sequence S or later is there (a rotated S means it was rotated; files past S
 * are rotations without transactions). Sequences up to the meta's
 * gapAcceptedThrough were given up knowingly before.
 */
async function findLogGaps(
  drivers: MasterLogDrivers,
  dir: string,
  meta: Partial<MasterReplicationMeta> | undefined,
  live: { header: LogHeader | undefined } | undefined,
): Promise<LogGap | undefined> {
  const { disk, primitives: p } = drivers;
  const onDisk = (await disk.readdir(dir))
    .map(parseRotatedLogName)
    .filter((n): n is number => n !== undefined)
    .sort((a, b) => a - b);
  const accepted = meta?.gapAcceptedThrough ?? 0;
  const S = meta?.sequence;
  const T = meta?.txn;
  const liveLost = live === undefined && S !== undefined && T !== undefined && S > accepted && !onDisk.some((n) => n >= S);
  const liveSequence = live ? (live.header?.sequence ?? S) : undefined;
  const newest = onDisk.length > 0 ? onDisk[onDisk.length - 1] : undefined;
  const upper = liveLost ? (S as number) : liveSequence !== undefined && newest !== undefined && liveSequence > newest ? liveSequence : newest !== undefined ? newest + 1 : undefined;
  const runs: { from: number; to: number }[] = [];
  const chain = upper !== undefined ? [...onDisk, upper] : onDisk;
  for (let i = 1; i < chain.length; i++) {
    const from = Math.max(chain[i - 1] + 1, accepted + 1);
    if (from <= chain[i] - 1) runs.push({ from, to: chain[i] - 1 });
  }
  if (liveLost) {
    const s = S as number;
    if (runs.length > 0 && runs[runs.length - 1].to === s - 1) runs[runs.length - 1].to = s;
    else runs.push({ from: s, to: s });
  }
  if (runs.length === 0) return undefined;
  const present = new Set(onDisk);
  const name = (n: number): string => (liveLost && n === S ? LIVE_LOG_NAME : rotatedLogName(n));
  let lastTxn: number | undefined;
  const parts: string[] = [];
  for (const r of runs) {
    const before = present.has(r.from - 1) ? await rotatedTxns(disk, p, dir, r.from - 1) : undefined;
    let to: number | undefined;
    if (liveLost && r.to === S) to = T;
    else if (present.has(r.to + 1)) to = (await rotatedTxns(disk, p, dir, r.to + 1))?.firstTxn;
    else if (live?.header && live.header.sequence === r.to + 1) to = live.header.firstTxn;
    if (to !== undefined && !(liveLost && r.to === S)) to -= 1;
    const from = before ? before.lastTxn + 1 : undefined;
    const txns =
      from !== undefined && to !== undefined
        ? from > to
          ? 'no transactions, but a slave needs every sequence in order'
          : `txns ${from}..${to}`
        : to !== undefined
          ? `txns up to ${to}${from === undefined && r.from > 1 ? ` (after those of ${rotatedLogName(r.from - 1)}, ${present.has(r.from - 1) ? 'which is unreadable' : 'shipped or gone'})` : ''}`
          : from !== undefined
            ? `txns from ${from}`
            : 'txns not known';
    if (to !== undefined && (from === undefined || from <= to)) lastTxn = Math.max(lastTxn ?? 0, to);
    const what = liveLost && r.to === S ? `the live log of sequence ${S}; ` : '';
    parts.push(`${r.from === r.to ? name(r.from) : `${name(r.from)} .. ${name(r.to)}`} (${what}${txns})`);
  }
  return { text: parts.join('; '), lastTxn, throughSequence: runs[runs.length - 1].to, liveLost };
}

/** Why a mount with missing log files is refused, and what the operator can do. */
function gapRefusal(dir: string, gap: LogGap, batch: boolean): string {
  const kept = gap.liveLost
    ? `the database committed them with the log, which was durable before each commit, and a slave gets them only from these files${batch ? '' : ` (a live master keeps in ${LIVE_LOG_NAME} what its slave has not acknowledged)`}`
    : 'the master rotates in sequence and ships in ascending order, so a file missing before the newest was deleted or lost before it was shipped, and a slave stops at the gap';
  const whole = gap.lastTxn !== undefined ? ` (a slave that has applied txn ${gap.lastTxn} already has them)` : '';
  return (
    `replication log files are missing from ${dir}: ${gap.text}. ${kept[0].toUpperCase()}${kept.slice(1)}; nothing was changed. ` +
    `If the files were moved, put them back and mount. Otherwise re-seed the slave from a copy of this master${whole}, ` +
    `then mount once with --accept-replog-gap: the gap is logged and accepted${gap.liveLost ? ', and a new log sequence starts after the database\'s txn' : ''}`
  );
}

/** Replace a file's bytes and make them durable. */
export async function writeFileDurably(disk: Disk, path: string, bytes: Uint8Array): Promise<void> {
  const f = await disk.open(path, { create: true });
  try {
    await f.truncate(0);
    await f.write(0, bytes);
    await f.sync();
  } finally {
    await f.close();
  }
}

/** A whole file's bytes. */
export async function readFileWhole(disk: Disk, path: string): Promise<Uint8Array> {
  const st = await disk.stat(path);
  const f = await disk.open(path, { readOnly: true });
  try {
    return await f.read(0, st?.sizeBytes ?? 0);
  } finally {
    await f.close();
  }
}
