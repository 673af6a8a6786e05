/**
 * Pod logs, streamed: one HTTP request per pod to `/api/v1/namespaces/{ns}/pods/{name}/log`, read
 * chunk by chunk as the consumer pulls (the response is paused in between, so memory does not grow
 * with the log), several pods merged as their lines arrive.
 *
 * This does not use the client's `Log` class: it pipes the response into a stream without passing on
 * errors, so a connection cut mid-way would look like a normal end (or hang), it drops `tailLines=0`
 * (falsy), and it discards the API's Status message on failures. The request carries the same
 * kubeconfig credentials (`KubeConfig.applyToHTTPSOptions`).
 *
 * A stream that ends without the final chunk of the HTTP response (connection reset, proxy timeout,
 * API server restart) is an UnavailableError naming the pod and how far it got, never a short count.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { UnavailableError } from '../../core/index.ts';
import type { Kube } from './client.ts';
import { statusMessage, toPlatformError } from './errors.ts';

export interface PodLogOptions {
  namespace: string;
  pod: string;
  container: string;
  follow?: boolean;
  sinceSeconds?: number;
  tailLines?: number;
  /** The caller's signal: aborting it ends the stream. */
  signal?: AbortSignal | undefined;
  /**
   * Fail when no byte arrives for this long once the stream is open (for reads gameops consumes
   * itself; a person reading `logs` may be slow, and a followed log may be quiet).
   */
  idleTimeoutMs?: number;
}

/** How far a stream got: updated as bytes pass, readable after a failure. */
export interface StreamProgress {
  bytes: number;
  lines: number;
}

export interface PodLogStream {
  /** The log's bytes; throws an UnavailableError naming the pod if the stream is cut. */
  chunks: AsyncIterable<Buffer>;
  progress: StreamProgress;
}

const MAX_ERROR_BODY = 64 * 1024;
const NEWLINE = 0x0a;

/** The pod has no log yet (its container never started): the API answers 400 with this. */
const WAITING_TO_START = /is waiting to start|ContainerCreating|PodInitializing/;

async function readCapped(res: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_ERROR_BODY) {
      res.destroy();
      break;
    }
    parts.push(chunk);
  }
  return Buffer.concat(parts).toString('utf8');
}

/**
 * Opens the log stream of one pod. Resolves once the API answered 200 (or with an empty stream when the
 * container has not started yet); rejects with a mapped error otherwise.
 */
