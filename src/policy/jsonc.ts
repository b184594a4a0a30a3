// JSON with comments, as policy files are written: standard JSON plus `//`
// and `/* */` comments and trailing commas in objects and arrays. Nothing
// else is relaxed (no single quotes, unquoted keys, NaN or hex numbers). The
// result is a tree that remembers where each value starts, so the policy
// validator can point at the offending value; errors say what was expected
// and where, 1-based.

import { PolicyError } from './errors.js';

export interface JsonPos {
  line: number;
  column: number;
}

export interface JsonMember {
  key: string;
  keyPos: JsonPos;
  value: JsonNode;
}

export type JsonNode =
  | { kind: 'object'; pos: JsonPos; members: JsonMember[] }
  | { kind: 'array'; pos: JsonPos; items: JsonNode[] }
  | { kind: 'string'; pos: JsonPos; value: string }
  | { kind: 'number'; pos: JsonPos; value: number }
  | { kind: 'boolean'; pos: JsonPos; value: boolean }
  | { kind: 'null'; pos: JsonPos };

/** Deeper nesting than this is refused rather than risking the stack. */
export const MAX_DEPTH = 64;

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

class Parser {
  private i = 0;
  private line = 1;
  private lineStart = 0;

  constructor(private readonly text: string) {
    if (text.charCodeAt(0) === 0xfeff) this.i = 1; // a byte order mark is not content
    this.lineStart = this.i;
  }

  parseDocument(): JsonNode {
    this.skip();
    const value = this.parseValue(0, 'a value');
    this.skip();
    if (this.i < this.text.length) this.fail(`expected end of input after the top-level value but found ${this.describe()}`);
    return value;
  }

  private pos(): JsonPos {
    return { line: this.line, column: this.i - this.lineStart + 1 };
  }

  private fail(reason: string, at: JsonPos = this.pos()): never {
    throw new PolicyError('syntax', reason, { line: at.line, column: at.column });
  }

  /** What is at the cursor, for "expected X but found Y". */
  private describe(): string {
    if (this.i >= this.text.length) return 'end of input';
    const c = this.text[this.i];
    if (c === '\n' || c === '\r') return 'end of line';
    if (c === '"') return 'a string';
    if (c === '-' || (c >= '0' && c <= '9')) return 'a number';
    const word = /[A-Za-z_$][A-Za-z0-9_$]*/y;
    word.lastIndex = this.i;
    const m = word.exec(this.text);
    if (m) return `"${m[0]}"`;
    if (c === "'") return `"'" (strings and keys take double quotes)`;
    const cp = this.text.codePointAt(this.i)!;
    return cp < 0x20 ? `control character U+${cp.toString(16).padStart(4, '0').toUpperCase()}` : `'${String.fromCodePoint(cp)}'`;
  }

  private newline(at: number): void {
    this.line++;
    this.lineStart = at + 1;
  }

  /** Whitespace and comments. */
  private skip(): void {
    const t = this.text;
    while (this.i < t.length) {
      const c = t[this.i];
      if (c === '\n') {
        this.newline(this.i);
        this.i++;
      } else if (c === ' ' || c === '\t' || c === '\r') {
        this.i++;
      } else if (c === '/' && t[this.i + 1] === '/') {
        while (this.i < t.length && t[this.i] !== '\n') this.i++;
      } else if (c === '/' && t[this.i + 1] === '*') {
        const start = this.pos();
        this.i += 2;
        for (;;) {
          if (this.i >= t.length) this.fail('unterminated /* comment (it starts here)', start);
          if (t[this.i] === '*' && t[this.i + 1] === '/') {
            this.i += 2;
            break;
          }
          if (t[this.i] === '\n') this.newline(this.i);
          this.i++;
        }
      } else {
        return;
      }
    }
  }

