/**
 * Writes the Grafana dashboards the code defines into grafana/dashboards/ (`npm run dashboards:build`).
 * `--check` writes nothing and exits 1 when a committed file differs from what the code generates.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generatedDashboards } from './generate.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');
let stale = 0;
for (const f of generatedDashboards()) {
  const file = join(root, f.path);
  let current: string | undefined;
  try {
    current = readFileSync(file, 'utf8');
  } catch {
    current = undefined;
  }
  if (current === f.text) {
    console.log(`unchanged ${f.path}`);
    continue;
  }
  if (check) {
    stale++;
    console.error(`stale     ${f.path} (run npm run dashboards:build)`);
    continue;
  }
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, f.text);
  console.log(`wrote     ${f.path}`);
}
if (stale > 0) process.exitCode = 1;
