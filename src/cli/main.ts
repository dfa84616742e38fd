#!/usr/bin/env node
/**
 * Entry point of the `supcon` command (package.json `bin`). Runs from the build
 * (`node dist/cli/main.js`) or from source (`npx tsx src/cli/main.ts`).
 */
import { runCli } from './program';

runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`supcon: unexpected error: ${String((e as Error)?.message ?? e).split('\n')[0]}\n`);
    process.exitCode = 1;
  },
);
