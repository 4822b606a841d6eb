// A server for the API benchmark, in its own process so the load generator does not share its event loop.
// mode "hello": a fastify hello-world route; mode "forge": the whole Forge app on the embedded in-process parts.
import Fastify from 'fastify';
import { buildApp } from '../../api/app.ts';
import { KeyStore } from '../../api/auth.ts';
import { Guardrail } from '../../guard/index.ts';
import { InProcessLedger } from '../../guard/index.ts';
import { parseBandsConfig } from '../../rules/index.ts';
import { InProcessHaltBus } from '../../guard/index.ts';

const mode = process.argv[2];
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
if (mode === 'hello') {
  const app = Fastify();
  app.get('/hello', async () => ({ hello: 'world' }));
  // The same with a JSON body to parse: the hello-world of a POST route.
  app.post('/hello', async () => ({ hello: 'world' }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  process.stdout.write(JSON.stringify({ port: (app.server.address() as { port: number }).port }) + '\n');
} else {
  const keys = KeyStore.inMemory();
  const key = keys.createNow({ name: 'bench', roles: ['runner'], tenantId: null }).key;
  const bands = parseBandsConfig('global:\n  B_day_soft: 800000000\n  B_day_hard: 900000000\n  B_week_soft: 900000000\n  B_week_hard: 990000000\n  B_run_cap: 999999999\n  B_unit_cap: 100\n');
  const ledger = new InProcessLedger();
  const guardrail = new Guardrail({
    bands, ledger, bus: new InProcessHaltBus(), now: Date.now, onChange: () => {}, audit: async () => {},
    onError: (e) => console.error(e), reservationTtlMs: 60_000,
  });
  const app = await buildApp({ guardrail, keys, now: Date.now, onError: (e) => console.error(e) });
  setInterval(() => void guardrail.expireReservations(), 1000).unref();
  await app.listen({ host: '127.0.0.1', port: 0 });
  process.stdout.write(JSON.stringify({ port: (app.server.address() as { port: number }).port, key }) + '\n');
}
