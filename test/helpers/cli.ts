/** The `supcon` command run as a child process from source, as a user runs it. */
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';

const repo = resolve(__dirname, '..', '..');

export interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI; `onStdout` may send signals once it sees some output; `env` adds to the environment. */
export function supcon(
  args: string[],
  onStdout?: (text: string, child: ReturnType<typeof spawn>) => void,
  env: Record<string, string> = {},
): Promise<Outcome> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(repo, 'src', 'cli', 'main.ts'), ...args], {
      cwd: repo,
      env: { ...process.env, SUPCON_DEBUG: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      onStdout?.(stdout, child);
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

/** stderr without tfjs's one-time banner about tfjs-node. */
export const errorLines = (stderr: string) => stderr.split('\n').filter((l) => l.trim() !== '' && !/tfjs-node|^=+$|TensorFlow\.js in Node/.test(l));

