/**
 * An OCI distribution registry **stand-in**: answers `HEAD/GET /v2/<repository>/manifests/<tag>` for a
 * fixed set of tags (200 with a digest, or 404 with MANIFEST_UNKNOWN / NAME_UNKNOWN in a GET's body),
 * optionally behind the bearer-token challenge public registries use (401 + `WWW-Authenticate: Bearer
 * realm=…`, anonymous `/token`); the realm can be pointed elsewhere, as a hostile registry would.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';

export interface RegistryOptions {
  /** repository → tags that exist. */
  tags: Record<string, string[]>;
  /** Ask for a bearer token first, as Docker Hub does. @default true */
  tokenAuth?: boolean;
  /**
   * The token service the challenge names (`Bearer realm=…`); `{host}` and `{port}` are replaced by the
   * registry's host:port and port. A hostile registry points it anywhere. @default `http://{host}/token`
   */
  realm?: string;
}

export class RegistryStandIn {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #token = randomBytes(16).toString('hex');
  readonly tags: Record<string, string[]>;
  readonly #tokenAuth: boolean;
  readonly #realm: string;
  /** Requests seen, as `METHOD path`. */
  readonly requests: string[] = [];
  host = '';

  constructor(options: RegistryOptions) {
    this.tags = options.tags;
    this.#tokenAuth = options.tokenAuth ?? true;
    this.#realm = options.realm ?? 'http://{host}/token';
    this.#server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://registry');
      this.requests.push(`${req.method ?? 'GET'} ${url.pathname}`);
      if (url.pathname === '/token') {
        const body = JSON.stringify({ token: this.#token, expires_in: 300 });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(body);
        return;
      }
      const m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url.pathname);
      if (!m) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'NOT_FOUND', message: 'not found' }] }));
        return;
      }
      const repository = m[1]!;
      if (this.#tokenAuth && req.headers.authorization !== `Bearer ${this.#token}`) {
        res.writeHead(401, {
          'content-type': 'application/json',
          'www-authenticate': `Bearer realm="${this.#realm.replaceAll('{host}', this.host).replaceAll('{port}', this.host.split(':').pop()!)}",service="standin-registry",scope="repository:${repository}:pull"`,
        });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
        return;
      }
      const tag = decodeURIComponent(m[2]!);
      const tags = this.tags[repository];
      if (!tags?.includes(tag)) {
        // As the distribution registry: NAME_UNKNOWN for a repository it does not have, MANIFEST_UNKNOWN
        // for a tag; a HEAD answer carries no body.
        const error =
          tags === undefined
            ? {
                code: 'NAME_UNKNOWN',
                message: 'repository name not known to registry',
                detail: { name: repository },
              }
            : { code: 'MANIFEST_UNKNOWN', message: `manifest unknown`, detail: { Tag: tag } };
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(req.method === 'HEAD' ? undefined : JSON.stringify({ errors: [error] }));
        return;
      }
      const manifest = JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        tag,
      });
      res.writeHead(200, {
        'content-type': 'application/vnd.oci.image.manifest.v1+json',
        'docker-content-digest': `sha256:${createHash('sha256').update(manifest).digest('hex')}`,
        'content-length': Buffer.byteLength(manifest),
      });
      res.end(req.method === 'HEAD' ? undefined : manifest);
    });
    this.#server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', () => resolve()));
    const address = this.#server.address();
    if (address === null || typeof address === 'string') throw new Error('registry stand-in: no address');
    this.host = `127.0.0.1:${address.port}`;
    return this;
  }

  /** `127.0.0.1:port/repository:tag` */
  image(repository: string, tag: string): string {
    return `${this.host}/${repository}:${tag}`;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

export async function startRegistry(options: RegistryOptions): Promise<RegistryStandIn> {
  return new RegistryStandIn(options).listen();
}
