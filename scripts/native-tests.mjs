#!/usr/bin/env node
// Builds and runs the core's C++ tests with ctest (no Node involved in the tests themselves):
// a Release build, then an AddressSanitizer + UndefinedBehaviorSanitizer build.
//   node scripts/native-tests.mjs [--no-sanitize]
// SUPCON_CUDA=OFF|ON|AUTO is passed through (CUDA tests skip cleanly without a GPU).
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const jobs = String(Math.max(1, cpus().length));
const cuda = process.env.SUPCON_CUDA ?? 'AUTO';
const sanitize = !process.argv.includes('--no-sanitize');

function run(cmd, args, env = {}) {
  console.log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

function buildAndTest(dir, extra, env = {}) {
  run('cmake', ['-S', '.', '-B', dir, '-DSUPCON_BUILD_TESTS=ON', `-DSUPCON_CUDA=${cuda}`, ...extra]);
  run('cmake', ['--build', dir, '-j', jobs]);
  run('ctest', ['--test-dir', dir, '--output-on-failure', '-j', jobs], env);
}

buildAndTest('build-tests', ['-DCMAKE_BUILD_TYPE=Release']);
if (sanitize) {
  // CUDA stays off here: the sanitizers and the CUDA runtime do not mix.
  buildAndTest('build-asan', ['-DCMAKE_BUILD_TYPE=RelWithDebInfo', '-DSUPCON_SANITIZE=ON', '-DSUPCON_CUDA=OFF'], {
    ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=1',
    UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
  });
}
