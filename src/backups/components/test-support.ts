/**
 * Test-only helpers for component tests (not exported from any index): a ComponentWriteContext and a
 * ComponentReadContext backed by plain files in a temporary directory. No compression, encryption or
 * storage is involved (those have their own tests): a component test is about the component. Each object's
 * plain bytes go to one file; its record carries the plain size and SHA-256 (stored == plain here).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pino } from 'pino';
import type { Logger } from '../../app/log.ts';
import { systemClock, type Clock } from '../../core/index.ts';
import { writeWholeObject } from '../object-write.ts';
import type {
  ComponentKind,
  ComponentReadContext,
  ComponentWriteContext,
  ObjectRecord,
  ObjectWriter,
  Progress,
} from '../types.ts';

/** A Progress that keeps what it was told, so tests can look at phases, bytes and notes. */
export class RecordingProgress implements Progress {
  readonly phases: Array<{ name: string; totalBytes: number | undefined }> = [];
  readonly notes: string[] = [];
  bytes = 0;
  phase(name: string, totalBytes?: number): void {
    this.phases.push({ name, totalBytes });
  }
  add(bytes: number): void {
    this.bytes += bytes;
  }
  note(text: string): void {
    this.notes.push(text);
  }
}

export interface TestObjectStoreOptions {
  component?: ComponentKind;
  setId?: string;
  clock?: Clock;
}

/**
 * Objects of one component as files under a temp dir. `writeContext()` gives what a backup gets,
 * `readContext()` what a restore or drill gets (over the objects written so far, in write order).
 * Call `cleanup()` in afterAll/afterEach.
 */
export class TestObjectStore {
  readonly dir: string;
  readonly setId: string;
  readonly component: ComponentKind;
  readonly clock: Clock;
  readonly log: Logger = pino({ level: 'silent' });
  /** Completed objects, in the order they completed. */
  readonly records: ObjectRecord[] = [];
  /** Names opened and not yet completed or aborted. */
  readonly open = new Set<string>();
  /** Names whose writer was aborted. */
  readonly aborted: string[] = [];
  readonly #names = new Set<string>();

  private constructor(dir: string, options: TestObjectStoreOptions) {
    this.dir = dir;
    this.component = options.component ?? 'mysql';
    this.setId = options.setId ?? 'bk-20260101T000000Z-abcdef';
    this.clock = options.clock ?? systemClock;
  }

  static async create(options: TestObjectStoreOptions = {}): Promise<TestObjectStore> {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'gameops-component-'));
    await fsp.mkdir(path.join(dir, 'objects'), { mode: 0o700 });
    return new TestObjectStore(dir, options);
  }

  /** The file holding an object's bytes (names are flattened; `/` and other characters are escaped). */
  file(name: string): string {
    return path.join(this.dir, 'objects', encodeURIComponent(name));
  }

  /** An object's bytes, once complete. */
  async bytes(name: string): Promise<Buffer> {
    if (!this.records.some((r) => r.name === name)) throw new Error(`no complete object ${name}`);
    return fsp.readFile(this.file(name));
  }

  /** Files present in the objects directory (complete or not): what a crashed writer left behind. */
  async files(): Promise<string[]> {
    return (await fsp.readdir(path.join(this.dir, 'objects'))).map((f) => decodeURIComponent(f)).sort();
  }

  /** A new private (0700) temp dir, as the service gives each component. */
  async tempDir(): Promise<string> {
    const dir = await fsp.mkdtemp(path.join(this.dir, 'tmp-'));
    await fsp.chmod(dir, 0o700);
    return dir;
  }

  writeContext(
    tempDir: string,
    extra: { signal?: AbortSignal; progress?: Progress } = {},
  ): ComponentWriteContext & { progress: Progress } {
    const open = (name: string): ObjectWriter => this.#writer(name);
    return {
      setId: this.setId,
      open,
      write: (name, source) => writeWholeObject(open, name, source),
      signal: extra.signal ?? new AbortController().signal,
      progress: extra.progress ?? new RecordingProgress(),
      clock: this.clock,
      log: this.log,
      tempDir,
    };
  }

  readContext(
    tempDir: string,
    extra: { signal?: AbortSignal; progress?: Progress; objects?: readonly ObjectRecord[] } = {},
  ): ComponentReadContext {
    const objects = extra.objects ?? [...this.records];
    return {
      setId: this.setId,
      objects,
      read: (name) => {
        const record = objects.find((r) => r.name === name);
        if (!record) {
          const stream = new Readable({ read() {} });
          process.nextTick(() => stream.destroy(new Error(`object ${name} is not in the manifest`)));
          return stream;
        }
        return checkedRead(this.file(name), record);
      },
      signal: extra.signal ?? new AbortController().signal,
      progress: extra.progress ?? new RecordingProgress(),
      clock: this.clock,
      log: this.log,
      tempDir,
    };
  }

  async cleanup(): Promise<void> {
    await fsp.rm(this.dir, { recursive: true, force: true });
  }

  #writer(name: string): ObjectWriter {
    if (this.#names.has(name)) throw new Error(`object ${name} opened twice`);
    this.#names.add(name);
    this.open.add(name);
    const file = this.file(name);
    const out = fs.createWriteStream(file, { mode: 0o600 });
    out.on('error', () => undefined);
    const hash = createHash('sha256');
    let size = 0;
    let done = false;
    const finish = (): void => {
      done = true;
      this.open.delete(name);
    };
    return {
      write: async (chunk) => {
        if (done) throw new Error(`object ${name}: write after end/abort`);
        hash.update(chunk);
        size += chunk.byteLength;
        if (!out.write(chunk)) {
          await new Promise<void>((resolve, reject) => {
            const onDrain = (): void => {
              out.off('error', onError);
              resolve();
            };
            const onError = (err: Error): void => {
              out.off('drain', onDrain);
              reject(err);
            };
            out.once('drain', onDrain);
            out.once('error', onError);
          });
        }
      },
      end: async () => {
        if (done) throw new Error(`object ${name}: end after end/abort`);
        finish();
        await new Promise<void>((resolve, reject) => {
          out.once('error', reject);
          out.end(() => resolve());
        });
        const sha256 = hash.digest('hex');
        const record: ObjectRecord = {
          name,
          key: `${this.setId}/${this.component}/${name}`,
          size,
          sha256,
          plainSize: size,
          plainSha256: sha256,
        };
        this.records.push(record);
        return record;
      },
      abort: async () => {
        if (done) return;
        finish();
        this.aborted.push(name);
        out.destroy();
        await fsp.rm(file, { force: true });
      },
    };
  }
}

/** The file's bytes; the stream errors naming the object when size or SHA-256 differ from the record. */
function checkedRead(file: string, record: ObjectRecord): Readable {
  const hash = createHash('sha256');
  let size = 0;
  const check = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      size += chunk.length;
      callback(null, chunk);
    },
    flush(callback) {
      const sha256 = hash.digest('hex');
      if (size !== record.plainSize || sha256 !== record.plainSha256)
        callback(new Error(`object ${record.name}: size or SHA-256 differs from the record`));
      else callback();
    },
  });
  pipeline(fs.createReadStream(file), check).catch((err: unknown) => check.destroy(err as Error));
  return check;
}
