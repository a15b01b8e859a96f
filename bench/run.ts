// npm run bench [-- SECTION...|all] [--only a,b] [--repeat N] [--quick] [--strict] [--list]
//
// Runs benchmark sections (bench/sections.ts), prints a table per section and
// a summary of every target, PASS or MISS. Targets are judged against
// baselines measured in the same run: this VM's speed swings by ±40% between
// runs (PLATFORM.md). Exit status: 1 if a section failed, or with --strict if
// a target was missed; 0 otherwise.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fmt } from './measure.ts';
import { type BenchContext, type Section, type SectionReport, targetMet } from './section.ts';
import { SECTIONS } from './sections.ts';

const BOOLEAN_FLAGS = new Set(['quick', 'strict', 'list', 'help']);
const REPEATS_DEFAULT = 5;
const REPEATS_MAX = 50;

function parseArgs(argv: string[]): { names: string[]; flags: Map<string, string> } {
  const names: string[] = [];
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) {
      names.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
    let value: string;
    if (eq >= 0) value = a.slice(eq + 1);
    else if (BOOLEAN_FLAGS.has(name)) value = 'true';
    else {
      if (i + 1 >= argv.length) throw new UsageError(`--${name} wants a value`);
      value = argv[++i];
    }
    if (name === 'only') names.push(...value.split(',').filter((s) => s.length > 0));
    else flags.set(name, value);
  }
  return { names, flags };
}

function select(names: string[]): Section[] {
  if (names.length === 0) return SECTIONS.filter((s) => !s.optional);
  if (names.includes('all')) return [...SECTIONS];
  const known = new Map(SECTIONS.map((s) => [s.name, s]));
  const unknown = names.filter((n) => !known.has(n));
  if (unknown.length > 0) throw new UsageError(`unknown section(s) ${unknown.join(', ')}; sections: ${SECTIONS.map((s) => s.name).join(', ')}`);
  return SECTIONS.filter((s) => names.includes(s.name));
}

/** `right`: indexes of right-aligned (numeric) columns. */
function table(rows: string[][], right: ReadonlySet<number>): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const line = (r: string[]): string => r.map((cell, c) => (right.has(c) ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ').trimEnd();
  return [line(rows[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

function printReport(section: Section, report: SectionReport, seconds: number): void {
  console.log(`\n== ${section.name}: ${section.description} (${seconds.toFixed(0)} s)`);
  if (report.figures.length > 0) {
    const rows = [['figure', 'value', 'unit', 'samples', 'note']];
    for (const f of report.figures) {
      const samples = f.samples && f.samples.length > 1 ? f.samples.map((s) => fmt(s, f.unit)).join(' ') : '';
      rows.push([f.label, fmt(f.value, f.unit), f.unit, samples, f.note ?? '']);
    }
    console.log(table(rows, new Set([1])));
  }
  for (const n of report.notes) console.log(`  ${n}`);
}

function machine(): string {
  const cpu = cpus();
  const model = cpu[0]?.model ?? 'unknown CPU';
  let distro = '';
  try {
    distro = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? '';
  } catch (err) {
    distro = `(no /etc/os-release: ${(err as Error).message})`;
  }
  return `${cpu.length} × ${model}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, ${distro}, Linux ${release()}, Node ${process.version}`;
}

function load(): string {
  return loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
}

async function main(): Promise<number> {
  const { names, flags } = parseArgs(process.argv.slice(2));
  if (flags.has('help') || flags.has('list')) {
    console.log('usage: npm run bench [-- SECTION...|all] [--only a,b] [--repeat N] [--quick] [--strict]');
    for (const s of SECTIONS) console.log(`  ${s.name.padEnd(8)} ${s.optional ? '(optional) ' : ''}${s.description}`);
    return 0;
  }
  const sections = select(names);
  const repeats = Number(flags.get('repeat') ?? (flags.has('quick') ? 1 : REPEATS_DEFAULT));
  if (!(Number.isInteger(repeats) && repeats >= 1 && repeats <= REPEATS_MAX)) throw new UsageError(`--repeat wants 1..${REPEATS_MAX}, got ${flags.get('repeat')}`);

  const cleanups: Array<() => void> = [];
  const cleanUp = (): void => {
    while (cleanups.length > 0) {
      const fn = cleanups.pop();
      try {
        fn?.();
      } catch (err) {
        console.error(`bench: cleanup failed: ${(err as Error).message}`);
      }
    }
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      console.error(`bench: ${sig}, cleaning up`);
      cleanUp();
      process.exit(130);
    });
  }
  process.on('exit', cleanUp);

  const ctx: BenchContext = {
    repeats,
    quick: flags.has('quick'),
    log: (m) => console.error(`[${(performance.now() / 1000).toFixed(0).padStart(4)} s] ${m}`),
    tempDir: (prefix) => {
      const dir = mkdtempSync(join(tmpdir(), prefix));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      return dir;
    },
    onCleanup: (fn) => cleanups.push(fn),
    flag: (name) => flags.get(name),
  };

  console.log(`lessfs-ts bench ${new Date().toISOString()}`);
  console.log(`machine: ${machine()}`);
  console.log(`load average at start: ${load()} (other work on the VM skews figures)`);
  console.log(`sections: ${sections.map((s) => s.name).join(', ')}; ${repeats} repetition(s) per measurement, medians reported${ctx.quick ? '; QUICK' : ''}`);

  const results: Array<{ section: Section; report?: SectionReport; error?: Error }> = [];
  for (const section of sections) {
    const t0 = performance.now();
    try {
      const report = await section.run(ctx);
      printReport(section, report, (performance.now() - t0) / 1000);
      results.push({ section, report });
    } catch (err) {
      console.log(`\n== ${section.name}: FAILED: ${(err as Error).stack ?? String(err)}`);
      results.push({ section, error: err as Error });
    } finally {
      cleanUp();
    }
  }

  console.log('\n== summary');
  const rows = [['result', 'section', 'target', 'measured', 'limit']];
  let missed = 0;
  let failed = 0;
  for (const { section, report, error } of results) {
    if (error) {
      failed++;
      rows.push(['FAIL', section.name, error.message.split('\n')[0], '', '']);
      continue;
    }
    for (const t of report?.targets ?? []) {
      const ok = targetMet(t);
      if (!ok) missed++;
      rows.push([ok ? 'PASS' : 'MISS', section.name, t.label, `${fmt(t.value, t.unit)} ${t.unit}`, `${t.op} ${fmt(t.limit, t.unit)} ${t.unit}`]);
    }
  }
  if (rows.length > 1) console.log(table(rows, new Set([3, 4])));
  const total = rows.length - 1 - failed;
  if (total === 0 && failed === 0) console.log('no targets in the sections run');
  else console.log(`${total - missed} of ${total} target(s) met, ${missed} missed${failed > 0 ? `, ${failed} section(s) failed` : ''}`);
  console.log(`load average at end: ${load()}`);
  if (failed > 0) return 1;
  return missed > 0 && flags.has('strict') ? 1 : 0;
}

class UsageError extends Error {
  readonly code = 'EUSAGE';
}

try {
  process.exitCode = await main();
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  console.error(`bench: ${err.message} (npm run bench -- --help)`);
  process.exitCode = 2;
}
