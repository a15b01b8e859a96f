// Shared plumbing of the command-line tools: argument errors (exit 2), runtime
// errors (exit 1), config loading with warnings, real drivers.

import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parseConfig, type LessfsConfig } from '../core/config.ts';
import { ConfigError, FormatError } from '../core/errors.ts';

export const EXIT_OK = 0;
export const EXIT_RUNTIME = 1;
export const EXIT_USAGE = 2;

/** Bad command-line usage: printed with the usage text, exit 2. */
export class UsageError extends Error {
  readonly code = 'EUSAGE';
}

/** A runtime failure with a prepared message, exit 1. */
export class CliError extends Error {
  readonly code = 'ECLI';
}

export interface Command {
  name: string;
  usage: string;
  run(argv: string[]): Promise<number>;
}

/** Run a command as a process: map errors to messages and exit codes. */
export async function runMain(cmd: Command): Promise<void> {
  let code: number;
  try {
    code = await cmd.run(process.argv.slice(2));
  } catch (err) {
    code = reportError(cmd, err);
  }
  process.exitCode = code;
}

export function reportError(cmd: Command, err: unknown): number {
  if (err instanceof UsageError) {
    process.stderr.write(`${cmd.name}: ${err.message}\n\n${cmd.usage}`);
    return EXIT_USAGE;
  }
  if (err instanceof ConfigError || err instanceof FormatError || err instanceof CliError) {
    process.stderr.write(`${cmd.name}: ${err.message}\n`);
    return EXIT_RUNTIME;
  }
  const e = err as Error & { code?: string };
  const detail = process.env.LESSFS_DEBUG_STACK === '1' ? `\n${e.stack ?? ''}` : '';
  process.stderr.write(`${cmd.name}: error: ${e.message ?? String(err)}${detail}\n`);
  return EXIT_RUNTIME;
}

/** util.parseArgs with its errors turned into usage errors. */
export function parseCommandLine<T extends ParseArgsConfig>(argv: string[], config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs({ ...config, args: argv }) as ReturnType<typeof parseArgs<T>>;
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, ''));
  }
}

/** Why opening or reading a file failed, in words. */
export function fileErrorReason(err: unknown): string {
  const code = (err as { code?: string }).code;
  return code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : (err as Error).message;
}

/** Read and parse lessfs.cfg (environment overrides), printing warnings. */
export function loadConfig(cmdName: string, path: string): LessfsConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read configuration file ${path}: ${fileErrorReason(err)}`);
  }
  const parsed = parseConfig(text, { env: process.env, fileName: path });
  for (const w of parsed.warnings) process.stderr.write(`${cmdName}: warning: ${w}\n`);
  return parsed.config;
}

/** The config file, given as `-c CONFIG` or as the only positional argument. */
export function configPathOf(config: string | undefined, positionals: string[]): string {
  if (config !== undefined && positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}' (the config is given with -c)`);
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}'`);
  const path = config ?? positionals[0];
  if (!path) throw new UsageError('no configuration file given (expected -c CONFIG)');
  return path;
}
