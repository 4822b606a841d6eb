/**
 * Per-key serial sections: calls for one key run one after another, calls for different keys run freely.
 * The credit ledger makes each owner's balance decision inside its section, so two holds on one balance
 * can never both read the same balance (one process; across processes use the Redis implementation).
 */
export class KeyedSerial {
  private readonly tails = new Map<string, Promise<void>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const done = new Promise<void>((r) => {
      release = r;
    });
    const tail = prev.then(() => done);
    this.tails.set(key, tail);
    return prev.then(fn).finally(() => {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
  }

  /** Number of keys with a section queued or running (for tests and metrics). */
  get activeKeys(): number {
    return this.tails.size;
  }
}
