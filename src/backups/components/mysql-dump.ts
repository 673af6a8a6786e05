/**
 * The text side of MySQL backups: splitting a `mariadb-dump`/`mysqldump --databases` stream into objects,
 * naming those objects, writing option (defaults) files, and renaming databases in restored DDL. Pure or
 * stream-only; the server side lives in mysql.ts.
 *
 * Objects of one dump, in the order the restore loads them:
 * - `00-preamble.sql`: the header's session SETs (character set, time zone, checks off).
 * - `databases/<db>.sql`: `CREATE DATABASE` and `USE` of each database.
 * - `tables/<db>/<table>/schema.sql`: DROP/CREATE TABLE (or a view's stand-in table) and the lines before
 *   the first INSERT (`ALTER TABLE … DISABLE KEYS`).
 * - `tables/<db>/<table>/data-0001.sql`…: whole INSERT statements, about `chunkBytes` per object.
 * - `tables/<db>/<table>/post.sql`: what follows the data (`ENABLE KEYS`, the table's triggers).
 * - `zz-tail.sql`: events, routines, final view definitions and the footer, with a `USE` line whenever
 *   the database changes.
 */
import { InputError } from '../../core/index.ts';
import type { ObjectWriter } from '../types.ts';

export const PREAMBLE_OBJECT = '00-preamble.sql';
export const TAIL_OBJECT = 'zz-tail.sql';
/** A line of the dump longer than this is refused (the restore client could not send it either). */
export const MAX_LINE_BYTES = 64 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------------
// Names

const SAFE_BYTE = /^[A-Za-z0-9_]$/;

/**
 * A database or table name as one object-key segment of `[A-Za-z0-9_-]`: letters, digits and `_` stay,
 * every other UTF-8 byte (including `-` and `.`) becomes `-xx` (lower-case hex). Deterministic and
 * reversible ({@link decodeSegment}).
 */
