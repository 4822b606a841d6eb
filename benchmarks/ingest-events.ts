/**
 * The ingest benchmark's events: one generator for the benchmark (which prices the same events for its raw
 * baseline) and for its load generator in another process (benchmarks/servers/ingest-load.ts), so both
 * sides build the same bytes.
 */
export function ingestEvent(i: number, prefix: string, t0: number) {
  return {
    event_id: `${prefix}-${i}`,
    tenant_id: 'bench',
    run_id: 'run-1',
    task_id: `task-${i}`,
    task_type: 'eval',
    model: 'gpt-4o',
    environment: 'gpu-a10',
    status: i % 10 === 0 ? 'failed' : 'success',
    finalized_at: t0 + i,
    rli_eval_usd: '0.10',
    gas: { gas_used: 21000 + (i % 1000), gas_price_gwei: '30', chain_id: 1 },
    task_hours: '0.25',
    llm: [{ model: 'gpt-4o', input_tokens: 1000 + i, output_tokens: 200 }],
  };
}

/** `events` events as JSON request bodies `{ "events": [...] }` of `batch` each (event i is ingestEvent(i)). */
export function ingestBodies(events: number, batch: number, prefix: string, t0: number): string[] {
  const bodies: string[] = [];
  for (let b = 0; b * batch < events; b++) {
    const n = Math.min(batch, events - b * batch);
    bodies.push(JSON.stringify({ events: Array.from({ length: n }, (_, k) => ingestEvent(b * batch + k, prefix, t0)) }));
  }
  return bodies;
}
