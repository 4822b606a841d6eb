import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startForge, type RunningForge } from '../cli/forge-process.ts';
import { ControlSnapshots, capCountersOfRows, spendOfRows } from '../guard/index.ts';
import { COMPONENTS } from '../rules/index.ts';
import { openStore, type RunDayTotals, type Store } from '../store/index.ts';
import { bandsYaml, startForgeProcess } from './helpers/forge-process.ts';
import { DAY_MS, HOUR_MS, makeEvent } from './helpers/store-events.ts';

// Snapshots of the control state's spend (issue 20): a start loads the newest valid snapshot and reads only
// the log since its watermark (per tenant stream, the chain seq: insertion order). Whatever arrived after it
// (late events with old timestamps, a replay that reached the table twice, a new tenant, rows past a recorded
// chain head) must give exactly what the full recompute (FINAL over the whole log) gives; a snapshot cut short,
// changed or absent must not be used.

const dirs: string[] = [];
const open: Array<{ close(): Promise<void> }> = [];
// A failed test must not leave its embedded store open for the next one (one data directory per process).
afterEach(async () => {
  for (const o of open.splice(0)) await o.close().catch(() => undefined);
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'forge-snapshot-'));
  dirs.push(dir);
  return dir;
}

const NOW = Date.parse('2026-03-10T10:00:00Z');

async function storeAt(dir: string): Promise<Store> {
  const s = await openStore({ dataDir: join(dir, 'clickhouse') });
  open.push(s);
  return s;
}

async function closeStore(s: Store): Promise<void> {
  open.splice(open.indexOf(s), 1);
  await s.close();
}

/** Events i in [from, to) of a tenant, spread over the 6 days before NOW (several runs, days and statuses). */
function history(tenantId: string, from: number, to: number, at = (i: number) => NOW - 6 * DAY_MS + i * 37 * 60_000) {
  return Array.from({ length: to - from }, (_, k) => makeEvent(from + k, { tenantId, eventTime: at(from + k) }));
}

/** A replay that reached the table twice (a racing writer): copies of stored rows under later chain seqs. */
async function storeTwice(s: Store, tenantId: string, where: string): Promise<number> {
  await s.client.command({
    // (The filter in a subquery: a REPLACE alias would shadow the column in the WHERE.)
    query: `INSERT INTO ${s.database}.cost_events SELECT * REPLACE (seq + 1000000 AS seq) FROM (SELECT * FROM ${s.database}.cost_events WHERE tenant_id = {t:String} AND ${where})`,
    query_params: { t: tenantId },
    clickhouse_settings: { insert_deduplicate: 0, insert_deduplication_token: randomUUID() },
  });
  const rs = await s.client.query({ query: `SELECT count() AS c FROM ${s.database}.cost_events WHERE tenant_id = {t:String} AND seq > 1000000`, query_params: { t: tenantId }, format: 'JSONEachRow' });
  return Number((await rs.json<{ c: string }>())[0]?.c);
}

function norm(rows: readonly RunDayTotals[]): string[] {
  return rows.map((g) => `${g.tenantId}/${g.runId}/${g.day} ${COMPONENTS.map((k) => g.components[k]).join(',')} ${g.totalMicros} ${g.tasks} ${g.succeeded} ${g.failed} ${g.retried}`).sort();
}

/** The loaded groups equal the full recompute's (FINAL over the whole log), and so do the spend and counters. */
async function expectExact(s: Store, loaded: readonly RunDayTotals[]): Promise<void> {
  const full = await s.runDayTotals({ from: 0, to: NOW + DAY_MS });
  expect(full.length).toBeGreaterThan(0);
  expect(norm(loaded)).toEqual(norm(full));
  expect(spendOfRows(loaded)).toEqual(spendOfRows(full));
  expect(capCountersOfRows(loaded, NOW)).toEqual(capCountersOfRows(full, NOW));
}

