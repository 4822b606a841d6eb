// A simulated agent-evaluation task for the sample suite and the tests: it "works" for a while,
// heartbeating on stdout, then reports its usage and exits. Plain JS so it starts fast under node.
// Env: FORGE_SIM_DURATION_MS, FORGE_SIM_HEARTBEAT_MS (default 100), FORGE_SIM_EXIT_CODE (default 0),
// FORGE_SIM_HANG_AFTER_MS (stop heartbeating and never finish), FORGE_SIM_REPORT (JSON usage report),
// FORGE_SIM_PROGRESS (JSON LLM usage added per heartbeat, reported cumulatively as FORGE_PROGRESS lines).
const duration = Number(process.env.FORGE_SIM_DURATION_MS ?? '500');
const beatEvery = Number(process.env.FORGE_SIM_HEARTBEAT_MS ?? '100');
const exitCode = Number(process.env.FORGE_SIM_EXIT_CODE ?? '0');
const hangAfter = process.env.FORGE_SIM_HANG_AFTER_MS === undefined ? undefined : Number(process.env.FORGE_SIM_HANG_AFTER_MS);
const report = process.env.FORGE_SIM_REPORT;
const step = process.env.FORGE_SIM_PROGRESS === undefined ? undefined : JSON.parse(process.env.FORGE_SIM_PROGRESS);
let beats = 0;
const started = Date.now();

process.stdout.write(`started ${process.env.FORGE_TASK_ID ?? ''}\n`);
const beat = setInterval(() => {
  const elapsed = Date.now() - started;
  if (hangAfter !== undefined && elapsed >= hangAfter) {
    clearInterval(beat);
    setInterval(() => {}, 1 << 30); // silent and alive: a hung task
    return;
  }
  process.stdout.write(`heartbeat ${elapsed}\n`);
  if (step) {
    beats++;
    const llm = step.llm.map((u) => ({ model: u.model, inputTokens: u.inputTokens * beats, outputTokens: u.outputTokens * beats }));
    process.stdout.write(`FORGE_PROGRESS ${JSON.stringify({ runtimeMs: elapsed, llm })}\n`);
  }
}, beatEvery);

if (hangAfter === undefined) {
  setTimeout(() => {
    clearInterval(beat);
    // The simulated work time is the configured duration (process start-up is not task time).
    if (report) process.stdout.write(`FORGE_REPORT ${JSON.stringify({ runtimeMs: duration, ...JSON.parse(report) })}\n`);
    process.exitCode = exitCode;
  }, duration);
}
process.on('SIGTERM', () => {
  process.stdout.write('terminated\n');
  process.exit(143);
});
