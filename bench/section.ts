// What a benchmark section is and what it reports. bench/run.ts runs the
// sections listed in bench/sections.ts; adding one is a file exporting a
// `Section` plus one line there.

/** One measured figure. `value` is what is printed (usually the median of `samples`). */
export interface Figure {
  label: string;
  value: number;
  unit: string;
  /** Every repetition's value, in run order, when the figure was repeated. */
  samples?: readonly number[];
  note?: string;
}

/** A speed or memory target, judged in this run against a limit measured or fixed. */
export interface Target {
  label: string;
  value: number;
  op: '>=' | '<=';
  limit: number;
  unit: string;
  note?: string;
}

export interface SectionReport {
  figures: Figure[];
  targets: Target[];
  /** Free-form lines printed under the section's table (method, sanity checks, raw output). */
  notes: string[];
}

export interface BenchContext {
  /** How many times each measurement is repeated (the median is reported). */
  readonly repeats: number;
  /** Scaled-down sizes to check that the harness works; figures are not representative. */
  readonly quick: boolean;
  /** Progress, on stderr (stdout carries the tables). */
  log(message: string): void;
  /** A fresh directory under os.tmpdir(), removed at the end of the run and on SIGINT/SIGTERM. */
  tempDir(prefix: string): string;
  /** Register synchronous cleanup (kill a child, remove a file); runs at the end and on a signal. */
  onCleanup(fn: () => void): void;
  /** Value of `--name=value` / `--name value` on the command line, if given. */
  flag(name: string): string | undefined;
}

export interface Section {
  name: string;
  description: string;
  /** Not run by default; only when named (or with `all`). */
  optional?: boolean;
  run(ctx: BenchContext): Promise<SectionReport>;
}

export function targetMet(t: Target): boolean {
  return t.op === '>=' ? t.value >= t.limit : t.value <= t.limit;
}
