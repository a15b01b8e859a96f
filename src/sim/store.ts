// Simulated Store with LMDB's semantics (see Store in src/core/drivers.ts).
//
// A SimStoreMedium holds a node's environments; they outlive the node's
// incarnations the way LMDB files outlive a process. Each environment keeps
//   committed: what reads see and what survives a process crash,
//   durable:   what survives a power loss,
// both as immutable snapshots (SortedTable), plus the snapshots of commits that
// are applied but not yet durable. Commits are serial, like LMDB's one writer:
// each applies atomically as one scheduler event after its latency; a durable
// commit (or a sync) then becomes durable after a sync latency. Events belong to
// the opening node's Domain, so a commit in flight when the node dies never
// applies and never resolves: all or nothing.

import type { Store, StoreEntry, StoreFactory, StoreOp, StoreOpenOptions, RangeOptions } from '../core/drivers.ts';
import { AssertionError, assert } from '../core/errors.ts';
import { STORE_COMMIT_OPS_MAX, StoreError, checkKey, checkOpenOptions, checkOps, checkRange, checkTable } from '../core/store-rules.ts';
import type { SimRng } from './rng.ts';
import type { Domain, Scheduler } from './scheduler.ts';
import { SortedTable, type SortedTableDraft } from './sorted-table.ts';

/** The simulated store's fault model. */
export interface SimStoreOptions {
  /** Time from a commit's start (after the previous commit) until it is applied. */
  commitLatencyMsMin: number;
  commitLatencyMsMax: number;
  /** Time a sync (or the sync of a durable commit) takes to make commits durable. */
  syncLatencyMsMin: number;
  syncLatencyMsMax: number;
  /** Chance that a commit fails with EIO and applies nothing. */
  commitErrorProbability: number;
  /**
   * Capacity in key+value bytes per environment; a commit that would grow the
   * data beyond it fails with ENOSPC (detail MDB_MAP_FULL) and applies nothing.
   * 0 = unlimited.
   * A store opened with a smaller StoreOpenOptions.mapSizeBytes uses that.
   */
  mapSizeBytes: number;
  /** Commits issued but not resolved per environment before it is a bug. */
  commitsInflightMax: number;
  /**
   * Operations per commit, at most STORE_COMMIT_OPS_MAX (the real store's
   * bound, the default): a smaller one lets a test reach the bound with a
   * small tree. A commit over it fails with EINVAL and applies nothing.
   */
  commitOpsMax: number;
}

export const SIM_STORE_OPTIONS_DEFAULT: Readonly<SimStoreOptions> = Object.freeze({
  commitLatencyMsMin: 1,
  commitLatencyMsMax: 5,
  syncLatencyMsMin: 2,
  syncLatencyMsMax: 10,
  commitErrorProbability: 0,
  mapSizeBytes: 0,
  commitsInflightMax: 100_000,
  commitOpsMax: STORE_COMMIT_OPS_MAX,
});

function validateOptions(o: SimStoreOptions): void {
  const bad = (what: string): never => {
    throw new RangeError(`SimStoreOptions: ${what}`);
  };
  for (const k of ['commitLatencyMsMin', 'commitLatencyMsMax', 'syncLatencyMsMin', 'syncLatencyMsMax'] as const) {
    if (!Number.isFinite(o[k]) || o[k] < 0) bad(`${k} must be a finite number >= 0, got ${o[k]}`);
  }
  if (o.commitLatencyMsMin > o.commitLatencyMsMax) bad(`commitLatencyMsMin ${o.commitLatencyMsMin} > commitLatencyMsMax ${o.commitLatencyMsMax}`);
  if (o.syncLatencyMsMin > o.syncLatencyMsMax) bad(`syncLatencyMsMin ${o.syncLatencyMsMin} > syncLatencyMsMax ${o.syncLatencyMsMax}`);
  if (!(o.commitErrorProbability >= 0 && o.commitErrorProbability <= 1)) {
    bad(`commitErrorProbability must be in [0, 1], got ${o.commitErrorProbability}`);
  }
  if (!Number.isSafeInteger(o.mapSizeBytes) || o.mapSizeBytes < 0) bad(`mapSizeBytes must be an integer >= 0, got ${o.mapSizeBytes}`);
  if (!Number.isSafeInteger(o.commitsInflightMax) || o.commitsInflightMax < 1) {
    bad(`commitsInflightMax must be an integer >= 1, got ${o.commitsInflightMax}`);
  }
  if (!Number.isSafeInteger(o.commitOpsMax) || o.commitOpsMax < 1 || o.commitOpsMax > STORE_COMMIT_OPS_MAX) {
    bad(`commitOpsMax must be an integer in 1..${STORE_COMMIT_OPS_MAX}, got ${o.commitOpsMax}`);
  }
}

