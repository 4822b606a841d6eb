import { describe, expect, it } from 'vitest';
import { runnerConfigFromEnv } from '../runner/index.ts';

describe('runner configuration from the environment', () => {
  const base = { FORGE_REDIS_URL: 'redis://127.0.0.1:6379', FORGE_API_KEY: 'k' };

  it('has defaults for everything but the Redis URL and the API key', () => {
    expect(runnerConfigFromEnv(base)).toMatchObject({
      FORGE_REDIS_PREFIX: 'forge:',
      FORGE_API_URL: 'http://127.0.0.1:8080',
      FORGE_RUNNER_QUEUE: 'forge-tasks',
      FORGE_RUNNER_CONCURRENCY: 2,
      FORGE_RUNNER_HEARTBEAT_TIMEOUT_MS: 60_000,
      FORGE_RUNNER_INTAKE_SCOPES: [],
    });
    expect(runnerConfigFromEnv({ ...base, FORGE_RUNNER_INTAKE_SCOPES: 'tenant:demo, run:demo/pilot-1' }).FORGE_RUNNER_INTAKE_SCOPES).toEqual(['tenant:demo', 'run:demo/pilot-1']);
  });

  it('fails fast naming the variable', () => {
    expect(() => runnerConfigFromEnv({ FORGE_API_KEY: 'k' })).toThrow(expect.objectContaining({ code: 'FORGE_ERR_RUNNER_CONFIG', field: 'FORGE_REDIS_URL' }));
    expect(() => runnerConfigFromEnv({ ...base, FORGE_REDIS_URL: 'http://x' })).toThrow(/FORGE_REDIS_URL: must be a redis:\/\//);
    expect(() => runnerConfigFromEnv({ ...base, FORGE_RUNNER_CONCURRENCY: '0' })).toThrow(expect.objectContaining({ field: 'FORGE_RUNNER_CONCURRENCY' }));
    expect(() => runnerConfigFromEnv({ ...base, FORGE_RUNNER_INTAKE_SCOPES: 'tenants:x' })).toThrow(expect.objectContaining({ field: 'FORGE_RUNNER_INTAKE_SCOPES' }));
  });
});
