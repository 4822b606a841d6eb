import { existsSync, readFileSync, statSync } from 'node:fs';
import { Option } from 'commander';
import { microsToUsd } from '../rules/index.ts';
import { addCommand, CliInputError } from './registry.ts';

interface EvalOptions {
  suite: string;
  agent?: string;
  name?: string;
  tenant: string;
  run?: string;
  concurrency: string;
  publish?: boolean;
  executor: string;
  namespace: string;
  runtimeImage: string;
  kubeconfig?: string;
}

/**
 * `forge eval --suite config/eval/healthcare-v1.yaml [--agent DIR|ZIP|AGENT_ID]`: the successor of
 * `forge run --suite` for scored suites. Embedded Forge in this process; the agent (default: the reference
 * agent) is stored, run over every task under the guardrail, scored, and the pass rate and cost per successful
 * task printed; the run is on the leaderboard (GET /v1/eval/leaderboards/{suite}, page /eval).
 */
addCommand((program, out) => {
  program
    .command('eval')
    .description('run an agent over a scored eval suite through the guardrail (embedded Forge) and print pass rate and cost per successful task')
    .requiredOption('--suite <file>', 'an eval suite YAML file (e.g. config/eval/healthcare-v1.yaml)')
    .option('--agent <dir|zip|id>', 'the agent: a directory or ZIP with forge-agent.json, or the id of a stored agent (default: the reference agent)')
    .option('--name <name>', 'the agent name to store (default: the directory or file name)')
    .addOption(new Option('--tenant <id>', 'tenant').default('demo'))
    .option('--run <id>', 'run id (default: eval-<time>); an existing run id resumes that run')
    .addOption(new Option('--concurrency <n>', 'tasks at once').default('2'))
    .option('--publish', 'show the run on the public leaderboard')
    .addOption(new Option('--executor <kind>', 'where agents run').choices(['local', 'kubernetes']).default('local'))
    .addOption(new Option('--namespace <ns>', 'kubernetes: the namespace of the Jobs').default('forge-eval'))
    .addOption(new Option('--runtime-image <image>', 'kubernetes: the image ZIP agents run in').default('node:20-bookworm-slim'))
    .option('--kubeconfig <file>', 'kubernetes: a kubeconfig (default: KUBECONFIG, ~/.kube/config or in-cluster)')
    .action(async (o: EvalOptions) => {
      const concurrency = Number(o.concurrency);
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) throw new CliInputError(`--concurrency: must be a whole number 1-64, got "${o.concurrency}"`);
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(o.tenant)) throw new CliInputError('--tenant: must be 1-64 letters, digits, dot, dash or underscore');
      const runId = o.run ?? `eval-${new Date().toISOString().replace(/[-:.TZ]/g, '').slice(0, 14)}`;
      if (!/^[A-Za-z0-9._:-]{1,128}$/.test(runId)) throw new CliInputError('--run: must be 1-128 letters, digits, dot, colon, dash or underscore');
      const ev = await import('../eval/index.ts');
      const suite = ev.loadEvalSuite(o.suite); // FORGE_ERR_SUITE_CONFIG: exit 2
      const agentArg = o.agent ?? ev.REFERENCE_AGENT_DIR;
      const byId = /^[0-9a-f]{64}$/.test(agentArg) && !existsSync(agentArg);
      if (!byId && !existsSync(agentArg)) throw new CliInputError(`--agent: no such directory, ZIP or agent id: ${agentArg}`);

      const { startForge } = await import('./forge-process.ts');
      const { embeddedEvalEngine } = await import('./eval-engine.ts');
      const forge = await startForge({ env: { ...process.env, FORGE_PORT: process.env.FORGE_PORT ?? '0' } });
      const stopping = new AbortController();
      const onSignal = (): void => stopping.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      let temp: { id: string; key: string } | undefined;
      try {
        let agentId = agentArg;
        if (!byId) {
          const bytes = statSync(agentArg).isDirectory() ? ev.packAgentDir(agentArg) : readFileSync(agentArg);
          const name = o.name ?? (agentArg === ev.REFERENCE_AGENT_DIR ? 'reference-agent' : agentArg.replace(/\/+$/, '').split('/').pop()!);
          const a = await forge.agents.put(o.tenant, { kind: 'zip', name, bytes });
          agentId = a.agent_id;
          out.log(`agent ${a.name}: ${a.agent_id} (${a.size_bytes} bytes, ${a.file_count} files)`);
        }
        temp = await forge.keys.create({ name: `forge eval ${suite.suite} (temporary)`, roles: ['runner'], tenantId: o.tenant });
        const judgeCfg = ev.judgeConfigFromEnv(process.env);
        const executor =
          o.executor === 'kubernetes'
            ? new ev.KubernetesJobExecutor(await ev.kubeJobApi(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}), { namespace: o.namespace, runtimeImage: o.runtimeImage })
            : new ev.LocalProcessExecutor();
        const engine = embeddedEvalEngine(forge, {
          apiKey: temp.key,
          executor,
          environment: suite.environment,
          ...(judgeCfg ? { judge: ev.openAiJudge(judgeCfg) } : {}),
          signal: stopping.signal,
          onError: (e, where) => out.err(`forge: ${where}: ${e instanceof Error ? e.message : String(e)}`),
        });
        out.log(`forge: embedded Forge on ${forge.url}; leaderboard ${forge.url}/eval?suite=${suite.suite}; judge ${judgeCfg ? judgeCfg.baseUrl : 'off (judge checks skipped)'}; network isolation ${ev.networkIsolationAvailable() ? 'on' : 'OFF'}`);
        const report = await engine.run({
          tenantId: o.tenant,
          runId,
          suite,
          agentId,
          concurrency,
          ...(o.publish ? { publish: true } : {}),
          signal: stopping.signal,
          onTask: (t) => out.log(`task ${t.taskId}: ${t.status}, score ${(t.scoreMilli / 1000).toFixed(3)}, ${microsToUsd(t.costTotalMicros)} USD${t.error ? ` (${t.error.slice(0, 160)})` : ''}`),
        });
        out.log(ev.reportLine(report));
        out.log(`pass rate: ${(report.passRate * 100).toFixed(1)}%`);
        out.log(`cost per successful task: ${report.costPerSuccessMicros === null ? 'n/a' : `${microsToUsd(report.costPerSuccessMicros)} USD`}`);
        out.log(`run view: ${forge.url}/eval/run?tenant=${o.tenant}&run=${encodeURIComponent(runId)}`);
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        if (temp) await forge.keys.revoke(temp.id);
        await forge.close();
      }
    });
});
