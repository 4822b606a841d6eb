// One Forge API process for the benchmarks (own data dir; shared state through FORGE_REDIS_URL when set).
// Prints {"url", "key"} on its first line; SIGTERM stops it cleanly.
import { startForge } from '../../cli/forge-process.ts';

const forge = await startForge({ log: (l) => process.stderr.write(l + '\n') });
const key = (await forge.keys.create({ name: 'bench', roles: ['runner', 'oncall', 'finance', 'admin'], tenantId: null })).key;
process.stdout.write(JSON.stringify({ url: forge.url, key }) + '\n');
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => {
    void forge.close().then(() => process.exit(0));
  });
}
