import type { Clock } from './clock.ts';

/**
 * A token bucket per destination. `reserve` hands out the next token even when it lies in the future
 * (the balance goes negative), so waiting callers are served in order at the refill rate.
 */
export class TokenBucket {
  #tokens: number;
  #last: number;

  constructor(
    /** Burst size, tokens. */
    readonly capacity: number,
    /** Tokens added per second. */
    readonly refillPerSecond: number,
    private readonly clock: Clock,
  ) {
    this.#tokens = capacity;
    this.#last = clock.now();
  }

  /**
   * Takes one token. Returns the milliseconds to wait before using it, or undefined (and takes
   * nothing) when that wait would exceed `maxWaitMs`.
   */
  reserve(maxWaitMs: number): number | undefined {
    this.#refill();
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    const waitMs = Math.ceil(((1 - this.#tokens) / this.refillPerSecond) * 1000);
    if (waitMs > maxWaitMs) return undefined;
    this.#tokens -= 1;
    return waitMs;
  }

  #refill(): void {
    const now = this.clock.now();
    const elapsed = Math.max(0, now - this.#last);
    this.#last = now;
    this.#tokens = Math.min(this.capacity, this.#tokens + (elapsed / 1000) * this.refillPerSecond);
  }
}
