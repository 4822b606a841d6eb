import { describe, expect, it } from 'vitest';
import { FifoMap } from '../guard/fifo.ts';

describe('FifoMap: entries leave oldest first, by deadline or by bound', () => {
  it('drops expired entries from the oldest end and stops at the first live one', () => {
    const m = new FifoMap<string, number>();
    m.set('a', 1, 10);
    m.set('b', 2, 30);
    m.set('c', 3, 20);
    m.evict(20);
    // a (10) and... c (20) is behind b (30): insertion order, so only a leaves now.
    expect([m.has('a'), m.has('b'), m.has('c')]).toEqual([false, true, true]);
    m.evict(30);
    expect(m.size).toBe(0);
  });

  it('keeps at most the bound, forgetting the oldest; delete and replace do not count twice', () => {
    const m = new FifoMap<number, number>();
    for (let i = 0; i < 10; i++) m.set(i, i);
    m.delete(0);
    m.set(1, 100); // replaced: now the newest
    m.evict(0, 5);
    expect(m.size).toBe(5);
    expect([...Array(10).keys()].filter((k) => m.has(k))).toEqual([1, 6, 7, 8, 9]);
    expect(m.get(1)).toBe(100);
  });

  it('stays correct through many cycles of add and evict (the queue is compacted)', () => {
    const m = new FifoMap<number, true>();
    for (let i = 0; i < 50_000; i++) {
      m.evict(0, 999);
      m.set(i, true);
      if (i % 3 === 0) m.delete(i - 1);
    }
    expect(m.size).toBeLessThanOrEqual(1000);
    expect(m.has(49_999)).toBe(true);
    expect(m.has(48_000)).toBe(false);
  });
});