  private parseValue(depth: number, what: string): JsonNode {
    if (depth > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH} levels`);
    const pos = this.pos();
    const c = this.text[this.i];
    if (c === '{') return this.parseObject(depth, pos);
    if (c === '[') return this.parseArray(depth, pos);
    if (c === '"') return { kind: 'string', pos, value: this.parseString() };
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.parseNumber(pos);
    for (const [word, node] of [
      ['true', { kind: 'boolean', pos, value: true }],
      ['false', { kind: 'boolean', pos, value: false }],
      ['null', { kind: 'null', pos }],
    ] as const) {
      if (this.text.startsWith(word, this.i) && !/[A-Za-z0-9_$]/.test(this.text[this.i + word.length] ?? '')) {
        this.i += word.length;
        return node;
      }
    }
    return this.fail(`expected ${what} but found ${this.describe()}`);
  }

  private parseObject(depth: number, pos: JsonPos): JsonNode {
    this.i++; // {
    const members: JsonMember[] = [];
    const seen = new Set<string>();
    for (;;) {
      this.skip();
      if (this.text[this.i] === '}') break;
      if (this.text[this.i] !== '"') {
        this.fail(members.length === 0 ? `expected a "key" or '}' but found ${this.describe()}` : `expected a "key" or '}' after ',' but found ${this.describe()}`);
      }
      const keyPos = this.pos();
      const key = this.parseString();
      if (seen.has(key)) throw new PolicyError('duplicate-key', `duplicate key "${key}"`, keyPos);
      seen.add(key);
      this.skip();
      if (this.text[this.i] !== ':') this.fail(`expected ':' after the key "${key}" but found ${this.describe()}`);
      this.i++;
      this.skip();
      const value = this.parseValue(depth + 1, `a value for "${key}"`);
      members.push({ key, keyPos, value });
      this.skip();
      if (this.text[this.i] === ',') {
        this.i++;
        continue;
      }
      if (this.text[this.i] === '}') break;
      this.fail(`expected ',' or '}' after the value of "${key}" but found ${this.describe()}`);
    }
    this.i++; // }
    return { kind: 'object', pos, members };
  }

  private parseArray(depth: number, pos: JsonPos): JsonNode {
    this.i++; // [
    const items: JsonNode[] = [];
    for (;;) {
      this.skip();
      if (this.text[this.i] === ']') break;
      items.push(this.parseValue(depth + 1, items.length === 0 ? "a value or ']'" : "a value or ']' after ','"));
      this.skip();
      if (this.text[this.i] === ',') {
        this.i++;
        continue;
      }
      if (this.text[this.i] === ']') break;
      this.fail(`expected ',' or ']' after an array element but found ${this.describe()}`);
    }
    this.i++; // ]
    return { kind: 'array', pos, items };
  }

  private parseString(): string {
    const t = this.text;
    const start = this.pos();
    this.i++; // "
    let out = '';
    let run = this.i;
    for (;;) {
      if (this.i >= t.length) this.fail('unterminated string (it starts here)', start);
      const c = t.charCodeAt(this.i);
      if (c === 0x22) break;
      if (c === 0x0a || c === 0x0d) this.fail('unterminated string: a string cannot span lines (it starts here)', start);
      if (c < 0x20) this.fail(`control character U+${c.toString(16).padStart(4, '0').toUpperCase()} in a string; write it as an escape such as \\n`);
      if (c !== 0x5c) {
        this.i++;
        continue;
      }
      out += t.slice(run, this.i);
      const e = t[this.i + 1];
      if (e === 'u') {
        const hex = t.slice(this.i + 2, this.i + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail('expected four hex digits after \\u');
        out += String.fromCharCode(parseInt(hex, 16));
        this.i += 6;
      } else if (e !== undefined && e in ESCAPES) {
        out += ESCAPES[e];
        this.i += 2;
      } else {
        this.fail(`invalid escape "\\${e ?? ''}" in a string; the escapes are \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX`);
      }
      run = this.i;
    }
    out += t.slice(run, this.i);
    this.i++; // "
    return out;
  }

  private parseNumber(pos: JsonPos): JsonNode {
    NUMBER.lastIndex = this.i;
    const m = NUMBER.exec(this.text);
    if (!m || m[0] === '-') this.fail(`expected a number but found ${this.describe()}`);
    const end = this.i + m[0].length;
    if (/[0-9A-Za-z.]/.test(this.text[end] ?? '')) {
      this.i = end;
      this.fail(`malformed number: unexpected ${this.describe()}`);
    }
    this.i = end;
    return { kind: 'number', pos, value: Number(m[0]) };
  }
}

/** Parses JSON with comments; throws a PolicyError with code "syntax" (or "duplicate-key"). */
export function parseJsonc(text: string): JsonNode {
  return new Parser(text).parseDocument();
}