describe('a start from a snapshot plus the log since it', () => {
  it('gives exactly the full recompute: late events, replays stored twice, a new tenant, rows past a recorded head', async () => {
    const dir = tempDir();
    const s1 = await storeAt(dir);
    // No merge collapses a copy before the test lets one (a copy is then seen next to its original).
    await s1.client.command({ query: `SYSTEM STOP MERGES ${s1.database}.cost_events` });
    await s1.writer.write([...history('acme', 0, 200), ...history('beta', 0, 120)]);
    const before = new ControlSnapshots(s1);
    expect((await before.load()).origin).toBe('log');
    const taken = await before.take();
    expect(taken?.groups).toBeGreaterThan(10);

    // After the snapshot: new events; late ones (finalized 5 days ago, on days the snapshot holds); a replay
    // through the writer (refused as a duplicate); replays that reached the table twice, of rows the snapshot
    // holds and of rows after it; a tenant the snapshot does not know; rows past the recorded chain head.
    await s1.writer.write(history('acme', 200, 260));
    const late = history('acme', 1000, 1040, (i) => NOW - 5 * DAY_MS + i * 1000);
    await s1.writer.write(late);
    expect((await s1.writer.write(history('beta', 0, 30))).stored).toBe(0);
    expect(await storeTwice(s1, 'beta', 'seq <= 25')).toBe(25);
    expect(await storeTwice(s1, 'acme', 'seq > 230 AND seq <= 1000000')).toBeGreaterThan(50);
    await s1.writer.write(history('gamma', 0, 15));
    // A writer stopped between its rows and its head record: rows past the recorded head.
    await s1.client.command({
      query: `INSERT INTO ${s1.database}.cost_events SELECT * REPLACE (concat(event_id, '-past') AS event_id, seq + 2000000 AS seq) FROM (SELECT * FROM ${s1.database}.cost_events WHERE tenant_id = 'gamma' AND seq <= 5)`,
      clickhouse_settings: { insert_deduplicate: 0, insert_deduplication_token: randomUUID() },
    });
    // While both copies are stored, a copy of a key the snapshot holds is recognised by its key: nothing of beta.
    const since = await s1.runDayTotalsSince((await s1.latestControlSnapshot()).snapshot!.watermark);
    expect(since.groups.filter((g) => g.tenantId === 'beta')).toEqual([]);
    expect(since.groups.filter((g) => g.tenantId === 'gamma').reduce((a, g) => a + g.tasks, 0)).toBe(20);
    // Then a merge collapses each older copy into its newer one (ReplacingMergeTree keeps the last inserted):
    // beta's keys are then seen only past the watermark, and its count of rows up to the watermark moved.
    await s1.client.command({ query: `SYSTEM START MERGES ${s1.database}.cost_events` });
    await s1.client.command({ query: `OPTIMIZE TABLE ${s1.database}.cost_events FINAL` });
    await closeStore(s1);

    // The restart, from the snapshot: only the log since it is read.
    const s2 = await storeAt(dir);
    const after = new ControlSnapshots(s2);
    const loaded = await after.load();
    expect(loaded).toMatchObject({ origin: 'snapshot', snapshotId: taken?.id, streamsReread: ['beta'] });
    expect(loaded.groupsRead).toBeGreaterThan(0);
    expect(loaded.groupsRead).toBeLessThan(taken!.groups);
    await expectExact(s2, await after.runDays(NOW));
    // The background check agrees, and a snapshot taken now is exact too (replays still counted once).
    expect((await after.verify()).differing).toEqual([]);
    const again = await after.take();
    await closeStore(s2);
    const s3 = await storeAt(dir);
    const third = new ControlSnapshots(s3);
    expect(await third.load()).toEqual({ origin: 'snapshot', snapshotId: again?.id, groupsRead: 0, streamsReread: [] });
    await expectExact(s3, await third.runDays(NOW));
    await closeStore(s3);
  }, 120_000);

  it('forge start: the guard holds exactly the spend the full recompute gives it, and the check finds nothing to correct', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'bands.yaml'), bandsYaml({ acme: { B_day_soft: 1e6, B_day_hard: 1e6 } }));
    const env = { FORGE_DATA_DIR: dir, FORGE_PORT: '0', FORGE_LOG_LEVEL: 'silent', FORGE_BUDGETS_FILE: join(dir, 'bands.yaml') };
    const logged: string[] = [];
    const start = async (): Promise<RunningForge> => {
      const f = await startForge({ env, now: () => NOW, log: (l) => logged.push(l) });
      open.push(f);
      return f;
    };
    const stop = async (f: RunningForge): Promise<void> => {
      open.splice(open.indexOf(f), 1);
      await f.close();
    };
    const s = await storeAt(dir);
    await s.writer.write(history('acme', 0, 150));
    await closeStore(s);
    // First start: no snapshot, the whole log; the clean shutdown leaves one.
    const first = await start();
    expect(first.spendLoaded.origin).toBe('log');
    await first.controlCheck;
    await stop(first);
    const s2 = await storeAt(dir);
    await s2.writer.write(history('acme', 1000, 1030, (i) => NOW - 4 * DAY_MS + i));
    expect(await storeTwice(s2, 'acme', 'seq <= 40')).toBe(40);
    await closeStore(s2);

    const second = await start();
    expect(second.spendLoaded.origin).toBe('snapshot');
    expect(second.spendLoaded.groupsRead).toBeGreaterThan(0);
    const scopes = second.guardrail.knownScopes().sort();
    expect(scopes).toEqual(expect.arrayContaining(['global', 'tenant:acme', 'run:acme/run-0']));
    const loaded = scopes.map((sc) => [sc, second.guardrail.totals(sc)]);
    await second.controlCheck;
    expect(logged.filter((l) => /differed/.test(l))).toEqual([]);
    // The authority: the full recompute over FINAL re-bases every scope; nothing moves.
    await second.rollup();
    expect(scopes.map((sc) => [sc, second.guardrail.totals(sc)])).toEqual(loaded);
    const expectedRun = history('acme', 0, 150).concat(history('acme', 1000, 1030)).reduce((a, e) => a + e.totalMicros - e.storageMicros, 0);
    expect(second.guardrail.totals('tenant:acme').runMicros).toBe(expectedRun);
    await stop(second);
  }, 120_000);

  it('after a crash (no clean shutdown) the newest snapshot and the log since it still give the exact totals', async () => {
    const dir = tempDir();
    const tenants = { acme: { B_day_soft: 1e6, B_day_hard: 1e6 } };
    // A real process, snapshots every second (the periodic ones), killed with SIGKILL after more events.
    const proc = await startForgeProcess({ FORGE_DATA_DIR: dir, FORGE_ROLLUP_INTERVAL_MS: '1000' }, bandsYaml(tenants));
    const post = async (evs: unknown[]) => {
      const r = await fetch(`${proc.url}/v1/events`, { method: 'POST', headers: { authorization: `Bearer ${proc.key}`, 'content-type': 'application/json' }, body: JSON.stringify({ events: evs }) });
      expect(r.status, await r.clone().text()).toBe(200);
      return (await r.json()) as { accepted: Array<{ duplicate: boolean }> };
    };
    const now = Date.now();
    const json = (prefix: string, n: number, at: (i: number) => number) =>
      Array.from({ length: n }, (_, i) => ({ event_id: `${prefix}-${i}`, tenant_id: 'acme', run_id: `r-${i % 4}`, task_id: `${prefix}-${i}`, task_type: 'eval', environment: 'cpu-standard', status: i % 7 === 0 ? 'failed' : 'success', finalized_at: new Date(at(i)).toISOString(), rli_eval_usd: `0.${String(100 + i).padStart(3, '0')}`, task_hours: '0' }));
    try {
      await post(json('a', 60, (i) => now - 2 * DAY_MS + i * HOUR_MS / 4));
      await new Promise((r) => setTimeout(r, 2500));
      // Late events (three days ago) and a replay, after the snapshots so far.
      await post(json('late', 20, (i) => now - 3 * DAY_MS + i));
      expect((await post(json('a', 10, (i) => now - 2 * DAY_MS + i * HOUR_MS / 4))).accepted.every((a) => a.duplicate)).toBe(true);
      await new Promise((r) => setTimeout(r, 1500));
      await post(json('b', 25, (i) => now - 1000 - i));
    } finally {
      proc.child.kill('SIGKILL');
      await proc.stop();
    }
    const s = await storeAt(dir);
    const snaps = new ControlSnapshots(s);
    const loaded = await snaps.load();
    expect(loaded.origin).toBe('snapshot');
    const rows = await snaps.runDays(Date.now());
    const full = await s.runDayTotals({ from: 0, to: Date.now() + DAY_MS });
    expect(norm(rows)).toEqual(norm(full));
    expect(rows.reduce((a, g) => a + g.tasks, 0)).toBe(60 + 20 + 25);
    expect((await snaps.verify()).differing).toEqual([]);
    await closeStore(s);
  }, 120_000);

  it('a snapshot changed or cut short is not used: the next older one is, else the whole log', async () => {
    const dir = tempDir();
    const s = await storeAt(dir);
    const logged: string[] = [];
    const fresh = () => new ControlSnapshots(s, { log: (l) => logged.push(l) });
    // No snapshot at all: the whole log.
    await s.writer.write(history('acme', 0, 120));
    const none = fresh();
    expect((await none.load()).origin).toBe('log');
    await expectExact(s, await none.runDays(NOW));
    const older = await none.take(Date.now() - 2 * HOUR_MS);
    await s.writer.write(history('acme', 120, 180));
    const newer = await none.take(Date.now() - HOUR_MS);
    await s.writer.write(history('acme', 180, 200));
    const sync = { mutations_sync: '2' } as const;

    // The newest changed (one group's total): the older one plus the log since it.
    await s.client.command({ query: `ALTER TABLE ${s.database}.control_snapshot_groups UPDATE total_micros = total_micros + 1 WHERE snapshot_id = {id:String} AND run_id = 'run-1'`, query_params: { id: newer!.id }, clickhouse_settings: sync });
    const a = fresh();
    expect(await a.load()).toMatchObject({ origin: 'snapshot', snapshotId: older!.id });
    expect(logged.at(-1)).toMatch(new RegExp(`control snapshot ${newer!.id} .* not used: checksum mismatch`));
    await expectExact(s, await a.runDays(NOW));

    // The older one cut short (a group row missing) as well: the whole log.
    await s.client.command({ query: `ALTER TABLE ${s.database}.control_snapshot_groups DELETE WHERE snapshot_id = {id:String} AND run_id = 'run-2'`, query_params: { id: older!.id }, clickhouse_settings: sync });
    const b = fresh();
    expect((await b.load()).origin).toBe('log');
    expect(logged.at(-1)).toMatch(new RegExp(`control snapshot ${older!.id} .* not used: \\d+ of \\d+ groups`));
    await expectExact(s, await b.runDays(NOW));

    // Groups whose header never came (a crash between the two inserts) are no snapshot at all.
    await s.client.insert({ table: `${s.database}.control_snapshot_groups`, values: [{ snapshot_id: 'cut-short', taken_at: Date.now(), tenant_id: 'acme', run_id: 'run-0', day: '2026-03-09', components: { rli: 1 }, total_micros: 1, tasks: 1, succeeded: 1, failed: 0, retried: 0 }], format: 'JSONEachRow' });
    const c = fresh();
    expect((await c.load()).origin).toBe('log');
    await expectExact(s, await c.runDays(NOW));
    await closeStore(s);
  }, 120_000);
});
