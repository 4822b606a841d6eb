import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const DIR = 'alerts/prometheus';

// The platform rules (API errors, latency, worker saturation, dead runner, kills) under promtool's own
// unit tests: each fires on its scenario and stays quiet on the healthy series beside it.
describe('platform alert rules', () => {
  it('promtool check rules and promtool test rules pass', async () => {
    const check = await run('/usr/bin/promtool', ['check', 'rules', `${DIR}/forge-platform.rules.yml`]);
    expect(check.stdout).toMatch(/SUCCESS: 5 rules found/);
    const unit = await run('/usr/bin/promtool', ['test', 'rules', 'forge-platform.test.yml'], { cwd: DIR });
    expect(unit.stdout).toContain('SUCCESS');
  });
});
