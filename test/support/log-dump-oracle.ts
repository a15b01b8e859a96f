// replogtool's dump as it was before it streamed (the oracle of
// test/unit/replogtool-dump.test.ts): the whole file in one buffer,
// validateRotatedFile or scanLiveLog over it, the whole LogDump built, then
// printed as text lines or as JSON.stringify(dump, null, 2).

import { basename } from 'node:path';
import {
  addToTotals,
  dumpHeader,
  dumpLive,
  dumpRecord,
  dumpTransaction,
  endLines,
  headLines,
  type LogDump,
  transactionLines,
} from '../../src/cli/replogtool.ts';
import type { Primitives } from '../../src/core/drivers.ts';
import { ReplogError } from '../../src/core/replication/errors.ts';
import { decodeRecord, hex32, type Transaction } from '../../src/core/replication/frames.ts';
import { checkHeader, checkNamedSequence, decodeHeader, type LogHeader, scanLiveLog, validateRotatedFile } from '../../src/core/replication/log-file.ts';
import { LIVE_LOG_NAME, parseRotatedLogName } from '../../src/core/replication/master-log.ts';

function dumpTransactions(p: Primitives, transactions: Transaction[], fileBytes: number): Pick<LogDump, 'transactions' | 'totals'> {
  const txs = transactions.map((t) => dumpTransaction(t, t.decoded.map((r, i) => dumpRecord(p, r, t.records[i].offsetBytes))));
  const totals = { transactions: 0, kvRecords: 0, blockRecords: 0, blockStoredBytes: 0, fileBytes };
  for (const tx of txs) addToTotals(totals, tx);
  return { transactions: txs, totals };
}

function fromLive(p: Primitives, file: string, bytes: Uint8Array, blockSizeBytes: number): LogDump {
  const scan = scanLiveLog(p, bytes, { fileName: file });
  if (scan.header) checkHeader(scan.header, { fsId: scan.header.fsId, blockSizeBytes }, file);
  const { transactions, totals } = dumpTransactions(p, scan.transactions, bytes.length);
  const u = scan.uncommitted;
  const uncommitted = u && { txn: u.txn, records: u.records.map((f) => dumpRecord(p, decodeRecord(f), f.offsetBytes)) };
  return {
    file,
    kind: 'live',
    fileBytes: bytes.length,
    header: scan.header ? dumpHeader(scan.header) : null,
    transactions,
    trailer: null,
    live: dumpLive(scan, bytes.length, uncommitted),
    totals,
  };
}

/** The whole dump of a file's bytes (throws ReplogError as a slave refuses it). */
export function dumpLogFile(p: Primitives, bytes: Uint8Array, file: string, blockSizeBytes: number): LogDump {
  const live = basename(file) === LIVE_LOG_NAME;
  let header: LogHeader;
  try {
    header = decodeHeader(p, bytes, file);
  } catch (err) {
    if (live && err instanceof ReplogError && err.code === 'ETRUNCATED') return fromLive(p, file, bytes, blockSizeBytes);
    throw err;
  }
  try {
    const v = validateRotatedFile(p, bytes, { fsId: header.fsId, blockSizeBytes, fileName: file });
    checkNamedSequence(v.header, parseRotatedLogName(basename(file)), file);
    const { transactions, totals } = dumpTransactions(p, v.transactions, bytes.length);
    const t = v.trailer;
    return {
      file,
      kind: 'rotated',
      fileBytes: bytes.length,
      header: dumpHeader(v.header),
      transactions,
      trailer: { lastTxn: t.lastTxn, frameCount: t.frameCount, fileCrc32: hex32(t.fileCrc32) },
      live: null,
      totals,
    };
  } catch (err) {
    // Header and expectations were checked before the trailer: ETRUNCATED here is "no trailer".
    if (live && err instanceof ReplogError && err.code === 'ETRUNCATED') return fromLive(p, file, bytes, blockSizeBytes);
    throw err;
  }
}

/** What `replogtool -r FILE -b N [--json]` printed for a whole dump. */
export function printedDump(d: LogDump, json: boolean): string {
  if (json) return `${JSON.stringify(d, null, 2)}\n`;
  const lines = [...headLines(d), ...d.transactions.flatMap((tx) => [...transactionLines(tx)]), ...endLines(d, d.transactions[0]?.txn)];
  return lines.map((l) => `${l}\n`).join('');
}
