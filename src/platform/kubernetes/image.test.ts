import { describe, expect, it } from 'vitest';
import { InputError } from '../../core/index.ts';
import { checkVersion, imageVersion, parseImage, sameImage, withTag } from './image.ts';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('image references', () => {
  it.each([
    [
      'nginx',
      {
        registry: 'docker.io',
        repository: 'library/nginx',
        tag: undefined,
        digest: undefined,
        name: 'nginx',
      },
    ],
    ['nginx:1.25', { registry: 'docker.io', repository: 'library/nginx', tag: '1.25', name: 'nginx' }],
    ['studio/game:v1', { registry: 'docker.io', repository: 'studio/game', tag: 'v1', name: 'studio/game' }],
    [
      'registry.example.com:5000/game/server:v1',
      {
        registry: 'registry.example.com:5000',
        repository: 'game/server',
        tag: 'v1',
        name: 'registry.example.com:5000/game/server',
      },
    ],
    ['localhost/game:dev', { registry: 'localhost', repository: 'game', tag: 'dev' }],
    ['127.0.0.1:5000/game/server', { registry: '127.0.0.1:5000', repository: 'game/server', tag: undefined }],
    [
      `ghcr.io/org/app@${DIGEST}`,
      { registry: 'ghcr.io', repository: 'org/app', tag: undefined, digest: DIGEST },
    ],
    [
      `ghcr.io/org/app:v1@${DIGEST}`,
      { registry: 'ghcr.io', repository: 'org/app', tag: 'v1', digest: DIGEST },
    ],
  ])('parses %s', (image, expected) => {
    expect(parseImage(image)).toMatchObject(expected);
  });

  it.each(['', 'UPPER/case', 'a b', 'game:', 'game:-bad', 'game@sha256:short', 'a//b', 'x'.repeat(5000)])(
    'refuses %j',
    (image) => {
      expect(parseImage(image)).toBeUndefined();
    },
  );

  it('replaces the tag, keeps the repository as written, drops a digest', () => {
    expect(withTag('registry.example.com:5000/game/server:v1', 'v2')).toBe(
      'registry.example.com:5000/game/server:v2',
    );
    expect(withTag('registry.example.com:5000/game/server', 'v2')).toBe(
      'registry.example.com:5000/game/server:v2',
    );
    expect(withTag(`ghcr.io/org/app:v1@${DIGEST}`, 'v2')).toBe('ghcr.io/org/app:v2');
    expect(withTag('nginx', '1.27')).toBe('nginx:1.27');
    expect(() => withTag('Not An Image', 'v2')).toThrow(InputError);
  });

  it('gives the version an image runs', () => {
    expect(imageVersion('nginx')).toBe('latest');
    expect(imageVersion('game/server:v1.2.3')).toBe('v1.2.3');
    expect(imageVersion(`ghcr.io/org/app@${DIGEST}`)).toBe(DIGEST);
  });

  it('tells whether a template still asks for the same image, a pinned digest or not', () => {
    expect(sameImage('r.example/game:v4', 'r.example/game:v4')).toBe(true);
    expect(sameImage(`r.example/game:v4@${DIGEST}`, 'r.example/game:v4')).toBe(true);
    expect(sameImage('r.example/game', 'r.example/game:latest')).toBe(true);
    expect(sameImage('r.example/game:v2', 'r.example/game:v4')).toBe(false);
    expect(sameImage('r.example/other:v4', 'r.example/game:v4')).toBe(false);
    expect(sameImage(`r.example/game:v4@${DIGEST}`, `r.example/game:v4@sha256:${'b'.repeat(64)}`)).toBe(
      false,
    );
    expect(sameImage('not an image', 'r.example/game:v4')).toBe(false);
  });

  it.each(['v1', 'v1.2.3', '1.0.0-rc.1', 'build_42', '_x', 'a'.repeat(128)])(
    'accepts the version %s',
    (v) => {
      expect(checkVersion(v)).toBe(v);
    },
  );

  it.each(['', '-x', '.x', 'a/b', 'v1+build', 'a b', 'a'.repeat(129), 5, null])(
    'refuses the version %j',
    (v) => {
      expect(() => checkVersion(v)).toThrow(InputError);
    },
  );
});
