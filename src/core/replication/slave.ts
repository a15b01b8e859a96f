// A slave applies the master's transactions: from rotated log files (watchdir,
// replogtool -c) here, from the wire later. Its position (the master's fs id,
// the last applied txn and file sequence) is stored in the same store
// transaction as what it applied, so a restart, a resend or a duplicate file
// never applies anything twice (DESIGN §4, idempotence).

import type { Logger, Primitives } from '../drivers.ts';
import { FormatError } from '../errors.ts';
import type { FsEngine, ReplicatedTxn } from '../fs/engine.ts';
import { ReplogError } from './errors.ts';
import { FRAME_TYPE, type Transaction } from './frames.ts';
import { checkNamedSequence, type LogHeader } from './log-file.ts';
import { bytesSource, checkRotatedFile, type RotatedFileCheck, type RotatedFileSource, rotatedTransactions } from './rotated-file.ts';

/** What a slave keeps in its store (meta 'replication'). */
export interface SlaveReplicationMeta {
  role: 'slave';
  /** The master's fs id, adopted with the first transaction applied. */
  fsId: string | undefined;
  /** Last master txn applied. */
  txn: number;
  /** Sequence of the last log file applied completely (0: none). */
  sequence: number;
  /**
   * The master txn this slave was at when `lessfsck -r` first repaired it: it
   * may differ from its master since. Kept with every position written until
   * the slave is re-seeded (a copy of the master's store has no such record).
   */
  repairedAtTxn?: number;
}

/** What a slave's mount, replogtool and status say about a recorded repair (undefined: none). */
export function slaveRepairNotice(pos: SlaveReplicationMeta): string | undefined {
  if (pos.repairedAtTxn === undefined) return undefined;
  return (
    `this slave was repaired by lessfsck -r at master txn ${pos.repairedAtTxn} and may differ from its master since; ` +
    'replication goes on (a transaction that does not fit is refused as diverged); re-seed it from a copy of the master to end this'
  );
}

export type ApplyOutcome =
  | { kind: 'applied'; header: LogHeader; firstTxn: number; lastTxn: number; transactions: number; bytes: number }
  | { kind: 'duplicate'; header: LogHeader; appliedTxn: number; appliedSequence: number };

/**
 * A master transaction as the engine applies it. `staged`: its blocks' bytes
 * went to FsEngine.stageReplicatedBlock as they arrived (a live slave).
 */
export function toReplicatedTxn(tx: Transaction, staged = false): ReplicatedTxn {
  const kvs: { table: string; key: Uint8Array; value: Uint8Array | undefined }[] = [];
  const blocks: ReplicatedTxn['blocks'][number][] = [];
  for (const r of tx.decoded) {
    if (r.type === FRAME_TYPE.KV) kvs.push(r.kv);
    else if (r.type === FRAME_TYPE.BLOCK) blocks.push({ key: r.block.key, codec: r.block.codec, rawLength: r.block.rawLength, stored: staged ? undefined : r.block.stored });
    else throw new ReplogError('EFRAME', `txn ${tx.txn} holds a BLOCKREF, which only a live master's replog.dta may hold`);
  }
  return { txn: tx.txn, nextIno: tx.commit.nextIno, kvs, blocks };
}

export class SlaveApplier {
  constructor(
    readonly engine: FsEngine,
    private readonly p: Primitives,
    private readonly logger: Logger,
  ) {}

  /** Where this slave is; a filesystem that never applied anything is at txn 0, sequence 0. */
  position(): SlaveReplicationMeta {
    const meta = this.engine.replicationMeta() as Partial<SlaveReplicationMeta> | { role: string } | undefined;
    if (meta === undefined) return slavePosition(undefined);
    if (meta.role !== 'slave') {
      throw new FormatError('EFORMAT', `${this.engine.options.metaPath} holds a replication ${String(meta.role)}'s state: it cannot apply a master's log (it is not a slave)`);
    }
    return slavePosition(meta as Partial<SlaveReplicationMeta>);
  }

