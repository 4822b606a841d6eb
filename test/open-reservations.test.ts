import { describe, expect, it } from 'vitest';
import { lastReservationSerial, reservationIdFor, reservationSerialOf } from '../guard/ledger/reservation-id.ts';
import { OpenReservations } from '../guard/open-reservations.ts';

describe('OpenReservations: what a settle learns from, for the newest reservations made here', () => {
  it('gives back what an admission stored, once, and nothing for ids it does not hold', () => {
    const open = new OpenReservations(8);
    const id = reservationIdFor('t1', 'r1');
    expect(reservationSerialOf(id)).toBe(lastReservationSerial());
    open.set(id, lastReservationSerial(), 'eval', 1_500);
    const other = reservationIdFor('t1', 'r1');
    open.set(other, lastReservationSerial(), 'train', undefined);
    expect(open.take(id)).toEqual({ taskType: 'eval', runnerMicros: 1_500 });
    expect(open.take(id)).toBeUndefined();
    expect(open.take(other)).toEqual({ taskType: 'train', runnerMicros: undefined });
    // Another process's id (another random prefix), or not an id at all.
    expect(open.take(id.replace(/\.[A-Za-z0-9_-]{12}/, '.AAAAAAAAAAAA'))).toBeUndefined();
    expect(open.take('rsv_x')).toBeUndefined();
  });

  it('keeps only the newest `size`: an older one is overwritten and answers nothing', () => {
    const open = new OpenReservations(4);
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      ids.push(reservationIdFor('t2', 'r2'));
      open.set(ids[i]!, lastReservationSerial(), `type${i}`, i + 1);
    }
    expect(open.take(ids[0]!)).toBeUndefined();
    expect(open.take(ids[1]!)).toBeUndefined();
    expect([2, 3, 4, 5].map((i) => open.take(ids[i]!)?.taskType)).toEqual(['type2', 'type3', 'type4', 'type5']);
  });
});
