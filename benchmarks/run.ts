import { readdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Benchmark, BenchResult } from './harness.ts';

const here = dirname(fileURLToPath(import.meta.url));

export async function loadBenchmarks(): Promise<Benchmark[]> {
  const files = readdirSync(here).filter((f) => f.endsWith('.bench.ts')).sort();
  const out: Benchmark[] = [];
  for (const f of files) out.push((await import(pathToFileURL(join(here, f)).href)).default as Benchmark);
  return out;
}

function fmt(n: number | undefined): string {
  if (n === undefined || Number.isNaN(n)) return '—';
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US');
  return Number(n.toPrecision(4)).toString();
}

function render(results: Array<{ b: Benchmark; r: BenchResult; seconds: number }>): string {
  const c = cpus();
  const lines = [
    '# Benchmark results',
    '',
    `Written by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)}.`,
    `Machine: ${c.length} cores (${c[0]?.model ?? 'unknown'}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${process.platform}/${process.arch}.`,
    'Shared, noisy machine: figures are medians of repeated runs; compare ratios, not absolutes.',
    '',
  ];
  for (const { b, r, seconds } of results) {
    lines.push(`## ${b.name}`, '', b.description, '', `Command: \`npm run bench -- ${b.name}\` (took ${seconds.toFixed(1)} s)`, '');
    lines.push('| metric | Forge | baseline (same run) | baseline | ratio | target |', '| --- | --- | --- | --- | --- | --- |');
    for (const row of r.rows) {
      lines.push(
        `| ${row.metric} | ${fmt(row.value)} ${row.unit} | ${row.baselineLabel} | ${fmt(row.baseline)} ${row.unit} | ${row.ratio === undefined ? '—' : fmt(row.ratio) + '×'} | ${row.target ?? ''} |`,
      );
    }
    for (const n of r.notes ?? []) lines.push('', n);
    lines.push('');
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const only = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const all = await loadBenchmarks();
  const chosen = only.length ? all.filter((b) => only.includes(b.name)) : all;
  if (only.length && chosen.length !== only.length) {
    console.error(`unknown benchmark; have: ${all.map((b) => b.name).join(', ')}`);
    process.exitCode = 2;
    return;
  }
  const results: Array<{ b: Benchmark; r: BenchResult; seconds: number }> = [];
  for (const b of chosen) {
    console.log(`== ${b.name}`);
    const t0 = performance.now();
    const r = await b.run('full');
    const seconds = (performance.now() - t0) / 1000;
    for (const row of r.rows) console.log(`  ${row.metric}: ${fmt(row.value)} ${row.unit} vs ${row.baselineLabel} ${fmt(row.baseline)} (ratio ${fmt(row.ratio)})`);
    results.push({ b, r, seconds });
  }
  const md = render(results);
  // A partial run (named benchmarks) writes its own file so RESULTS.md always holds a whole run.
  writeFileSync(join(here, only.length ? 'RESULTS.partial.md' : 'RESULTS.md'), md + '\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