  /** The position as of the last durable commit. */
  durablePosition(): SlaveReplicationMeta {
    return slavePosition(this.engine.durableReplicationMeta() as Partial<SlaveReplicationMeta> | undefined);
  }

  /**
   * Check a whole rotated file, then apply the transactions of it this slave
   * has not applied, in one store commit (a file too large for one is
   * committed in pieces that end at its transactions). Nothing of a file that fails any
   * check is applied. `nameSequence` is the N of replog.dta-N when the caller
   * found the file by that name. A file not in memory (rotatedFileSource) is
   * read twice, in chunks: checked (checkRotatedFile), then read again a
   * transaction at a time as it is applied (rotatedTransactions), each
   * compared with what the check saw; a file that changed in between is
   * dropped as any other failure is (ECHANGED).
   */
  async applyFile(file: Uint8Array | RotatedFileSource, fileName: string, nameSequence?: number, progress?: (doneTxns: number, totalTxns: number) => void): Promise<ApplyOutcome> {
    const source = file instanceof Uint8Array ? bytesSource(file) : file;
    const pos = this.position();
    // Every file is applied whole and durable, or not at all (below): the
    // write cache holds nothing of a master's transactions between files.
    const durable = this.durablePosition();
    if (pos.txn !== durable.txn || pos.sequence !== durable.sequence) {
      throw new Error(`${fileName} not applied: this slave holds transactions not yet durable (txn ${pos.txn}, durable txn ${durable.txn}), which a failed drop left behind; restart the slave`);
    }
    const blockSizeBytes = this.engine.options.blockSizeBytes;
    const check = await checkRotatedFile(this.p, source, { fsId: pos.fsId, blockSizeBytes, fileName });
    const { header, trailer } = check;
    checkNamedSequence(header, nameSequence, fileName);
    if (pos.sequence > 0 && header.sequence <= pos.sequence) {
      return { kind: 'duplicate', header, appliedTxn: pos.txn, appliedSequence: pos.sequence };
    }
    if (pos.sequence > 0 && header.sequence !== pos.sequence + 1) {
      throw new ReplogError('ESEQUENCE', `sequence gap: this slave applied ${`replog.dta-${pos.sequence}`} last and needs replog.dta-${pos.sequence + 1} next, not sequence ${header.sequence}`, { fileName });
    }
    if (header.firstTxn > pos.txn + 1) {
      const why = pos.txn === 0 ? 'this slave has applied nothing and needs the master\'s log from txn 1 (re-seed it from a copy of the master to start later)' : `this slave is at txn ${pos.txn}`;
      throw new ReplogError('ESEQUENCE', `transaction gap: the file starts at txn ${header.firstTxn}, but ${why}`, { fileName });
    }
    const todoFirst = Math.max(pos.txn + 1, header.firstTxn);
    const todoCount = Math.max(0, trailer.lastTxn - todoFirst + 1);
    let applied = 0;
    let bytesApplied = 0;
    const done: SlaveReplicationMeta = { ...pos, fsId: header.fsId, txn: Math.max(pos.txn, trailer.lastTxn), sequence: header.sequence };
    // Reads of a file larger than one read come between its transactions:
    // the commit timer must not make a part of it durable meanwhile (one
    // commit per file, or pieces ending where applyFile chooses).
    const release = this.engine.holdCommits();
    try {
      for await (const tx of rotatedTransactions(this.p, source, check, { fileName, afterTxn: pos.txn })) {
        // A file too large for one commit (more changes than a quarter of
        // STORE_COMMIT_OPS_MAX: a master that created or deleted a million
        // files between rotations) is made durable in pieces, each ending at
        // one of its transactions: a consistent state of the master, from
        // which the next attempt goes on (the transactions applied are skipped).
        if (this.engine.transactionLarge) await this.engine.commit('replicate, part of a large file');
        this.engine.applyReplicated(toReplicatedTxn(tx), { ...pos, fsId: header.fsId, txn: tx.txn } satisfies SlaveReplicationMeta);
        applied++;
        for (const r of tx.records) bytesApplied += r.sizeBytes;
        progress?.(applied, todoCount);
      }
      release();
      // The file is done: its sequence goes with the same commit.
      this.engine.setReplicationMeta(done);
      await this.engine.commit('replicate');
    } catch (err) {
      throw await this.dropFile(err, fileName, check, todoFirst);
    } finally {
      release();
    }
    if (pos.fsId === undefined) this.logger.log(1, `slave adopted master filesystem id ${header.fsId}`);
    return { kind: 'applied', header, firstTxn: todoCount > 0 ? todoFirst : pos.txn, lastTxn: done.txn, transactions: applied, bytes: bytesApplied };
  }

