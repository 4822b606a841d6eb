import { createClient } from '@clickhouse/client';
import { createChdbConnection } from 'chdb/connection';
import { openStore } from '../store/index.ts';
import { storeContract } from './helpers/store-contract.ts';
import { tempDataDir } from './helpers/store-events.ts';

// One data directory for this file (the embedded engine binds one per process); tests isolate by tenant.
storeContract('embedded chdb', async () => {
  const tmp = tempDataDir('forge-store-contract');
  // Behind the store's back: a second connection on the same directory (chdb lets them coexist).
  const raw = createClient({ connection: createChdbConnection({ path: tmp.dir }) as never });
  return {
    open: (o) => openStore({ dataDir: tmp.dir, ...o }),
    sql: async (q) => {
      await raw.command({ query: q.replaceAll('{db}', 'forge') });
    },
    cleanup: async () => {
      await raw.close();
      tmp.remove();
    },
  };
});
