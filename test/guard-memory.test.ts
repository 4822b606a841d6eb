import { describe, expect, it } from 'vitest';
import { InProcessLedger } from '../guard/index.ts';

// Memory is bounded by configuration, not by traffic: the in-process ledger remembers at most
// maxEventIds event ids (oldest forgotten first).
describe('bounded memory', () => {
  it('the in-process ledger keeps at most maxEventIds ids', async () => {
    const l = new InProcessLedger({ maxEventIds: 2 });
    const scopes = ['global'];
    const now = Date.now();
    expect(await l.record('a', scopes, 1, now)).toBe(true);
    expect(await l.record('b', scopes, 1, now)).toBe(true);
    expect(await l.record('a', scopes, 1, now)).toBe(false); // still remembered
    expect(await l.record('c', scopes, 1, now)).toBe(true); // 'a' is forgotten to make room
    expect(await l.record('b', scopes, 1, now)).toBe(false);
    expect(await l.record('a', scopes, 1, now)).toBe(true); // past the bound: counted again
    expect((await l.snapshot('global', now)).dayMicros).toBe(4);
  });
});
