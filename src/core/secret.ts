import { inspect } from 'node:util';

const MASK = '********';

/**
 * A secret value that refuses to be printed: JSON, `String()`, template literals and `util.inspect`
 * all show a mask. Only `reveal()` gives the value, and only connectors call it.
 */
export interface Secret {
  reveal(): string;
  /** Always the mask. */
  toString(): string;
  /** Where the value came from (`env:NAME`, `file:/path`, `inline`): safe to show. */
  readonly source: string;
}

class SecretValue implements Secret {
  readonly #value: string;
  readonly source: string;
  constructor(value: string, source: string) {
    this.#value = value;
    this.source = source;
  }
  reveal(): string {
    return this.#value;
  }
  toJSON(): string {
    return MASK;
  }
  toString(): string {
    return MASK;
  }
  [inspect.custom](): string {
    return `Secret(${this.source})`;
  }
}

export function secret(value: string, source: string): Secret {
  return new SecretValue(value, source);
}

export function isSecret(value: unknown): value is Secret {
  return value instanceof SecretValue;
}

/** Replaces every occurrence of each secret's value in `text` with a mask (for error messages from drivers). */
export function maskSecrets(text: string, secrets: Iterable<Secret | undefined>): string {
  let out = text;
  for (const s of secrets) {
    const v = s?.reveal();
    if (v && v.length >= 3) out = out.split(v).join(MASK);
  }
  return out;
}