/** Table name -> contents. Missing tables read as empty (LMDB creates tables on demand). */
type EnvState = ReadonlyMap<string, SortedTable>;

function stateBytes(state: EnvState): number {
  let bytes = 0;
  for (const table of state.values()) bytes += table.bytes;
  return bytes;
}

export interface SimEnvInfo {
  /** Sequence number of the last applied (committed) commit, 0 if none. */
  committedSeq: number;
  /** Sequence number of the last applied commit that survives a power loss. */
  durableSeq: number;
  /** Snapshots kept for pending durable events (bounded by those events). */
  undurableSnapshots: number;
  /** Key+value bytes committed, over all tables. */
  committedBytes: number;
  /** Entries per table, committed. */
  entries: Record<string, number>;
}

class SimEnv {
  committed: EnvState = new Map();
  committedSeq = 0;
  durable: EnvState = new Map();
  durableSeq = 0;
  /**
   * Snapshots a pending durable event will need, in sequence order: the state
   * once every commit up to `seq` has applied or failed. Only durability
   * targets are kept, so memory stays bounded under non-durable commits.
   */
  undurable: Array<{ seq: number; committedSeq: number; state: EnvState }> = [];
  /** Sequence numbers a pending durable commit or sync will make durable. */
  readonly targets = new Set<number>();
  /** Commit sequence numbers are per environment and never reused. */
  lastIssuedSeq = 0;
  /** The last commit whose apply event ran (applied or failed) or died with its incarnation. */
  lastDoneSeq = 0;
  /** Bumped by crash and power loss: events of an older incarnation do nothing. */
  incarnation = 0;
  open: SimStore | undefined;
  // The writer's schedule within the current incarnation: commits apply, syncs
  // finish and promises settle in issue order.
  lastApplyAtMs = 0;
  lastDurableAtMs = 0;
  lastSettleAtMs = 0;
  inflight = 0;

  constructor(
    readonly path: string,
    readonly rng: SimRng,
  ) {}

  /** Apply one commit atomically, or fail and apply nothing. */
  apply(seq: number, ops: readonly StoreOp[], capacityBytes: number): StoreError | undefined {
    const drafts = new Map<string, SortedTableDraft>();
    for (const op of ops) {
      let draft = drafts.get(op.table);
      if (!draft) {
        draft = (this.committed.get(op.table) ?? SortedTable.EMPTY).edit();
        drafts.set(op.table, draft);
      }
      if (op.value === undefined) draft.delete(op.key);
      else draft.put(op.key, op.value);
    }
    const next = new Map(this.committed);
    for (const [table, draft] of drafts) next.set(table, draft.finish());
    if (capacityBytes > 0) {
      const bytes = stateBytes(next);
      // A commit that does not grow the data is always admitted, so space can be freed when full.
      if (bytes > capacityBytes && bytes > stateBytes(this.committed)) {
        return new StoreError(
          'ENOSPC',
          this.path,
          `commit #${seq} needs ${bytes} bytes of keys and values, the map holds ${capacityBytes}: raise LMDB_MAPSIZE`,
          { detail: 'MDB_MAP_FULL' },
        );
      }
    }
    if (!(seq > this.committedSeq)) throw new AssertionError(`store ${this.path}: commit #${seq} applied after #${this.committedSeq}`);
    this.committed = next;
    this.committedSeq = seq;
    return undefined;
  }

  /** Commit `seq` has applied or failed: keep the state if a durable event will want it. */
  done(seq: number): void {
    if (!(seq === this.lastDoneSeq + 1)) throw new AssertionError(`store ${this.path}: commit #${seq} done after #${this.lastDoneSeq}`);
    this.lastDoneSeq = seq;
    if (this.targets.delete(seq)) this.record(seq);
  }

  /** A sync wants everything issued so far: now if all of it is done, else when it is. */
  target(seq: number): void {
    if (seq <= this.lastDoneSeq) this.record(seq);
    else this.targets.add(seq);
  }

  /** Every commit up to seq that applied is now durable. */
  makeDurable(seq: number): void {
    let i = 0;
    while (i < this.undurable.length && this.undurable[i].seq <= seq) i++;
    if (i === 0) return;
    const last = this.undurable[i - 1];
    this.durable = last.state;
    this.durableSeq = last.committedSeq;
    this.undurable.splice(0, i);
  }

