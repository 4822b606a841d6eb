import type { Command } from 'commander';

/** A usage or input error: the CLI prints one line and exits with code 2. */
export class CliInputError extends Error {
  readonly code = 'FORGE_ERR_CLI_INPUT';
}

export type Out = { log: (s: string) => void; err: (s: string) => void };

/** Commands of later parts (start, keys, run) register here; main.ts builds the program from them. */
export type Register = (program: Command, out: Out, setCode: (c: number) => void) => void;
export const extraCommands: Register[] = [];
export function addCommand(r: Register): void {
  extraCommands.push(r);
}