  /**
   * Applying a file failed after its transactions went into the write cache:
   * drop all of it (FsEngine.discardUncommitted: the cache, its blocks
   * written or failed, the data file cut back to the durable end), so
   * nothing of the file stays unless it is durable (all of it, or the pieces
   * of a large file committed before the failure), and the next attempt (the
   * watchdir's, or replogtool run again) starts from the durable position.
   */
  private async dropFile(cause: unknown, fileName: string, check: RotatedFileCheck, todoFirst: number): Promise<FileNotAppliedError> {
    const why = (cause as Error).message;
    const blockBytesAfter = (txn: number): number => {
      let n = 0;
      for (let i = Math.max(txn + 1, todoFirst) - check.header.firstTxn; i < check.blockBytes.length; i++) n += check.blockBytes[i];
      return n;
    };
    try {
      await this.engine.discardUncommitted();
    } catch (err) {
      return new FileNotAppliedError(`${fileName} was not applied: ${why}; dropping what was applied of it failed too (${(err as Error).message})`, cause, false, blockBytesAfter(0));
    }
    const pos = this.durablePosition();
    if (todoFirst <= check.trailer.lastTxn && pos.txn >= todoFirst) {
      // Pieces of a large file committed before the failure: they stay.
      return new FileNotAppliedError(
        `${fileName} was not applied whole: ${why}; its transactions up to txn ${pos.txn} are applied and durable (it was too large for one commit), the rest was dropped and is applied from txn ${pos.txn + 1} next time`,
        cause, true, blockBytesAfter(pos.txn),
      );
    }
    const at = pos.sequence > 0 ? `replog.dta-${pos.sequence}, txn ${pos.txn}` : `txn ${pos.txn}, no file applied yet`;
    return new FileNotAppliedError(`${fileName} was not applied: ${why}; nothing of it was kept (this slave stays at ${at})`, cause, true, blockBytesAfter(0));
  }
}

/**
 * A file that did not become durable (a full disk failed a block write or
 * the commit, a transaction did not fit): what it put in the write cache was
 * dropped, and the slave is where it was. `code` is the cause's (ENOSPC for
 * a full disk: the file can be applied again once there is room).
 */
export class FileNotAppliedError extends Error {
  readonly code: string;
  constructor(
    message: string,
    override readonly cause: unknown,
    /** False when the drop failed too: the write cache may hold part of the file (applyFile refuses until a restart). */
    readonly dropped: boolean,
    /** Stored bytes of the blocks new in the file's transactions: about what the data file needs for them. */
    readonly blockBytes: number,
  ) {
    super(message);
    this.name = 'FileNotAppliedError';
    this.code = String((cause as { code?: unknown }).code ?? 'EIO');
  }
}

/** A slave's position from its meta (undefined: nothing applied yet); a recorded repair goes with it. */
function slavePosition(m: Partial<SlaveReplicationMeta> | undefined): SlaveReplicationMeta {
  const pos: SlaveReplicationMeta = { role: 'slave', fsId: m?.fsId, txn: m?.txn ?? 0, sequence: m?.sequence ?? 0 };
  if (m?.repairedAtTxn !== undefined) pos.repairedAtTxn = m.repairedAtTxn;
  return pos;
}
