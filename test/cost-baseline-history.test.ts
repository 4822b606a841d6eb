import { describe, expect, it } from 'vitest';
import { CostBaseline } from '../guard/index.ts';

// The start-up learns the log's history in the background while live events already arrive: older tasks
// learned after newer ones must leave the baseline as if every task had been observed in order.

const task = (id: string, totalMicros: number, status: 'success' | 'failed' = 'success') => ({ eventId: id, tenantId: 'acme', taskType: 'eval', model: 'm', status, totalMicros });

describe('cost baseline: history learned after live events', () => {
  it('equals observing the history first, then the live tasks (window, replays and failures alike)', () => {
    const history = Array.from({ length: 8 }, (_, i) => task(`h${i}`, 100 + i * 10, i === 3 ? 'failed' : 'success'));
    const live = [task('l0', 900), task('l1', 910), task('h7', 170)];
    const inOrder = new CostBaseline({ window: 5, minHistory: 3 });
    for (const t of [...history, ...live]) inOrder.observe(t);
    const late = new CostBaseline({ window: 5, minHistory: 3 });
    for (const t of live) late.observe(t);
    late.learnHistory(history);
    for (const model of ['', 'm']) expect(late.normal('acme', 'eval', 1, model)).toEqual(inOrder.normal('acme', 'eval', 1, model));
    // The window keeps the newest: 5 of [100 110 120 140 150 160 170 900 910] are 150 160 170 900 910.
    expect(late.normal('acme', 'eval', 1)).toMatchObject({ source: 'median', samples: 5, normalMicros: 170 });
  });
});