export async function openPodLog(kube: Kube, options: PodLogOptions): Promise<PodLogStream> {
  const target = {
    action: 'streaming the log of',
    kind: 'pod',
    namespace: options.namespace,
    name: options.pod,
  };
  options.signal?.throwIfAborted();
  const url = new URL(
    `${kube.server}/api/v1/namespaces/${encodeURIComponent(options.namespace)}/pods/${encodeURIComponent(options.pod)}/log`,
  );
  url.searchParams.set('container', options.container);
  if (options.follow) url.searchParams.set('follow', 'true');
  if (options.sinceSeconds !== undefined) url.searchParams.set('sinceSeconds', String(options.sinceSeconds));
  if (options.tailLines !== undefined) url.searchParams.set('tailLines', String(options.tailLines));

  const requestOptions: RequestOptions = {};
  try {
    await kube.kc.applyToHTTPSOptions(requestOptions);
  } catch (err) {
    throw toPlatformError(err, target, kube.api);
  }
  // The caller's signal ends the stream at any time; our own deadline only covers the answer's head.
  const local = new AbortController();
  const onAbort = (): void => local.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const req = send(url, { ...requestOptions, method: 'GET', signal: local.signal });
  const headTimer = setTimeout(() => {
    const err = new Error('timeout');
    err.name = 'TimeoutError';
    req.destroy(err);
  }, kube.api.requestTimeoutMs);

  let res: IncomingMessage;
  try {
    res = await new Promise<IncomingMessage>((resolve, reject) => {
      req.once('response', resolve);
      req.once('error', reject);
      req.end();
    });
  } catch (err) {
    options.signal?.removeEventListener('abort', onAbort);
    throw toPlatformError(err, target, kube.api, options.signal);
  } finally {
    clearTimeout(headTimer);
  }

  const status = res.statusCode ?? 0;
  if (status !== 200) {
    let body: string;
    try {
      body = await readCapped(res);
    } catch {
      body = '';
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
    if (status === 400 && WAITING_TO_START.test(statusMessage(body) ?? '')) {
      return { chunks: (async function* () {})(), progress: { bytes: 0, lines: 0 } };
    }
    throw toPlatformError({ statusCode: status, body }, target, kube.api, options.signal);
  }

  const progress: StreamProgress = { bytes: 0, lines: 0 };
  const idleMs = options.idleTimeoutMs;
  async function* chunks(): AsyncGenerator<Buffer> {
    let idleTimer: NodeJS.Timeout | undefined;
    let idleFired = false;
    const armIdle = (): void => {
      if (idleMs === undefined) return;
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => {
        idleFired = true;
        res.destroy();
      }, idleMs);
    };
    const cut = (why: string): UnavailableError =>
      new UnavailableError(
        `the log stream of pod ${options.namespace}/${options.pod} was cut after ${progress.bytes} bytes (${progress.lines} lines): ${why}`,
        { details: { pod: options.pod, bytes: progress.bytes, lines: progress.lines } },
      );
    try {
      armIdle();
      try {
        for await (const chunk of res as AsyncIterable<Buffer>) {
          progress.bytes += chunk.length;
          for (let at = chunk.indexOf(NEWLINE); at >= 0; at = chunk.indexOf(NEWLINE, at + 1))
            progress.lines++;
          clearTimeout(idleTimer);
          yield chunk;
          armIdle();
        }
      } catch (err) {
        if (options.signal?.aborted) throw options.signal.reason;
        if (idleFired) throw cut(`nothing arrived for ${idleMs} ms`);
        throw cut(err instanceof Error ? err.message : String(err));
      }
      if (options.signal?.aborted) throw options.signal.reason;
      if (idleFired) throw cut(`nothing arrived for ${idleMs} ms`);
      if (!res.complete) throw cut('the connection closed before the end of the response');
    } finally {
      clearTimeout(idleTimer);
      options.signal?.removeEventListener('abort', onAbort);
      if (!res.complete) res.destroy();
    }
  }
  return { chunks: chunks(), progress };
}

/**
 * Merges async sources, at most `limit` open at once, yielding items as they arrive. Returning early
 * (the consumer breaks) or a failing source aborts `abort` so every open stream is released.
 */
export async function* mergeSources<T>(
  sources: Array<() => AsyncIterator<T>>,
  limit: number,
  abort: AbortController,
): AsyncGenerator<T> {
  type Step = { id: number; result: IteratorResult<T> };
  const active = new Map<number, { iterator: AsyncIterator<T>; next: Promise<Step> }>();
  let started = 0;
  const pull = (id: number, iterator: AsyncIterator<T>): Promise<Step> =>
    iterator.next().then((result) => ({ id, result }));
  const fill = (): void => {
    while (active.size < limit && started < sources.length) {
      const id = started++;
      const iterator = sources[id]!();
      active.set(id, { iterator, next: pull(id, iterator) });
    }
  };
  try {
    fill();
    while (active.size > 0) {
      const { id, result } = await Promise.race([...active.values()].map((a) => a.next));
      const entry = active.get(id)!;
      if (result.done) {
        active.delete(id);
        fill();
        continue;
      }
      entry.next = pull(id, entry.iterator);
      yield result.value;
    }
  } finally {
    if (active.size > 0) {
      abort.abort(new Error('log streams closed'));
      for (const a of active.values()) a.next.catch(() => undefined);
      await Promise.allSettled(
        [...active.values()].map((a) => (a.iterator.return ? a.iterator.return() : Promise.resolve())),
      );
    }
  }
}
