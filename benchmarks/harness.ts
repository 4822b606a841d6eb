import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { pathToFileURL } from 'node:url';
/**
 * The benchmark contract. Each `benchmarks/*.bench.ts` default-exports a Benchmark. `npm run bench`
 * runs them all at full size and rewrites RESULTS.md; the test suite runs them at tiny size as a
 * smoke test (that they run and produce figures, never how fast).
 */
export type BenchSize = 'full' | 'tiny';

export interface BenchRow {
  /** What is measured, e.g. "guardrail decision p99". */
  metric: string;
  /** Forge's figure. */
  value: number;
  /** Unit of value and baseline, e.g. "µs", "events/s", "USD". */
  unit: string;
  /** What Forge is compared with, measured in the same run. */
  baselineLabel: string;
  baseline: number;
  /** value / baseline, or a statement when a ratio makes no sense (e.g. baseline 0). */
  ratio?: number;
  /** Target from the issue, e.g. "p99 < 5 µs". */
  target?: string;
  note?: string;
}

export interface BenchResult {
  rows: BenchRow[];
  /** Free text for RESULTS.md (how it was run). */
  notes?: string[];
}

export interface Benchmark {
  name: string;
  description: string;
  run(size: BenchSize): Promise<BenchResult>;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx] as number;
}

export function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

export function ratio(value: number, baseline: number): number | undefined {
  return baseline === 0 ? undefined : value / baseline;
}

/**
 * Runs a benchmark file again as a child process (`node --expose-gc --import tsx FILE --FLAG SIZE`), so the
 * measurement has a process (and an RSS, and an embedded engine) of its own; returns the JSON object the
 * child prints on its last stdout line.
 */
export async function runChild<T>(file: string, flag: string, size: BenchSize): Promise<T> {
  const proc = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', file, flag, size], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const [code] = (await once(proc, 'exit')) as [number | null];
  const line = out.trim().split('\n').at(-1) ?? '';
  if (code !== 0 || !line.startsWith('{')) throw new Error(`benchmark child ${file} ${flag} failed (${code}): ${out}`);
  return JSON.parse(line) as T;
}

/** The child's side of runChild: when this process was started for `flag`, runs `child` and prints its JSON. */
export function childMain<T>(moduleUrl: string, flag: string, child: (size: BenchSize) => Promise<T>): void {
  if (!process.argv.includes(flag) || moduleUrl !== pathToFileURL(process.argv[1] ?? '').href) return;
  const size = (process.argv[process.argv.indexOf(flag) + 1] ?? 'tiny') as BenchSize;
  child(size).then(
    (r) => {
      process.stdout.write(JSON.stringify(r) + '\n');
      process.exit(0);
    },
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
