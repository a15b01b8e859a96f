// Errors of the replication log format. Every refusal names what was wrong and
// what was expected, because a watchdir slave reports it in one log line and an
// operator acts on that line alone.

export type ReplogErrorCode =
  /** The file ends before its trailer (or its header): half-copied or cut short. */
  | 'ETRUNCATED'
  /** A frame, header, trailer or whole-file CRC-32 does not match. */
  | 'ECRC'
  /** The file was written by another filesystem (fs id differs). */
  | 'EFSID'
  /** The file was written with another block size. */
  | 'EBLKSIZE'
  /** The file's sequence number is not the one expected. */
  | 'ESEQUENCE'
  /** Bad magic, unknown format version, or a header/trailer field out of range. */
  | 'EFORMAT'
  /** A frame's length or type is invalid (or a wire-only type appears in a log file). */
  | 'EFRAME'
  /** A frame with a valid CRC holds a record payload that does not parse. */
  | 'ERECORD'
  /** Transaction structure: txn gap or regression, records without COMMIT, COMMIT not matching its records. */
  | 'ETXN'
  /** A file read twice (checked, then applied or dumped) held other bytes the second time: changed in between. */
  | 'ECHANGED';

export interface ReplogErrorContext {
  /** Byte offset (in the file or stream) of the frame or field at fault. */
  offsetBytes?: number;
  /** The file being read, when the caller named it. */
  fileName?: string;
}

/** A replication log file or frame stream is damaged or does not belong here. */
export class ReplogError extends Error {
  readonly code: ReplogErrorCode;
  readonly offsetBytes: number | undefined;
  readonly fileName: string | undefined;
  /** The message without code, file name and offset, for re-tagging. */
  readonly detail: string;

  constructor(code: ReplogErrorCode, detail: string, context: ReplogErrorContext = {}) {
    const where = context.fileName === undefined ? '' : `${context.fileName}: `;
    const at = context.offsetBytes === undefined ? '' : ` (at offset ${context.offsetBytes})`;
    super(`${code}: ${where}${detail}${at}`);
    this.name = 'ReplogError';
    this.code = code;
    this.detail = detail;
    this.offsetBytes = context.offsetBytes;
    this.fileName = context.fileName;
  }

  /** The same error naming a file (callers that read the bytes know the name, the parser does not). */
  withFileName(fileName: string): ReplogError {
    return new ReplogError(this.code, this.detail, { offsetBytes: this.offsetBytes, fileName });
  }
}
