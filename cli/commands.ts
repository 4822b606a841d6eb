import { Option } from 'commander';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { parseSecretKey, sealConfigSecret } from '../accounts/index.ts';
import { ApiError, KeyStore, loadConfig, ROLES, type Role } from '../api/index.ts';
import { isStoreError, openStore, STORE_ERROR_CODES, type Store } from '../store/index.ts';
import { addCommand, CliInputError } from './registry.ts';

/**
 * Opens the store the way `forge start` does (embedded under FORGE_DATA_DIR, or FORGE_CLICKHOUSE_URL), runs
 * fn, closes it. The embedded store admits one process: a running server makes this one line, exit code 2.
 */
async function withStore<T>(what: string, instead: string, fn: (store: Store) => Promise<T>): Promise<T> {
  const config = loadConfig();
  let store: Store;
  try {
    store = await openStore({
      ...(config.FORGE_CLICKHOUSE_URL
        ? { url: config.FORGE_CLICKHOUSE_URL, username: config.FORGE_CLICKHOUSE_USER, password: config.FORGE_CLICKHOUSE_PASSWORD, database: config.FORGE_CLICKHOUSE_DATABASE, cluster: config.FORGE_CLICKHOUSE_CLUSTER }
        : { dataDir: join(config.FORGE_DATA_DIR, 'clickhouse') }),
    } as Parameters<typeof openStore>[0]);
  } catch (e) {
    if (isStoreError(e, STORE_ERROR_CODES.LOCKED)) {
      throw new CliInputError(`cannot ${what}: ${e.message} (a running Forge server): stop it first, or ${instead}`);
    }
    throw e;
  }
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** The key store over the store (importing a keys.json left by an older Forge once), for one command. */
function withKeys<T>(fn: (keys: KeyStore) => Promise<T>): Promise<T> {
  return withStore('manage API keys', 'create keys through its API (POST /v1/keys)', async (store) => {
    const ks = await KeyStore.open(store, { importFile: join(loadConfig().FORGE_DATA_DIR, 'keys.json') });
    try {
      return await fn(ks);
    } catch (e) {
      // The key store names API fields (name, expires_at); say the flag instead.
      if (e instanceof ApiError && e.field) throw new CliInputError(`--${e.field === 'expires_at' ? 'expires-at/--expires-in' : e.field.replace('_id', '')}: ${e.message.slice(e.field.length + 1)}`);
      throw e;
    } finally {
      ks.close();
    }
  });
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** --expires-in 30d / --expires-at ISO as epoch ms (null: no expiry). */
function expiryOf(o: { expiresIn?: string; expiresAt?: string }, now: number): number | null {
  if (o.expiresIn !== undefined) {
    const m = /^(\d{1,6})([smhd])$/.exec(o.expiresIn);
    if (!m || Number(m[1]) === 0) throw new CliInputError(`--expires-in: must be a positive duration like 90s, 30m, 12h or 30d, got "${o.expiresIn}"`);
    return now + Number(m[1]) * (UNIT_MS[m[2]!] as number);
  }
  if (o.expiresAt !== undefined) {
    const t = /^\d{4}-\d{2}-\d{2}/.test(o.expiresAt) ? Date.parse(o.expiresAt) : NaN;
    if (!Number.isFinite(t)) throw new CliInputError(`--expires-at: must be an ISO 8601 time, got "${o.expiresAt}"`);
    if (t <= now) throw new CliInputError(`--expires-at: must be in the future, got "${o.expiresAt}"`);
    return t;
  }
  return null;
}

addCommand((program, out) => {
  program
    .command('start')
    .description('run Forge: collector, rules, store, API and /metrics in one process (embedded by default)')
    .action(async () => {
      const { startForge } = await import('./forge-process.ts');
      const forge = await startForge();
      out.log(`forge: listening on ${forge.url} (data: ${forge.store.location}; docs: ${forge.url}/docs)`);
      if (forge.keys.list().length === 0) out.log('forge: no API keys yet: create the first with `npx forge keys create --name admin --role admin`');
      await new Promise<void>((resolve) => {
        const stop = (sig: string) => {
          out.log(`forge: ${sig}: shutting down (flushing the batch writer)`);
          forge
            .close()
            .then(() => {
              out.log('forge: stopped');
              resolve();
            })
            .catch((e: unknown) => {
              out.err(`forge: shutdown failed: ${(e as Error).message}`);
              resolve();
            });
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    });

  const keys = program.command('keys').description('API keys (stored hashed in the store under FORGE_DATA_DIR, or on FORGE_CLICKHOUSE_URL)');
  keys
    .command('create')
    .description('create an API key; it is printed once')
    .requiredOption('--name <name>', 'who or what uses the key')
    .addOption(new Option('--role <role...>', 'one or more roles').choices([...ROLES]).makeOptionMandatory())
    .option('--tenant <id>', 'bind the key to one tenant (default: all tenants)')
    .addOption(new Option('--expires-in <duration>', 'refuse the key after this long: <n>s, <n>m, <n>h or <n>d (e.g. 30d)').conflicts('expiresAt'))
    .option('--expires-at <time>', 'refuse the key after this ISO 8601 time')
    .action(async (o: { name: string; role: Role[]; tenant?: string; expiresIn?: string; expiresAt?: string }) => {
      if (o.tenant !== undefined && !/^[A-Za-z0-9._-]{1,64}$/.test(o.tenant)) throw new CliInputError(`--tenant: must be 1-64 letters, digits, dot, dash or underscore`);
      const expiresAt = expiryOf(o, Date.now());
      const made = await withKeys((ks) => ks.create({ name: o.name, roles: o.role, tenantId: o.tenant ?? null, expiresAt, actor: `cli (${userInfo().username})` }));
      out.log(made.key);
    });
  keys
    .command('list')
    .description('list API keys (never their secrets)')
    .action(async () => {
      for (const k of await withKeys(async (ks) => ks.list())) {
        out.log(`${k.id}  ${k.name}  roles=${k.roles.join(',')}  tenant=${k.tenantId ?? '*'}${k.expiresAt ? `  expires ${k.expiresAt}` : ''}${k.revokedAt ? `  revoked ${k.revokedAt}` : ''}`);
      }
    });
  keys
    .command('revoke')
    .argument('<id>', 'key id (from keys list)')
    .action(async (id: string) => {
      if (!(await withKeys((ks) => ks.revoke(id, `cli (${userInfo().username})`)))) throw new CliInputError(`no active key with id ${id}`);
      out.log(`revoked ${id}`);
    });

  program
    .command('accounts-seal')
    .description('seal a secret for the config (FORGE_OIDC_CLIENT_SECRET) with FORGE_ACCOUNTS_SECRET_KEY: reads it from stdin, prints the sealed value')
    .action(async () => {
      const key = loadConfig().FORGE_ACCOUNTS_SECRET_KEY;
      if (!key) throw new CliInputError('FORGE_ACCOUNTS_SECRET_KEY is not set');
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      const secret = Buffer.concat(chunks).toString('utf8').trim();
      if (secret === '') throw new CliInputError('no secret on stdin');
      out.log(sealConfigSecret(parseSecretKey(key, 'FORGE_ACCOUNTS_SECRET_KEY'), secret));
    });

  const audit = program.command('audit').description('the audit hash chains');
  audit
    .command('head')
    .description('print every hash chain head (log, tenant and its writer stream, seq, hash), to anchor them outside Forge')
    .option('--json', 'print one JSON object per line')
    .action(async (o: { json?: boolean }) => {
      const heads = await withStore('read the chain heads', 'check them through its API (GET /v1/audit/verify reports each recorded head)', (store) => store.chainHeads());
      for (const h of heads) {
        if (o.json) out.log(JSON.stringify({ log: h.log, tenant_id: h.tenantId, stream: h.stream, seq: h.seq, hash: h.hash, updated_at: new Date(h.updatedAt).toISOString() }));
        else out.log(`${h.log}\t${h.tenantId === '' ? '*' : h.tenantId}${h.stream === 0 ? '' : `/${h.stream}`}\t${h.seq}\t${h.hash}`);
      }
    });
});
