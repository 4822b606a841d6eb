import { randomUUID } from 'node:crypto';
import { createClient } from '@clickhouse/client';
import { openStore } from '../store/index.ts';
import { storeContract } from './helpers/store-contract.ts';

// The same contract against a ClickHouse server, when one is configured.
const url = process.env.FORGE_CLICKHOUSE_URL;

storeContract(
  `server ${url ?? '(FORGE_CLICKHOUSE_URL unset: skipped)'}`,
  async () => {
    const database = `forge_test_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
    const auth = { username: process.env.FORGE_CLICKHOUSE_USER ?? 'default', password: process.env.FORGE_CLICKHOUSE_PASSWORD ?? '' };
    const raw = createClient({ url, ...auth });
    return {
      open: (o) => openStore({ url, ...auth, database, ...o }),
      sql: async (q) => {
        await raw.command({ query: q.replaceAll('{db}', database) });
      },
      cleanup: async () => {
        await raw.command({ query: `DROP DATABASE IF EXISTS ${database}` });
        await raw.close();
      },
    };
  },
  { skip: !url },
);
