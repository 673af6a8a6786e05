/**
 * The way to the API: the kubeconfig (a file, the default chain, or the in-cluster service account),
 * its context, the generated API clients of @kubernetes/client-node, and `call()`, which gives every
 * request a deadline and the caller's signal and maps every failure through errors.ts.
 */
import { statSync } from 'node:fs';
import {
  AppsV1Api,
  AutoscalingV2Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  Observable,
  type ConfigurationOptions,
  type ObservableMiddleware,
  type RequestContext,
  type ResponseContext,
} from '@kubernetes/client-node';
import { InputError } from '../../core/index.ts';
import type { KubernetesPlatformConfig } from '../../config/index.ts';
import { makeRedactor, toPlatformError, type ApiContext, type Target } from './errors.ts';

/** Why a kubeconfig could not be read, without echoing its content (it holds tokens and keys). */
function safeReason(err: unknown): string {
  if (typeof err !== 'object' || err === null) return 'unreadable';
  const e = err as {
    name?: unknown;
    reason?: unknown;
    mark?: { line?: unknown };
    code?: unknown;
    message?: unknown;
  };
  if (e.name === 'YAMLException') {
    const line = typeof e.mark?.line === 'number' ? ` at line ${e.mark.line + 1}` : '';
    return `not valid YAML${line}${typeof e.reason === 'string' ? ` (${e.reason})` : ''}`;
  }
  if (typeof e.code === 'string') return e.code;
  // The client's own structural checks name fields only, e.g. "clusters[0].cluster.server is missing".
  if (typeof e.message === 'string' && /^(clusters|users|contexts)\[\d+\]\S* is missing$/.test(e.message))
    return e.message;
  return 'unreadable';
}

/**
 * Loads the kubeconfig as the config says: `kubeconfig` (a file), else KUBECONFIG, ~/.kube/config, the
 * in-cluster service account; then `context`. A `given` KubeConfig (tests) is used as is.
 * @throws InputError naming the file or context, never quoting the file.
 */
export function loadKubeConfig(config: KubernetesPlatformConfig, given?: KubeConfig): KubeConfig {
  const kc = given ?? new KubeConfig();
  if (!given) {
    const path = config.kubeconfig;
    try {
      if (path !== undefined) {
        statSync(path);
        kc.loadFromFile(path);
      } else {
        kc.loadFromDefault();
      }
    } catch (err) {
      throw new InputError(
        `cannot read the kubeconfig ${path ?? '(KUBECONFIG or ~/.kube/config)'}: ${safeReason(err)}`,
      );
    }
  }
  if (config.context !== undefined) {
    if (!kc.getContextObject(config.context)) {
      const names = kc.getContexts().map((c) => c.name);
      throw new InputError(
        `the kubeconfig has no context "${config.context}" (it has: ${names.length > 0 ? names.join(', ') : 'none'})`,
      );
    }
    kc.setCurrentContext(config.context);
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) {
    throw new InputError(
      `the kubeconfig context "${kc.getCurrentContext()}" names no cluster that the file defines`,
    );
  }
  const user = kc.getCurrentUser();
  if (
    !given &&
    config.kubeconfig === undefined &&
    cluster.name === 'cluster' &&
    cluster.server === 'http://localhost:8080' &&
    user?.name === 'user'
  ) {
    throw new InputError(
      'no kubeconfig found: set platform.kubeconfig, KUBECONFIG or ~/.kube/config, or run gameops in a pod with a service account',
    );
  }
  let url: URL;
  try {
    url = new URL(cluster.server);
  } catch {
    throw new InputError(`the kubeconfig cluster "${cluster.name}" has an invalid server URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new InputError(
      `the kubeconfig cluster "${cluster.name}" server must be https:// (got ${url.protocol})`,
    );
  }
  return kc;
}

/** The API server URL for messages: no user info, no trailing slash. */
function printableServer(server: string): string {
  const url = new URL(server);
  url.username = '';
  url.password = '';
  return url.toString().replace(/\/$/, '');
}

export interface CallOptions {
  signal?: AbortSignal | undefined;
  /** Content-Type of a PATCH body (the generated client would pick JSON patch otherwise). */
  contentType?: string;
}

export class Kube {
  readonly kc: KubeConfig;
  readonly core: CoreV1Api;
  readonly apps: AppsV1Api;
  readonly autoscaling: AutoscalingV2Api;
  readonly custom: CustomObjectsApi;
  readonly api: ApiContext;
  /** Base URL for raw requests (log streams), with any path prefix of the server. */
  readonly server: string;

  constructor(kc: KubeConfig, requestTimeoutMs: number) {
    this.kc = kc;
    this.core = kc.makeApiClient(CoreV1Api);
    this.apps = kc.makeApiClient(AppsV1Api);
    this.autoscaling = kc.makeApiClient(AutoscalingV2Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
    const cluster = kc.getCurrentCluster()!;
    const user = kc.getCurrentUser();
    this.server = cluster.server.replace(/\/+$/, '');
    this.api = {
      server: printableServer(cluster.server),
      context: kc.getCurrentContext(),
      user: user?.name ?? '(none)',
      requestTimeoutMs,
      redact: makeRedactor([user?.token, user?.password, user?.keyData, user?.certData]),
    };
  }

  /** A signal that aborts on the caller's signal or after the request timeout. */
  requestSignal(signal?: AbortSignal): AbortSignal {
    const timeout = AbortSignal.timeout(this.api.requestTimeoutMs);
    return signal ? AbortSignal.any([signal, timeout]) : timeout;
  }

  /**
   * Runs one API request with a deadline (the request timeout) and the caller's signal; every failure
   * leaves as a gameops error (errors.ts), or as the signal's reason when the caller aborted.
   */
  async call<T>(
    target: Target,
    request: (options: ConfigurationOptions) => Promise<T>,
    options: CallOptions = {},
  ): Promise<T> {
    options.signal?.throwIfAborted();
    const signal = this.requestSignal(options.signal);
    const contentType = options.contentType;
    const middleware: ObservableMiddleware = {
      pre: (context: RequestContext) => {
        context.setSignal(signal);
        if (contentType !== undefined) context.setHeaderParam('Content-Type', contentType);
        return new Observable(Promise.resolve(context));
      },
      post: (response: ResponseContext) => new Observable(Promise.resolve(response)),
    };
    try {
      return await request({ middleware: [middleware], middlewareMergeStrategy: 'append' });
    } catch (err) {
      throw toPlatformError(err, target, this.api, options.signal);
    }
  }
}
