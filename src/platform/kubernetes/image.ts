/**
 * Container image references (`[registry[:port]/]repository[:tag][@digest]`): the version of a game
 * server is its image tag; changing the version keeps the repository and replaces the tag (and drops a
 * digest, which would otherwise pin the old image).
 */
import { InputError } from '../../core/index.ts';

export interface ImageReference {
  /** Registry host[:port] as written, or `docker.io` when none is. */
  registry: string;
  /** Repository path in the registry (`library/nginx` for `nginx` on Docker Hub). */
  repository: string;
  tag: string | undefined;
  digest: string | undefined;
  /** The reference up to (not including) `:tag` / `@digest`, exactly as written. */
  name: string;
}

/** A Docker/OCI tag: what `setVersion` accepts. */
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;

export function parseImage(image: string): ImageReference | undefined {
  if (typeof image !== 'string' || image.length === 0 || image.length > 4096 || /\s/.test(image))
    return undefined;
  let rest = image;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) return undefined;
  }
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  let tag: string | undefined;
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) return undefined;
  }
  const name = rest;
  const parts = name.split('/');
  let registry = 'docker.io';
  const first = parts[0]!;
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    registry = first;
    parts.shift();
  }
  if (parts.length === 0 || !parts.every((p) => PATH_COMPONENT.test(p))) return undefined;
  if (registry === 'docker.io' && parts.length === 1) parts.unshift('library');
  return { registry, repository: parts.join('/'), tag, digest, name };
}

/** The version an image runs: its tag, else its digest, else `latest` (what the runtime pulls). */
export function imageVersion(image: string): string {
  const ref = parseImage(image);
  if (!ref) return image;
  return ref.tag ?? ref.digest ?? 'latest';
}

/** @throws InputError when `version` is not a valid image tag. */
export function checkVersion(version: unknown): string {
  if (typeof version !== 'string' || !TAG.test(version)) {
    throw new InputError(
      `invalid version ${JSON.stringify(version)}: an image tag is 1-128 letters, digits, "_", "." and "-", not starting with "." or "-"`,
    );
  }
  return version;
}

/** `image` with its tag replaced by `version` (repository kept, digest dropped). */
export function withTag(image: string, version: string): string {
  const ref = parseImage(image);
  if (!ref) throw new InputError(`the current image ${JSON.stringify(image)} is not a valid image reference`);
  return `${ref.name}:${checkVersion(version)}`;
}

/**
 * The same image, as far as a rollout goes: same repository and tag; a digest counts only when both
 * carry one (an admission webhook may pin `repo:v4` to `repo:v4@sha256:…`).
 */
export function sameImage(a: string, b: string): boolean {
  if (a === b) return true;
  const x = parseImage(a);
  const y = parseImage(b);
  if (!x || !y) return false;
  return (
    x.name === y.name &&
    (x.tag ?? 'latest') === (y.tag ?? 'latest') &&
    (x.digest === undefined || y.digest === undefined || x.digest === y.digest)
  );
}
