// The one error the policy language raises: for syntax errors, type errors and
// bad references alike. `code` is stable for programs; `message` is for the
// person who wrote the policy and says where and what to change.

export type PolicyErrorCode =
  /** The text is not JSON with comments. */
  | 'syntax'
  /** The same key twice in one object. */
  | 'duplicate-key'
  /** A value of the wrong JSON type (a string where an array belongs...). */
  | 'type'
  | 'unknown-field'
  | 'missing-field'
  | 'unknown-group'
  | 'unknown-tag'
  /** A user, group, tag or host name with characters it may not have. */
  | 'invalid-name'
  /** A name that is not allowed where it stands (a group inside a group, `*` as an owner...). */
  | 'invalid-alias'
  | 'invalid-cidr'
  | 'invalid-ports'
  | 'invalid-proto'
  | 'invalid-action'
  /** A dst without ":ports" or a test destination without ":port". */
  | 'invalid-dst'
  /** Ports other than `*` with a protocol that has none (ICMP...). */
  | 'proto-ports';

export interface PolicyErrorDetails {
  line?: number;
  column?: number;
  /** Where in the policy, as `acls[2].dst[0]` or `groups["group:eng"][1]`. */
  path?: string;
}

export class PolicyError extends Error {
  override readonly name = 'PolicyError';
  readonly code: PolicyErrorCode;
  /** 1-based, of the offending value or token. */
  readonly line?: number;
  /** 1-based, in UTF-16 code units as most editors count. */
  readonly column?: number;
  readonly path?: string;
  /** The explanation without the location prefix. */
  readonly reason: string;

  constructor(code: PolicyErrorCode, reason: string, details: PolicyErrorDetails = {}) {
    super(formatMessage(reason, details));
    this.code = code;
    this.reason = reason;
    if (details.line !== undefined) this.line = details.line;
    if (details.column !== undefined) this.column = details.column;
    if (details.path !== undefined) this.path = details.path;
  }
}

function formatMessage(reason: string, d: PolicyErrorDetails): string {
  const where: string[] = [];
  if (d.line !== undefined) where.push(d.column !== undefined ? `line ${d.line}, column ${d.column}` : `line ${d.line}`);
  if (d.path !== undefined && d.path !== '') where.push(d.path);
  return where.length > 0 ? `${where.join(': ')}: ${reason}` : reason;
}
