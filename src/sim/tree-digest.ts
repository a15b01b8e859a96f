// The digest of a directory tree, computed the same way from the reference
// model (incrementally, model.ts) and from an engine (a full walk, workload.ts
// fsDigest): a Merkle hash over every path's name, kind, link count, size,
// symlink target and bytes, the same facts as a listing (ModelFs.listing) plus
// the file contents. Two trees with the same digest are the same tree up to a
// SHA-1 collision.

import { hash } from 'node:crypto';

/** Hash of a file's bytes. */
export function contentHash(bytes: Uint8Array): string {
  return hash('sha1', bytes, 'base64');
}

/** How a directory shows a regular file. */
export function fileEntry(sizeBytes: number, nlink: number, content: string): string {
  return `f ${sizeBytes} ${nlink} ${content}`;
}

/** How a directory shows a symbolic link. */
export function symlinkEntry(target: string): string {
  return `l ${target.length}:${target}`;
}

/** How a directory shows a subdirectory (by its dirHash). */
export function dirEntry(subtree: string): string {
  return `d ${subtree}`;
}

/** Hash of a directory: its link count and, per name in byte order, the name and the entry. */
export function dirHash(nlink: number, names: readonly string[], entries: readonly string[]): string {
  let text = `d ${nlink}`;
  for (let i = 0; i < names.length; i++) text += `\n${names[i].length}:${names[i]} ${entries[i]}`;
  return hash('sha1', text, 'base64');
}
