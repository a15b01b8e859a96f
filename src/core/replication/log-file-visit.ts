// A replication log file read to show what it holds (replogtool -b), in
// bounded memory: checked whole first, exactly as a slave checks it (a
// rotated file by rotated-file.ts's pass 1; a file named replog.dta whose
// only fault is having no trailer as the live log, by the streamed live
// scan), and only then read again and handed over record by record, each
// transaction compared with the first read before its COMMIT is handed
// over, so a file that changed in between is refused (ECHANGED) before
// anything that differs is shown. Memory: the reads' buffer, one number per
// transaction, and nothing of the records (the visitor keeps what it needs).
// docs/replogtool.md, "Dump".

import type { FileHandle, Primitives } from '../drivers.ts';
import { ReplogError } from './errors.ts';
import { foldFrameCrc, type Frame, type ReplRecord, type Transaction } from './frames.ts';
import { checkHeader, checkNamedSequence, type LiveLogStreamScan, type LiveLogVisitor, type LogHeader, type LogTrailer, scanLiveLogFile } from './log-file.ts';
import { changedError, checkRotatedFile, Column, type RotatedFileCheck, type RotatedFileSource, rotatedTransactions, shrankError } from './rotated-file.ts';

/** What the first read found: the file passed every check. */
export type CheckedLogFile =
  | { kind: 'rotated'; sizeBytes: number; header: LogHeader; trailer: LogTrailer }
  /** `scan.header` is undefined when the file is empty or ends inside its header. */
  | { kind: 'live'; sizeBytes: number; scan: LiveLogStreamScan };

export interface LogFileVisitor {
  /** Once the file is checked, before anything else. */
  checked(file: CheckedLogFile): void;
  /**
   * Each record in file order, a view valid only during the call. A live
   * log's records after its last COMMIT are its uncommitted ones.
   */
  record(frame: Frame, record: ReplRecord): void;
  /** The COMMIT of the records handed over since the previous one (`records` and `decoded` are empty). */
  commit(transaction: Transaction): void;
}

export interface LogFileVisitOptions {
  /** The file's path or name, named in errors. */
  fileName?: string;
  /** The filesystem's block size: a file written with another is refused. */
  blockSizeBytes: number;
  /** The file is named as the live log (replog.dta): without a trailer it is read as one. */
  liveName: boolean;
  /** N when the file is named replog.dta-N: its header must say sequence N. */
  nameSequence: number | undefined;
}

/**
 * Check `source` and hand what it holds to `visitor`. Throws what a slave
 * throws for the file (ReplogError, before `checked`), or ECHANGED when the
 * second read differs from the first (after some of it was handed over).
 */
export async function visitLogFile(p: Primitives, source: RotatedFileSource, options: LogFileVisitOptions, visitor: LogFileVisitor): Promise<void> {
  const fileName = options.fileName;
  let check: RotatedFileCheck;
  try {
    check = await checkRotatedFile(p, source, { fsId: undefined, blockSizeBytes: options.blockSizeBytes, fileName });
  } catch (err) {
    // The header and block size were checked before the trailer: ETRUNCATED here is no whole header, or no trailer.
    if (options.liveName && err instanceof ReplogError && err.code === 'ETRUNCATED') return visitLiveLog(p, source, options, visitor);
    throw err;
  }
  checkNamedSequence(check.header, options.nameSequence, fileName);
  visitor.checked({ kind: 'rotated', sizeBytes: source.sizeBytes, header: check.header, trailer: check.trailer });
  const transactions = rotatedTransactions(p, source, check, { fileName, afterTxn: check.header.firstTxn - 1, visitRecord: (f, r) => visitor.record(f, r) });
  for await (const tx of transactions) visitor.commit(tx);
}

/** Reads of `source` for the live scan, which takes a short read as the file's end: here the file shrank, as in pass 1 of a rotated file. */
function wholeReads(source: RotatedFileSource, fileName: string | undefined): Pick<FileHandle, 'read'> {
  return {
    read: async (positionBytes, length, into) => {
      const got = await source.read(positionBytes, length, into);
      if (got.length < length) throw shrankError(source.sizeBytes, positionBytes + got.length, fileName);
      return got;
    },
  };
}

/** The COMMITs' CRCs of a scan, and the CRCs of the records after the last one folded (what binds the uncommitted records). */
class CommitTrace {
  readonly commits = new Column(new Uint32Array(16));
  openCrc32 = 0;

  constructor(private readonly p: Primitives) {}

  record(frame: Frame): void {
    this.openCrc32 = foldFrameCrc(this.p, this.openCrc32, frame.crc32);
  }

  commit(tx: Transaction): void {
    this.commits.push(tx.commitFrame.crc32);
    this.openCrc32 = 0;
  }
}

function sameScan(a: LiveLogStreamScan, b: LiveLogStreamScan): boolean {
  return (
    a.committedEndBytes === b.committedEndBytes &&
    a.committedCrc32 === b.committedCrc32 &&
    a.frameCount === b.frameCount &&
    a.lastTxn === b.lastTxn &&
    a.transactionCount === b.transactionCount &&
    a.uncommitted?.txn === b.uncommitted?.txn &&
    a.uncommitted?.recordCount === b.uncommitted?.recordCount &&
    a.tail?.code === b.tail?.code &&
    a.tail?.offsetBytes === b.tail?.offsetBytes &&
    a.tail?.detail === b.tail?.detail
  );
}

async function visitLiveLog(p: Primitives, source: RotatedFileSource, options: LogFileVisitOptions, visitor: LogFileVisitor): Promise<void> {
  const fileName = options.fileName;
  const scanOptions = { fileName, chunkBytes: source.chunkBytes };
  const first = new CommitTrace(p);
  const scan = await scanLiveLogFile(p, wholeReads(source, fileName), source.sizeBytes, { ...scanOptions, visit: first });
  if (scan.header) checkHeader(scan.header, { fsId: scan.header.fsId, blockSizeBytes: options.blockSizeBytes }, fileName);
  visitor.checked({ kind: 'live', sizeBytes: source.sizeBytes, scan });
  const checked = first.commits.done();
  const again = new CommitTrace(p);
  const visit: LiveLogVisitor = {
    record: (frame, record) => {
      again.record(frame);
      visitor.record(frame, record);
    },
    commit: (tx) => {
      const i = again.commits.length;
      if (!(i < checked.length && checked[i] === tx.commitFrame.crc32)) throw changedError(`txn ${tx.txn} is not the one checked`, fileName);
      again.commit(tx);
      visitor.commit(tx);
    },
  };
  let second: LiveLogStreamScan;
  try {
    second = await scanLiveLogFile(p, wholeReads(source, fileName), source.sizeBytes, { ...scanOptions, visit });
  } catch (err) {
    if (err instanceof ReplogError && err.code !== 'ECHANGED') throw changedError(err.message, fileName);
    throw err;
  }
  if (!sameScan(second, scan) || again.openCrc32 !== first.openCrc32) throw changedError('its committed end, uncommitted records or torn tail differ', fileName);
}
