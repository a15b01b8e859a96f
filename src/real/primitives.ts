// The Primitives driver: hashes, HMAC, CRC-32 and block codecs on node:crypto and
// node:zlib. Every function is a pure function of its arguments, so the simulator
// uses this same object and stays deterministic.

import { createHash, createHmac } from 'node:crypto';
import * as zlib from 'node:zlib';
import type { CodecInfo, Primitives } from '../core/drivers.ts';
import { errorCode, FormatError, FsError } from '../core/errors.ts';
import { LZ4_BLOCK_BYTES_MAX, lz4CompressBlock, lz4DecompressBlock } from '../core/codec/lz4.ts';

const HASH_NAMES = ['sha256', 'sha512', 'sha1', 'blake2b512'] as const;

/** Stored with every block: never renumber (CodecInfo.id). */
export const CODEC_NONE = 0;
export const CODEC_DEFLATE = 1;
export const CODEC_LZ4 = 2;

const CODECS: readonly CodecInfo[] = Object.freeze([
  Object.freeze({ id: CODEC_NONE, name: 'none' }),
  Object.freeze({ id: CODEC_DEFLATE, name: 'deflate' }),
  Object.freeze({ id: CODEC_LZ4, name: 'lz4' }),
]);

/** Largest block any codec accepts either way; blocks are at most 128 KiB, replication frames a few MiB. */
export const CODEC_BYTES_MAX = LZ4_BLOCK_BYTES_MAX;

/** Deflate level 1: ~75 MB/s on incompressible data here, levels above cost more than they save on blocks. */
const DEFLATE_LEVEL = 1;

/** A plain Uint8Array view, so callers (and toEqual in tests) never see a Buffer subclass. */
function view(buf: Buffer): Uint8Array {
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

function checkHashName(name: string): void {
  if (!(HASH_NAMES as readonly string[]).includes(name)) {
    throw new FsError('EINVAL', `unsupported hash '${name}' (supported: ${HASH_NAMES.join(', ')})`);
  }
}

function codecName(codecId: number): string {
  const info = CODECS.find((c) => c.id === codecId);
  if (!info) {
    throw new FsError('EINVAL', `unknown codec id ${codecId} (known: ${CODECS.map((c) => `${c.id}=${c.name}`).join(', ')})`);
  }
  return info.name;
}

function corrupt(codec: string, storedBytes: number, rawLength: number, detail: string): FormatError {
  return new FormatError('ECORRUPT', `${codec}: cannot decompress ${storedBytes} stored bytes to raw length ${rawLength}: ${detail}`);
}

function crc32Checked(data: Uint8Array, seed: number): number {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new FsError('EINVAL', `crc32 seed ${seed} is not an unsigned 32-bit integer`);
  }
  // zlib.crc32 arrived in Node 20.15; the engines field says >=20, so say what is missing.
  if (typeof zlib.crc32 !== 'function') {
    throw new FsError('ENOSYS', `zlib.crc32 is missing: Node ${process.versions.node} is too old, need >= 20.15`);
  }
  return zlib.crc32(data, seed) >>> 0;
}

function inflate(data: Uint8Array, rawLength: number): Uint8Array {
  let out: Buffer;
  let consumedBytes: number;
  try {
    // maxOutputLength stops a deflate bomb at rawLength (+1 so "too long" is seen
    // as such; zlib requires it to be at least 1). `info` reports how much input
    // the stream used, so trailing bytes are caught too.
    const result = zlib.inflateRawSync(data, { maxOutputLength: rawLength + 1, info: true }) as unknown as {
      buffer: Buffer;
      engine: { bytesWritten: number };
    };
    out = result.buffer;
    consumedBytes = result.engine.bytesWritten;
  } catch (err) {
    // Every failure of a synchronous inflate of caller-supplied bytes is bad input.
    throw corrupt('deflate', data.length, rawLength, `${errorCode(err) ?? 'error'}: ${(err as Error).message}`);
  }
  if (out.length !== rawLength) throw corrupt('deflate', data.length, rawLength, `inflated to ${out.length} bytes`);
  if (consumedBytes !== data.length) {
    throw corrupt('deflate', data.length, rawLength, `stream ends after ${consumedBytes} bytes, ${data.length - consumedBytes} trailing`);
  }
  return view(out);
}

export const nodePrimitives: Primitives = Object.freeze({
  hashNames: HASH_NAMES,

  hash(name: string, data: Uint8Array): Uint8Array {
    checkHashName(name);
    return view(createHash(name).update(data).digest());
  },

  hmac(name: string, key: Uint8Array, data: Uint8Array): Uint8Array {
    checkHashName(name);
    return view(createHmac(name, key).update(data).digest());
  },

  crc32(data: Uint8Array, seed = 0): number {
    return crc32Checked(data, seed);
  },

  codecs: CODECS,

  compress(codecId: number, data: Uint8Array): Uint8Array {
    const name = codecName(codecId);
    if (data.length > CODEC_BYTES_MAX) {
      throw new FsError('EINVAL', `${name}: input of ${data.length} bytes exceeds ${CODEC_BYTES_MAX}`);
    }
    switch (codecId) {
      case CODEC_NONE:
        // A copy: the caller's buffer (a write cache block) may change after this.
        return data.slice();
      case CODEC_DEFLATE:
        return view(zlib.deflateRawSync(data, { level: DEFLATE_LEVEL }));
      case CODEC_LZ4:
        return lz4CompressBlock(data);
      default:
        throw new FsError('EINVAL', `codec id ${codecId} (${name}) has no compressor`);
    }
  },

  decompress(codecId: number, data: Uint8Array, rawLength: number): Uint8Array {
    const name = codecName(codecId);
    if (!Number.isSafeInteger(rawLength) || rawLength < 0 || rawLength > CODEC_BYTES_MAX) {
      throw corrupt(name, data.length, rawLength, `raw length out of range 0..${CODEC_BYTES_MAX}`);
    }
    switch (codecId) {
      case CODEC_NONE:
        if (data.length !== rawLength) throw corrupt(name, data.length, rawLength, 'stored length differs');
        return data.slice();
      case CODEC_DEFLATE:
        return inflate(data, rawLength);
      case CODEC_LZ4: {
        let out: Uint8Array;
        try {
          out = lz4DecompressBlock(data, rawLength);
        } catch (err) {
          if (errorCode(err) === 'ECORRUPT') {
            throw corrupt(name, data.length, rawLength, (err as Error).message.replace(/^lz4: corrupt block: /, ''));
          }
          throw err;
        }
        if (out.length !== rawLength) throw corrupt(name, data.length, rawLength, `decoded ${out.length} bytes`);
        return out;
      }
      default:
        throw new FsError('EINVAL', `codec id ${codecId} (${name}) has no decompressor`);
    }
  },
});