  private record(seq: number): void {
    const last = this.undurable[this.undurable.length - 1];
    if (last && last.seq >= seq) return;
    if (this.committedSeq === this.durableSeq && !last) return; // nothing beyond the durable state
    this.undurable.push({ seq, committedSeq: this.committedSeq, state: this.committed });
  }

  /** A new incarnation: nothing scheduled by the old one may run. */
  endIncarnation(): void {
    // Commits still in flight die, as if done without applying; what did apply
    // stays committed, and the next incarnation's sync covers it (target()).
    this.lastDoneSeq = this.lastIssuedSeq;
    this.targets.clear();
    this.incarnation++;
    this.open?.defunct();
    this.open = undefined;
    this.lastApplyAtMs = 0;
    this.lastDurableAtMs = 0;
    this.lastSettleAtMs = 0;
    this.inflight = 0;
  }

  info(): SimEnvInfo {
    const entries: Record<string, number> = {};
    for (const [table, contents] of [...this.committed].sort((a, b) => (a[0] < b[0] ? -1 : 1))) entries[table] = contents.count;
    return {
      committedSeq: this.committedSeq,
      durableSeq: this.durableSeq,
      undurableSnapshots: this.undurable.length,
      committedBytes: stateBytes(this.committed),
      entries,
    };
  }
}

/** The persistent medium of one node: its store environments, across incarnations. */
export class SimStoreMedium {
  private opts: Readonly<SimStoreOptions>;
  private readonly envs = new Map<string, SimEnv>();

  constructor(
    private readonly scheduler: Scheduler,
    private readonly rng: SimRng,
    options: Partial<SimStoreOptions> = {},
  ) {
    const merged = { ...SIM_STORE_OPTIONS_DEFAULT, ...options };
    validateOptions(merged);
    this.opts = Object.freeze(merged);
  }

  get options(): Readonly<SimStoreOptions> {
    return this.opts;
  }

  /** Change the fault model mid-run (a test heals the store before checking convergence). */
  setOptions(changes: Partial<SimStoreOptions>): void {
    const merged = { ...this.opts, ...changes };
    validateOptions(merged);
    this.opts = Object.freeze(merged);
  }

  /** A factory whose stores belong to `domain`: they die with it. */
  factory(domain: Domain): StoreFactory {
    return { open: (options) => this.open(domain, options) };
  }

  /** Process crash: everything committed survives; commits in flight are lost whole. */
  crash(): void {
    for (const env of this.sortedEnvs()) {
      this.scheduler.trace(`store ${env.path} crash: keeps #${env.committedSeq} (durable #${env.durableSeq})`);
      env.endIncarnation();
    }
  }

  /** Power loss: every environment reverts to its last durable commit. */
  powerLoss(): void {
    for (const env of this.sortedEnvs()) {
      this.scheduler.trace(
        `store ${env.path} power loss: reverts #${env.committedSeq} to #${env.durableSeq}`,
      );
      env.endIncarnation();
      env.committed = env.durable;
      env.committedSeq = env.durableSeq;
      env.undurable = [];
    }
  }

  /** Inspect an environment (tests and invariant checks); undefined if never opened. */
  info(path: string): SimEnvInfo | undefined {
    return this.envs.get(path)?.info();
  }

