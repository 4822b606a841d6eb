import { Option } from 'commander';
import { join } from 'node:path';
import { KeyStore, loadConfig, ROLES, type Role } from '../api/index.ts';
import { addCommand, CliInputError } from './registry.ts';

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

  const keys = program.command('keys').description('API keys (stored hashed under FORGE_DATA_DIR)');
  keys
    .command('create')
    .description('create an API key; it is printed once')
    .requiredOption('--name <name>', 'who or what uses the key')
    .addOption(new Option('--role <role...>', 'one or more roles').choices([...ROLES]).makeOptionMandatory())
    .option('--tenant <id>', 'bind the key to one tenant (default: all tenants)')
    .action((o: { name: string; role: Role[]; tenant?: string }) => {
      if (o.tenant !== undefined && !/^[A-Za-z0-9._-]{1,64}$/.test(o.tenant)) throw new CliInputError(`--tenant: must be 1-64 letters, digits, dot, dash or underscore`);
      const cfg = loadConfig();
      const store = new KeyStore(join(cfg.FORGE_DATA_DIR, 'keys.json'));
      const made = store.create({ name: o.name, roles: o.role, tenantId: o.tenant ?? null });
      out.log(made.key);
    });
  keys
    .command('list')
    .description('list API keys (never their secrets)')
    .action(() => {
      const cfg = loadConfig();
      for (const k of new KeyStore(join(cfg.FORGE_DATA_DIR, 'keys.json')).list()) {
        out.log(`${k.id}  ${k.name}  roles=${k.roles.join(',')}  tenant=${k.tenantId ?? '*'}${k.revokedAt ? `  revoked ${k.revokedAt}` : ''}`);
      }
    });
  keys
    .command('revoke')
    .argument('<id>', 'key id (from keys list)')
    .action((id: string) => {
      const cfg = loadConfig();
      if (!new KeyStore(join(cfg.FORGE_DATA_DIR, 'keys.json')).revoke(id)) throw new CliInputError(`no active key with id ${id}`);
      out.log(`revoked ${id}`);
    });
});
