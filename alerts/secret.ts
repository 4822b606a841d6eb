import { inspect } from 'node:util';

export const REDACTED = '[REDACTED]';

/**
 * A secret value (webhook URL, routing key). It prints as `[REDACTED]` through toString, JSON and
 * util.inspect, so a config object can be logged or returned without leaking it; only `reveal()`
 * gives the value, and only the HTTP sender calls it.
 */
export class Secret {
  readonly #value: string;

  constructor(
    value: string,
    /** Where the value came from, e.g. `env:FORGE_SLACK_WEBHOOK_URL`; safe to print. */
    readonly source: string,
  ) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return `Secret(${this.source})`;
  }
}

/** Replaces every occurrence of the known secret values (raw and URL-encoded) in text. */
export class Redactor {
  readonly #needles: string[];

  constructor(secrets: readonly Secret[]) {
    const set = new Set<string>();
    for (const s of secrets) {
      const v = s.reveal();
      if (v.length < 4) continue; // too short to redact without mangling ordinary text
      set.add(v);
      set.add(encodeURIComponent(v));
      // A URL secret also leaks through its path alone (e.g. /services/T/B/XYZ in an error).
      try {
        const u = new URL(v);
        if (u.pathname.length > 8) set.add(u.pathname);
        if (u.search.length > 8) set.add(u.search);
      } catch {
        // not a URL
      }
    }
    // Longest first so a URL is replaced before its own path.
    this.#needles = [...set].sort((a, b) => b.length - a.length);
  }

  text(s: string): string {
    let out = s;
    for (const n of this.#needles) if (out.includes(n)) out = out.split(n).join(REDACTED);
    return out;
  }

  /** A deep copy of a JSON-able value with every secret redacted (Secrets themselves print redacted). */
  value<T>(v: T): T {
    if (v === undefined) return v;
    return JSON.parse(this.text(JSON.stringify(v, errorReplacer))) as T;
  }

  /** An error's message (and cause chain) as redacted text. */
  error(e: unknown): string {
    return this.text(describeError(e));
  }
}

function errorReplacer(_key: string, v: unknown): unknown {
  if (v instanceof Error) return describeError(v);
  if (typeof v === 'bigint') return v.toString();
  return v;
}

function describeError(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const parts: string[] = [];
  let cur: unknown = e;
  for (let i = 0; i < 4 && cur instanceof Error; i++) {
    const code = (cur as { code?: unknown }).code;
    parts.push(`${cur.name}: ${cur.message}${typeof code === 'string' ? ` (${code})` : ''}`);
    cur = cur.cause;
  }
  return parts.join(' <- ');
}