  private sortedEnvs(): SimEnv[] {
    // Map order is creation order, which is deterministic; sorting makes traces independent of it too.
    return [...this.envs.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  private async open(domain: Domain, options: StoreOpenOptions): Promise<Store> {
    checkOpenOptions(options);
    if (!domain.alive) throw new StoreError('ECLOSED', options.path, `open: domain ${domain.name} is dead`);
    let env = this.envs.get(options.path);
    if (!env) {
      env = new SimEnv(options.path, this.rng.split(`store:${options.path}`));
      this.envs.set(options.path, env);
    }
    const previous = env.open?.status();
    if (previous === 'open' || previous === 'closing') {
      throw new StoreError('EBUSY', options.path, `open: environment is already open in this node (${previous})`);
    }
    if (previous === 'dead') {
      // Its domain died without a crash() call: the same thing as a crash.
      this.scheduler.trace(`store ${env.path} reopened after its domain died: keeps #${env.committedSeq}`);
      env.endIncarnation();
    }
    const requested = options.mapSizeBytes ?? 0;
    const medium = this.options.mapSizeBytes;
    const capacityBytes = requested > 0 && medium > 0 ? Math.min(requested, medium) : Math.max(requested, medium);
    const store = new SimStore(this.scheduler, () => this.opts, env, domain, options.tables, capacityBytes);
    env.open = store;
    this.scheduler.trace(`store ${env.path} open tables=${options.tables.join(',')} capacity=${capacityBytes}`);
    return store;
  }
}

class SimStore implements Store {
  readonly tables: readonly string[];
  private readonly tableSet: ReadonlySet<string>;
  private readonly incarnation: number;
  private closed = false;
  private isDefunct = false;
  /** Settles when the last issued commit or sync settles (close waits on it). */
  private lastSettled: Promise<void> = Promise.resolve();

  constructor(
    private readonly scheduler: Scheduler,
    /** The medium's options now (setOptions changes them mid-run for open stores too). */
    private readonly optionsNow: () => Readonly<SimStoreOptions>,
    private readonly env: SimEnv,
    private readonly domain: Domain,
    tables: readonly string[],
    private readonly capacityBytes: number,
  ) {
    this.tables = Object.freeze([...tables]);
    this.tableSet = new Set(tables);
    this.incarnation = env.incarnation;
  }

  private get options(): Readonly<SimStoreOptions> {
    return this.optionsNow();
  }

  status(): 'open' | 'closing' | 'dead' {
    if (this.isDefunct || !this.domain.alive || this.env.incarnation !== this.incarnation) return 'dead';
    return this.closed ? 'closing' : 'open';
  }

  defunct(): void {
    this.isDefunct = true;
  }

  get(table: string, key: Uint8Array): Uint8Array | undefined {
    this.checkUsable('get');
    checkTable(this.env.path, this.tableSet, table);
    checkKey(this.env.path, key, 'get');
    const value = this.env.committed.get(table)?.get(key);
    return value === undefined ? undefined : value.slice();
  }

  range(table: string, options?: RangeOptions): Iterable<StoreEntry> {
    this.checkUsable('range');
    checkTable(this.env.path, this.tableSet, table);
    checkRange(this.env.path, options);
    // Taken now, not at the first next(): the iterator reads the state committed
    // when range() was called, whatever commits apply while it is consumed.
    const snapshot = this.env.committed.get(table) ?? SortedTable.EMPTY;
    const bounds = { ...options, start: options?.start?.slice(), end: options?.end?.slice() };
    return {
      *[Symbol.iterator](): Iterator<StoreEntry> {
        for (const [key, value] of snapshot.entries(bounds)) yield { key: key.slice(), value: value.slice() };
      },
    };
  }

  commit(ops: readonly StoreOp[], options: { durable: boolean }): Promise<void> {
    try {
      this.checkUsable('commit');
      checkOps(this.env.path, this.tableSet, ops, this.options.commitOpsMax);
      this.checkInflight();
    } catch (error) {
      return Promise.reject(error);
    }
    // Copies taken now: the caller may reuse its buffers once commit() returns.
    const copied: StoreOp[] = ops.map((op) => ({
      table: op.table,
      key: op.key.slice(),
      value: op.value === undefined ? undefined : op.value.slice(),
    }));
    const durable = options.durable === true;
    const env = this.env;
    const seq = ++env.lastIssuedSeq;
    const injectedError = env.rng.chance(this.options.commitErrorProbability);
    const now = this.scheduler.nowMs();
    const applyAtMs = Math.max(now, env.lastApplyAtMs) + this.draw(this.options.commitLatencyMsMin, this.options.commitLatencyMsMax);
    env.lastApplyAtMs = applyAtMs;
    let durableAtMs: number | undefined;
    if (durable) {
      durableAtMs = Math.max(applyAtMs + this.draw(this.options.syncLatencyMsMin, this.options.syncLatencyMsMax), env.lastDurableAtMs);
      env.lastDurableAtMs = durableAtMs;
    }
    this.scheduler.trace(
      `store ${env.path} commit #${seq} ops=${copied.length} durable=${durable} apply@${applyAtMs}` +
        (durableAtMs === undefined ? '' : ` durable@${durableAtMs}`) +
        (injectedError ? ' fault=EIO' : ''),
    );
    let failure: StoreError | undefined;
    if (durable) env.targets.add(seq);
    const onApply = (): void => {
      if (injectedError) {
        failure = new StoreError('EIO', env.path, `commit #${seq} failed (injected I/O error); nothing applied`);
        this.scheduler.trace(`store ${env.path} commit #${seq} EIO (injected)`);
      } else {
        failure = env.apply(seq, copied, this.capacityBytes);
        if (failure) this.scheduler.trace(`store ${env.path} commit #${seq} ${failure.code}`);
      }
      env.done(seq);
    };
    const onDurable = (): void => {
      // A failed commit never reaches its sync (the real driver syncs only after success).
      if (!failure) env.makeDurable(seq);
    };
    return this.schedule(seq, applyAtMs, onApply, durableAtMs, onDurable, () => failure);
  }

  sync(): Promise<void> {
    try {
      this.checkUsable('sync');
      this.checkInflight();
    } catch (error) {
      return Promise.reject(error);
    }
    const env = this.env;
    // Covers every commit issued so far, including applied commits of an earlier
    // incarnation: an fsync flushes whatever the dead process left in the page cache.
    const covered = env.lastIssuedSeq;
    env.target(covered);
    const now = this.scheduler.nowMs();
    const startAtMs = Math.max(now, env.lastApplyAtMs);
    const durableAtMs = Math.max(startAtMs + this.draw(this.options.syncLatencyMsMin, this.options.syncLatencyMsMax), env.lastDurableAtMs);
    env.lastDurableAtMs = durableAtMs;
    this.scheduler.trace(`store ${env.path} sync upto #${covered} durable@${durableAtMs}`);
    return this.schedule(`sync<=#${covered}`, undefined, undefined, durableAtMs, () => env.makeDurable(covered), () => undefined);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.checkUsable('close');
    this.closed = true;
    await this.lastSettled;
    if (this.env.open === this && this.env.incarnation === this.incarnation) {
      this.env.open = undefined;
      this.scheduler.trace(`store ${this.env.path} closed`);
    }
  }

  /** Schedule a commit's (or sync's) events; its promise settles in issue order. */
  private schedule(
    id: number | string,
    applyAtMs: number | undefined,
    onApply: (() => void) | undefined,
    durableAtMs: number | undefined,
    onDurable: (() => void) | undefined,
    outcome: () => StoreError | undefined,
  ): Promise<void> {
    const env = this.env;
    env.inflight++;
    const now = this.scheduler.nowMs();
    const settleAtMs = Math.max(durableAtMs ?? applyAtMs ?? now, env.lastSettleAtMs);
    env.lastSettleAtMs = settleAtMs;
    const incarnation = this.incarnation;
    const current = (): boolean => env.incarnation === incarnation;
    const label = `${env.path} #${id}`;
    const promise = new Promise<void>((resolve, reject) => {
      const settle = (): void => {
        env.inflight--;
        const error = outcome();
        if (error) reject(error);
        else resolve();
      };
      // The promise settles within the last step's event when nothing earlier must
      // settle first (one scheduler event fewer per commit); else at settleAtMs.
      // Same-time events run in scheduling order, so issue order still holds.
      const lastStepAtMs = durableAtMs ?? applyAtMs;
      const settlesInline = lastStepAtMs === settleAtMs;
      if (applyAtMs !== undefined && onApply) {
        const inline = settlesInline && durableAtMs === undefined;
        this.scheduler.schedule(
          applyAtMs - now,
          `store.apply ${label}`,
          () => {
            if (!current()) return;
            onApply();
            if (inline) settle();
          },
          this.domain,
        );
      }
      if (durableAtMs !== undefined && onDurable) {
        this.scheduler.schedule(
          durableAtMs - now,
          `store.durable ${label}`,
          () => {
            if (!current()) return;
            onDurable();
            if (settlesInline) settle();
          },
          this.domain,
        );
      }
      if (!settlesInline) {
        this.scheduler.schedule(settleAtMs - now, `store.settle ${label}`, () => current() && settle(), this.domain);
      }
    });
    // Only for close() to wait on: the outcome itself is delivered through `promise`.
    this.lastSettled = promise.then(
      () => undefined,
      () => undefined,
    );
    return promise;
  }

  private draw(minMs: number, maxMs: number): number {
    return minMs === maxMs ? minMs : minMs + this.env.rng.float() * (maxMs - minMs);
  }

  private checkInflight(): void {
    if (this.env.inflight >= this.options.commitsInflightMax) {
      throw new AssertionError(`store ${this.env.path}: ${this.env.inflight} commits in flight, at most ${this.options.commitsInflightMax} (runaway caller?)`);
    }
  }

  private checkUsable(what: string): void {
    if (this.closed) throw new StoreError('ECLOSED', this.env.path, `${what}: store is closed`);
    if (this.isDefunct || this.env.incarnation !== this.incarnation || !this.domain.alive) {
      throw new StoreError('ECLOSED', this.env.path, `${what}: store belongs to a dead incarnation of ${this.domain.name}`);
    }
  }
}
