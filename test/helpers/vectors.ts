import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The worked examples of the cost model (../shared/cost-model-vectors.json beside the repo). */
export interface Vectors {
  operations: Array<{ name: string; input: Record<string, string | number>; expect: Record<string, string> }>;
  scenarios: Array<{
    name: string;
    bands: Record<string, string | number>;
    history?: Record<string, string>;
    events: Array<{ at: string; total: string; failed?: boolean }>;
    expect: Array<{ state: string; holds: string[]; day_usd: string; week_usd: string; run_usd: string }>;
  }>;
}

export function loadVectors(): Vectors {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const candidates = [process.env.FORGE_VECTORS, join(root, '..', 'shared', 'cost-model-vectors.json'), join(root, 'test', 'fixtures', 'cost-model-vectors.json')];
  for (const c of candidates) {
    if (!c) continue;
    try {
      return JSON.parse(readFileSync(c, 'utf8')) as Vectors;
    } catch {
      /* try the next place */
    }
  }
  throw new Error('cost-model-vectors.json not found (expected ../shared beside the repo)');
}