export function encodeSegment(name: string): string {
  let out = '';
  for (const ch of name) {
    if (SAFE_BYTE.test(ch)) out += ch;
    else for (const byte of Buffer.from(ch, 'utf8')) out += `-${byte.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/** The reverse of {@link encodeSegment}. @throws InputError for a segment it did not make. */
export function decodeSegment(segment: string): string {
  if (!/^(?:[A-Za-z0-9_]|-[0-9a-f]{2})*$/.test(segment))
    throw new InputError(`object name segment ${JSON.stringify(segment)} is not an encoded name`);
  const bytes: number[] = [];
  for (let i = 0; i < segment.length;) {
    if (segment[i] === '-') {
      bytes.push(parseInt(segment.slice(i + 1, i + 3), 16));
      i += 3;
    } else {
      bytes.push(segment.charCodeAt(i));
      i += 1;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

export function databaseObject(db: string): string {
  return `databases/${encodeSegment(db)}.sql`;
}

export function tablePrefix(db: string, table: string): string {
  return `tables/${encodeSegment(db)}/${encodeSegment(table)}/`;
}

export function dataObject(db: string, table: string, n: number): string {
  return `${tablePrefix(db, table)}data-${String(n).padStart(4, '0')}.sql`;
}

/** What an object of a MySQL backup holds, parsed from its name. */
export type DumpObjectName =
  | { kind: 'preamble' }
  | { kind: 'tail' }
  | { kind: 'database'; db: string }
  | { kind: 'schema' | 'post'; db: string; table: string }
  | { kind: 'data'; db: string; table: string; chunk: number };

/** Parses an object name made by the splitter. @throws InputError naming any other name. */
export function parseObjectName(name: string): DumpObjectName {
  if (name === PREAMBLE_OBJECT) return { kind: 'preamble' };
  if (name === TAIL_OBJECT) return { kind: 'tail' };
  let m = /^databases\/([^/]+)\.sql$/.exec(name);
  if (m?.[1]) return { kind: 'database', db: decodeSegment(m[1]) };
  m = /^tables\/([^/]+)\/([^/]+)\/(schema|post|data-(\d{4,}))\.sql$/.exec(name);
  if (m?.[1] && m[2] && m[3]) {
    const db = decodeSegment(m[1]);
    const table = decodeSegment(m[2]);
    if (m[4]) return { kind: 'data', db, table, chunk: Number(m[4]) };
    return { kind: m[3] as 'schema' | 'post', db, table };
  }
  throw new InputError(`object ${name} is not an object of a MySQL backup`);
}

// ---------------------------------------------------------------------------------------------------
// Option files

/**
 * A value for a MySQL/MariaDB option file (`key=value`): always double-quoted, with `\`, `"` and control
 * characters escaped as the option-file reader expects, so spaces, quotes and `#` survive.
 */
export function optionFileValue(value: string): string {
  let out = '"';
  for (const ch of value) {
    if (ch === '\\') out += '\\\\';
    else if (ch === '"') out += '\\"';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\b') out += '\\b';
    else out += ch;
  }
  return `${out}"`;
}

export interface ClientOptions {
  host: string;
  port: number;
  socketPath?: string | undefined;
  user: string;
  /** The revealed password, or undefined for none. */
  password?: string | undefined;
  tls: boolean;
  /** MariaDB tools take `ssl`; MySQL's take `ssl-mode`. */
  flavour: 'mariadb' | 'mysql';
}

/** The `[client]` group of a defaults file for the dump and load tools. */
export function clientOptionFile(options: ClientOptions): string {
  const lines = ['[client]', `user=${optionFileValue(options.user)}`];
  if (options.password !== undefined) lines.push(`password=${optionFileValue(options.password)}`);
  if (options.socketPath) lines.push(`socket=${optionFileValue(options.socketPath)}`);
  else lines.push(`host=${optionFileValue(options.host)}`, `port=${options.port}`, 'protocol=TCP');
  if (options.tls) {
    if (options.flavour === 'mariadb') lines.push('ssl', 'ssl-verify-server-cert');
    else lines.push('ssl-mode=VERIFY_IDENTITY');
  }
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------------
// Renaming databases in DDL

function quoteIdent(name: string): string {
  return `\`${name.replaceAll('`', '``')}\``;
}

/** `USE \`db\`;` as the dump writes it. */
export function useStatement(db: string): string {
  return `USE ${quoteIdent(db)};\n`;
}

/**
 * Renames databases in DDL text (database objects, schemas, triggers, routines, events, views): every
 * back-quoted `\`src\`` that is a `CREATE DATABASE` or `USE` target or a qualifier (followed by `.`)
 * becomes the target's name. Unquoted references (`src.table` written by hand in a routine) are left
 * alone: they cannot be told from text. Never used on data.
 */
export function renameDatabases(text: string, map: ReadonlyMap<string, string>): string {
  let out = text;
  for (const [from, to] of map) {
    if (from === to) continue;
    const q = quoteIdent(from);
    const t = quoteIdent(to);
    out = out.replaceAll(`${q}.`, `${t}.`);
    out = out.replace(
      new RegExp(
        `^(CREATE DATABASE (?:/\\*!32312 IF NOT EXISTS\\*/ |IF NOT EXISTS )?)${escapeRegExp(q)}`,
        'gm',
      ),
      (_m, head: string) => `${head}${t}`,
    );
    out = out.replace(new RegExp(`^USE ${escapeRegExp(q)};`, 'gm'), () => `USE ${t};`);
  }
  return out;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// ---------------------------------------------------------------------------------------------------
// Splitting

const NL = 0x0a;
const SEMI = 0x3b;
const SEMI_NL = Buffer.from(';\n');
const INSERT = Buffer.from('INSERT ');
const REPLACE = Buffer.from('REPLACE ');
const DASHES = Buffer.from('--\n');
const HEADER_START = Buffer.from('-- ');
const DELIMITER_START = Buffer.from('DELIMITER ;;');
const DELIMITER_END = Buffer.from('DELIMITER ;\n');
const FOOTER_START = Buffer.from('/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;\n');

const HEADER =
  /^-- (Current Database:|Table structure for table|Temporary table structure for view|Temporary view structure for view|Dumping data for table|Dumping events for database|Dumping routines for database|Final view structure for view) (.+)$/;

/**
 * Whether a header's name is complete: a back-quoted name whose closing back-quote has not come yet (the
 * name holds a newline, which the dump writes as a new `-- ` comment line) is not.
 */
export function headerNameComplete(text: string): boolean {
  const t = text.trim();
  if (!t.startsWith('`')) return true;
  if (t.length < 2) return false;
  let trailing = 0;
  for (let i = t.length - 1; i > 0 && t[i] === '`'; i--) trailing += 1;
  // Back-quotes inside a name are doubled: an odd run at the end closes it.
  return trailing % 2 === 1;
}

/** A name as the dump writes it in a section header: `` `name` `` (back-quotes doubled) or `'name'`. */
export function headerName(text: string): string {
  const t = text.trim();
  if (t.length >= 2 && t.startsWith('`') && t.endsWith('`')) return t.slice(1, -1).replaceAll('``', '`');
  if (t.length >= 2 && t.startsWith("'") && t.endsWith("'")) return t.slice(1, -1);
  return t;
}

/** One table (or view stand-in) as the splitter saw it. */
export interface SplitTable {
  db: string;
  table: string;
  /** A view's stand-in (no data). */
  view: boolean;
  dataObjects: number;
  dataBytes: number;
  post: boolean;
}

export interface SplitSummary {
  databases: string[];
  tables: SplitTable[];
  objects: number;
  bytes: number;
}

export interface SplitterOptions {
  /** Opens an object (the component's `ctx.open`). */
  open(name: string): ObjectWriter;
  /** Data objects are cut at the first statement end past this many bytes. */
  chunkBytes: number;
  /** @default MAX_LINE_BYTES */
  maxLineBytes?: number;
  /** Called once, at the first section header: the dump has started its snapshot by then. */
  onFirstSection?: () => void;
}

type Mode = 'preamble' | 'database' | 'schema' | 'data' | 'post' | 'tail';

/**
 * Splits a `--databases` dump into objects as it streams (see the module comment). Feed it with
 * {@link push} (awaiting each call gives backpressure), then {@link finish}; on any failure call
 * {@link abort}, which abandons every open object. Copies only partial lines at chunk boundaries.
 */
export class DumpSplitter {
  readonly #options: SplitterOptions;
  readonly #maxLine: number;
  #mode: Mode = 'preamble';
  #db: string | undefined;
  #table: SplitTable | undefined;
  readonly #seenDbs = new Set<string>();
  readonly #databases: string[] = [];
  readonly #tables: SplitTable[] = [];
  #tailDb: string | undefined;
  #sawSection = false;

  /** Open writers by role. */
  #preamble: ObjectWriter | undefined;
  #dbWriter: ObjectWriter | undefined;
  #schema: ObjectWriter | undefined;
  #data: ObjectWriter | undefined;
  #dataSize = 0;
  #post: ObjectWriter | undefined;
  #tail: ObjectWriter | undefined;
  readonly #open = new Set<ObjectWriter>();
  #objects = 0;
  #bytes = 0;

  /** Inside an INSERT statement (bytes go to the data object until `;\n`). */
  #inStatement = false;
  /** The previous chunk ended with `;` inside a statement. */
  #pendingSemi = false;
  /** Bytes since the last newline while inside a statement (for the line-length limit). */
  #stmtLine = 0;
  #inDelimiter = false;
  #prevDashes = false;
  /** A section header whose back-quoted name continues on the next `-- ` line. */
  #pendingHeader: { title: string; name: string; lines: Buffer[] } | undefined;
  #carry: Buffer[] = [];
  #carryBytes = 0;

  /** Bytes queued for one writer, written on a change of writer or at the end of a push. */
  #pendingWriter: ObjectWriter | undefined;
  #pendingParts: Buffer[] = [];
  #failed = false;

  constructor(options: SplitterOptions) {
    this.#options = options;
    this.#maxLine = options.maxLineBytes ?? MAX_LINE_BYTES;
  }

  /** Splits one chunk of the dump; resolves when its bytes were accepted by the writers. */
  async push(chunk: Buffer): Promise<void> {
    this.#bytes += chunk.length;
    let pos = 0;
    const end = chunk.length;
    while (pos < end) {
      if (this.#inStatement) {
        if (this.#pendingSemi) {
          this.#pendingSemi = false;
          if (chunk[pos] === NL) {
            await this.#emit(this.#dataWriter(), chunk.subarray(pos, pos + 1));
            pos += 1;
            this.#statementEnded();
            continue;
          }
        }
        const idx = chunk.indexOf(SEMI_NL, pos);
        const stop = idx === -1 ? end : idx + 2;
        const piece = chunk.subarray(pos, stop);
        this.#trackLine(piece);
        await this.#emit(this.#dataWriter(), piece);
        pos = stop;
        if (idx === -1) this.#pendingSemi = chunk[end - 1] === SEMI;
        else this.#statementEnded();
        continue;
      }
      // A statement starts at a line start in a data section: switch without buffering the line.
      if (this.#carryBytes === 0 && this.#mode === 'data' && startsWithAt(chunk, pos, INSERT, REPLACE)) {
        await this.#startStatement();
        continue;
      }
      const nl = chunk.indexOf(NL, pos);
      if (nl === -1) {
        this.#carryPart(chunk.subarray(pos));
        break;
      }
      let line: Buffer;
      if (this.#carryBytes > 0) {
        this.#carryPart(chunk.subarray(pos, nl + 1));
        line = Buffer.concat(this.#carry, this.#carryBytes);
        this.#carry = [];
        this.#carryBytes = 0;
      } else line = chunk.subarray(pos, nl + 1);
      pos = nl + 1;
      await this.#line(line);
    }
    await this.#flush();
  }

  /** Ends every open object; resolves with what was split. @throws when the dump ended mid-statement. */
  async finish(): Promise<SplitSummary> {
    if (this.#carryBytes > 0) {
      const line = Buffer.concat(this.#carry, this.#carryBytes);
      this.#carry = [];
      this.#carryBytes = 0;
      await this.#line(line);
    }
    if (this.#pendingHeader)
      throw new InputError(
        `the dump ended inside the section header for ${this.#pendingHeader.name}: it is incomplete`,
      );
    await this.#flush();
    if (this.#inStatement)
      throw new InputError(
        `the dump ended inside an INSERT statement of ${this.#where()}: it is incomplete (was the dump cut short?)`,
      );
    for (const writer of [this.#preamble, this.#dbWriter, this.#schema, this.#data, this.#post, this.#tail])
      if (writer) await this.#end(writer);
    this.#preamble = this.#dbWriter = this.#schema = this.#data = this.#post = this.#tail = undefined;
    return {
      databases: [...this.#databases],
      tables: this.#tables.map((t) => ({ ...t })),
      objects: this.#objects,
      bytes: this.#bytes,
    };
  }

  /** Abandons every open object (nothing half-written remains). Never throws. */
  async abort(reason: Error): Promise<void> {
    this.#failed = true;
    const writers = [...this.#open];
    this.#open.clear();
    await Promise.all(writers.map((w) => w.abort(reason).catch(() => undefined)));
  }

  // -------------------------------------------------------------------------------------------------

  #where(): string {
    if (this.#table) return `${this.#table.db}.${this.#table.table}`;
    return this.#db ?? 'the dump header';
  }

  #carryPart(part: Buffer): void {
    this.#carry.push(part);
    this.#carryBytes += part.length;
    if (this.#carryBytes > this.#maxLine) this.#tooLong();
  }

  #tooLong(): never {
    throw new InputError(
      `a line of the dump in ${this.#where()} exceeds ${this.#maxLine} bytes; such a row cannot be restored ` +
        '(max_allowed_packet); the backup is refused',
    );
  }

  #trackLine(piece: Buffer): void {
    const last = piece.lastIndexOf(NL);
    if (last === -1) this.#stmtLine += piece.length;
    else {
      const first = piece.indexOf(NL);
      if (this.#stmtLine + first > this.#maxLine) this.#tooLong();
      // Lines wholly inside the piece: only a piece longer than the limit can hold one that is too long.
      if (last - first > this.#maxLine) {
        for (let at = first; at < last;) {
          const next = piece.indexOf(NL, at + 1);
          if (next - at - 1 > this.#maxLine) this.#tooLong();
          at = next;
        }
      }
      this.#stmtLine = piece.length - last - 1;
    }
    if (this.#stmtLine > this.#maxLine) this.#tooLong();
  }

  async #line(line: Buffer): Promise<void> {
    if (line.length > this.#maxLine + 1) this.#tooLong();
    const pending = this.#pendingHeader;
    if (pending) {
      // `-- rest of the name`: the dump's way of writing a newline inside a name in a comment.
      if (!startsWithAt(line, 0, HEADER_START))
        throw new InputError(
          `the dump's section header for ${pending.name} ends without its closing back-quote`,
        );
      pending.name += `\n${line
        .toString('utf8')
        .replace(/\r?\n$/, '')
        .slice(3)}`;
      pending.lines.push(line);
      if (pending.name.length > 4096)
        throw new InputError('the dump has a section header name longer than 4096 characters');
      if (!headerNameComplete(pending.name)) return;
      this.#pendingHeader = undefined;
      await this.#headerLines(pending.title, pending.name, pending.lines);
      return;
    }
    // Section headers: `--`, `-- Title name`, `--`; never inside a DELIMITER block.
    if (!this.#inDelimiter && this.#prevDashes && startsWithAt(line, 0, HEADER_START)) {
      const text = line.toString('utf8').replace(/\r?\n$/, '');
      const m = HEADER.exec(text);
      if (m?.[1] && m[2]) {
        this.#prevDashes = false;
        if (!headerNameComplete(m[2])) {
          this.#pendingHeader = { title: m[1], name: m[2], lines: [line] };
          return;
        }
        await this.#headerLines(m[1], m[2], [line]);
        return;
      }
    }
    this.#prevDashes = line.equals(DASHES) || (line.length === 4 && line.toString() === '--\r\n');
    if (this.#inDelimiter) {
      if (line.equals(DELIMITER_END) || line.toString('latin1').trimEnd() === 'DELIMITER ;')
        this.#inDelimiter = false;
    } else if (startsWithAt(line, 0, DELIMITER_START)) {
      this.#inDelimiter = true;
    } else if (this.#mode !== 'tail' && this.#mode !== 'preamble' && line.equals(FOOTER_START)) {
      await this.#toTail(undefined);
    } else if (this.#mode === 'data' && startsWithAt(line, 0, INSERT, REPLACE)) {
      // Only reached for a line that straddled chunks; the statement may end on this very line.
      await this.#startStatement();
      this.#stmtLine = 0;
      this.#trackLine(line);
      await this.#emit(this.#dataWriter(), line);
      if (line.length >= 2 && line[line.length - 2] === SEMI) this.#statementEnded();
      return;
    } else if (this.#mode === 'data' && this.#data) {
      // The first line after the last statement of a table's data: the rest is post (triggers).
      this.#mode = 'post';
    }
    await this.#emit(this.#writerFor(), line);
  }

  async #headerLines(title: string, name: string, lines: Buffer[]): Promise<void> {
    await this.#section(title, headerName(name));
    for (const line of lines) await this.#emit(this.#writerFor(), line);
  }

  async #section(title: string, name: string): Promise<void> {
    if (!this.#sawSection) {
      this.#sawSection = true;
      this.#options.onFirstSection?.();
    }
    switch (title) {
      case 'Current Database:':
        if (this.#seenDbs.has(name)) {
          // The second pass of --databases (final views): the dump writes its own USE line.
          await this.#toTail(undefined);
          this.#tailDb = name;
          this.#db = name;
          return;
        }
        await this.#closeTable();
        await this.#closeDb();
        if (this.#preamble) {
          await this.#end(this.#preamble);
          this.#preamble = undefined;
        }
        this.#seenDbs.add(name);
        this.#databases.push(name);
        this.#db = name;
        this.#mode = 'database';
        this.#dbWriter = this.#openObject(databaseObject(name));
        return;
      case 'Table structure for table':
      case 'Temporary table structure for view':
      case 'Temporary view structure for view': {
        await this.#closeTable();
        await this.#closeDb();
        const db = this.#requireDb(title);
        const table: SplitTable = {
          db,
          table: name,
          view: title !== 'Table structure for table',
          dataObjects: 0,
          dataBytes: 0,
          post: false,
        };
        this.#table = table;
        this.#tables.push(table);
        this.#mode = 'schema';
        this.#schema = this.#openObject(`${tablePrefix(db, name)}schema.sql`);
        return;
      }
      case 'Dumping data for table':
        if (!this.#table || this.#table.table !== name)
          throw new InputError(`the dump has data for table ${name} without its structure`);
        this.#mode = 'data';
        return;
      default:
        // Events, routines, final views.
        await this.#toTail(this.#db);
    }
  }

  #requireDb(what: string): string {
    if (this.#db === undefined)
      throw new InputError(
        `the dump has "${what}" before any "Current Database" (was it made with --databases?)`,
      );
    return this.#db;
  }

  async #toTail(db: string | undefined): Promise<void> {
    await this.#closeTable();
    await this.#closeDb();
    if (this.#preamble) {
      await this.#end(this.#preamble);
      this.#preamble = undefined;
    }
    this.#mode = 'tail';
    if (db !== undefined && db !== this.#tailDb) {
      await this.#emit(this.#tailWriter(), Buffer.from(useStatement(db)));
      this.#tailDb = db;
    }
  }

  async #closeDb(): Promise<void> {
    if (this.#dbWriter) {
      await this.#flush();
      await this.#end(this.#dbWriter);
      this.#dbWriter = undefined;
    }
  }

  async #closeTable(): Promise<void> {
    await this.#flush();
    for (const writer of [this.#schema, this.#data, this.#post]) if (writer) await this.#end(writer);
    this.#schema = this.#data = this.#post = undefined;
    this.#table = undefined;
  }

  #writerFor(): ObjectWriter {
    switch (this.#mode) {
      case 'preamble':
        return (this.#preamble ??= this.#openObject(PREAMBLE_OBJECT));
      case 'database':
        return this.#dbWriter ?? this.#tailWriter();
      case 'schema':
      case 'data':
        return this.#schema ?? this.#tailWriter();
      case 'post': {
        const table = this.#table;
        if (!table) return this.#tailWriter();
        table.post = true;
        return (this.#post ??= this.#openObject(`${tablePrefix(table.db, table.table)}post.sql`));
      }
      case 'tail':
        return this.#tailWriter();
    }
  }

  #tailWriter(): ObjectWriter {
    return (this.#tail ??= this.#openObject(TAIL_OBJECT));
  }

  #dataWriter(): ObjectWriter {
    if (!this.#data) throw new InputError(`an INSERT outside a table's data in ${this.#where()}`);
    return this.#data;
  }

  async #startStatement(): Promise<void> {
    const table = this.#table;
    if (!table) throw new InputError('an INSERT statement outside any table section');
    if (this.#schema) {
      await this.#flush();
      await this.#end(this.#schema);
      this.#schema = undefined;
    }
    if (this.#data && this.#dataSize >= this.#options.chunkBytes) {
      await this.#flush();
      await this.#end(this.#data);
      this.#data = undefined;
    }
    if (!this.#data) {
      table.dataObjects += 1;
      this.#data = this.#openObject(dataObject(table.db, table.table, table.dataObjects));
      this.#dataSize = 0;
    }
    this.#inStatement = true;
    this.#stmtLine = 0;
    this.#pendingSemi = false;
  }

  #statementEnded(): void {
    this.#inStatement = false;
    this.#stmtLine = 0;
    this.#prevDashes = false;
  }

  #openObject(name: string): ObjectWriter {
    if (this.#failed) throw new InputError(`the split was aborted; not opening ${name}`);
    const writer = this.#options.open(name);
    this.#open.add(writer);
    this.#objects += 1;
    return writer;
  }

  async #end(writer: ObjectWriter): Promise<void> {
    if (this.#pendingWriter === writer) await this.#flush();
    await writer.end();
    this.#open.delete(writer);
  }

  async #emit(writer: ObjectWriter, bytes: Buffer): Promise<void> {
    if (writer === this.#data) {
      this.#dataSize += bytes.length;
      if (this.#table) this.#table.dataBytes += bytes.length;
    }
    if (this.#pendingWriter !== writer) await this.#flush();
    this.#pendingWriter = writer;
    this.#pendingParts.push(bytes);
    // Big pieces (statement data) go out at once; small lines are gathered into one write.
    if (bytes.length >= 16 * 1024) await this.#flush();
  }

  async #flush(): Promise<void> {
    const writer = this.#pendingWriter;
    const parts = this.#pendingParts;
    this.#pendingWriter = undefined;
    this.#pendingParts = [];
    if (!writer || parts.length === 0) return;
    if (parts.length === 1) await writer.write(parts[0] as Buffer);
    else await writer.write(Buffer.concat(parts));
  }
}

function startsWithAt(buf: Buffer, pos: number, ...prefixes: Buffer[]): boolean {
  for (const prefix of prefixes) {
    if (buf.length - pos < prefix.length) continue;
    if (buf.compare(prefix, 0, prefix.length, pos, pos + prefix.length) === 0) return true;
  }
  return false;
}
