import { inspect } from 'node:util';

const REDACTED = '[REDACTED]';

/**
 * A secret that does not leak by accident: JSON, string conversion and util.inspect (console.log, loggers)
 * all print [REDACTED]. Only `reveal()` gives the value, at the one place that sends it to the provider.
 */
export class SecretString {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  get length(): number {
    return this.#value.length;
  }

  toJSON(): string {
    return REDACTED;
  }

  toString(): string {
    return REDACTED;
  }

  [Symbol.toPrimitive](): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return `SecretString(${REDACTED})`;
  }
}
