#!/usr/bin/env node
// Builds the native addon: cmake-js first (CUDA when a compiler is found), node-gyp (CPU only)
// when CMake is missing or fails. Runs as the package's install script.
//   node scripts/build-native.mjs [--force] [--debug]
// An installed package that ships a prebuilt binary for this platform (prebuilds/, see
// scripts/prebuild.mjs) uses it and builds nothing, unless asked to build from source:
// --force, `npm install --build-from-source` (npm_config_build_from_source), or
// SUPCON_BUILD_FROM_SOURCE=1. A source checkout (with src/) always builds.
// Environment: SUPCON_SKIP_NATIVE=1 skips the build (the package then uses its pure-tfjs
// reference), SUPCON_CUDA=AUTO|ON|OFF and SUPCON_MPI=AUTO|ON|OFF (the optional parts),
// SUPCON_BUILD=cmake|gyp forces one builder.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const args = new Set(process.argv.slice(2));
const force = args.has('--force');
const debug = args.has('--debug');
const log = (msg) => console.log(`[supcon-native] ${msg}`);

if (process.env.SUPCON_SKIP_NATIVE === '1') {
  log('SUPCON_SKIP_NATIVE=1: not building the addon (supConLoss will use the pure-tfjs reference).');
  process.exit(0);
}

const fromSource =
  force || process.env.npm_config_build_from_source === 'true' || process.env.SUPCON_BUILD_FROM_SOURCE === '1' || existsSync(join(root, 'src', 'native.ts'));
if (!fromSource) {
  // node-gyp-build's own resolution, restricted to prebuilds/ (what src/native.ts loads).
  let prebuilt = null;
  try {
    process.env.PREBUILDS_ONLY = '1'; // read when node-gyp-build loads: skip build/ in its search
    prebuilt = require('node-gyp-build').path(root);
  } catch {
    // none for this platform
  } finally {
    delete process.env.PREBUILDS_ONLY;
  }
  if (prebuilt !== null) {
    try {
      require(prebuilt);
      log(`using the prebuilt binary ${prebuilt} (npm install --build-from-source to compile instead)`);
      process.exit(0);
    } catch (e) {
      log(`the prebuilt binary ${prebuilt} does not load here (${e.message.split('\n')[0]}); building from source`);
    }
  } else {
    log(`no prebuilt binary for ${process.platform}-${process.arch}; building from source`);
  }
}

const addonPath = join(root, 'build', debug ? 'Debug' : 'Release', 'supcon_native.node');
if (!force && existsSync(addonPath)) {
  try {
    require(addonPath);
    log(`addon already built: ${addonPath}`);
    process.exit(0);
  } catch {
    log('existing addon does not load; rebuilding');
  }
}

const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
const run = (cmd, argv, env = {}) =>
  spawnSync(cmd, argv, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } }).status === 0;

function hasCmake() {
  return spawnSync('cmake', ['--version'], { stdio: 'ignore' }).status === 0;
}

function buildWithCmake() {
  const cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
  const cuda = process.env.SUPCON_CUDA ?? 'AUTO';
  const mpi = process.env.SUPCON_MPI ?? 'AUTO';
  log(`building with cmake-js (SUPCON_CUDA=${cuda}, SUPCON_MPI=${mpi})`);
  return run(process.execPath, [
    cmakeJs,
    force ? 'rebuild' : 'compile',
    ...(debug ? ['--debug'] : []),
    `--CDSUPCON_VERSION=${version}`,
    `--CDSUPCON_CUDA=${cuda}`,
    `--CDSUPCON_MPI=${mpi}`,
  ]);
}

function nodeGypScript() {
  if (process.env.npm_config_node_gyp) return process.env.npm_config_node_gyp;
  const bundled = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (existsSync(bundled)) return bundled;
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    return null;
  }
}

function buildWithGyp() {
  const gyp = nodeGypScript();
  if (!gyp) {
    log('node-gyp not found');
    return false;
  }
  log('building with node-gyp (CPU only)');
  return run(process.execPath, [gyp, 'rebuild', ...(debug ? ['--debug'] : [])], { SUPCON_VERSION: version });
}

const builder = process.env.SUPCON_BUILD;
let ok = false;
if (builder === 'gyp') ok = buildWithGyp();
else if (builder === 'cmake') ok = buildWithCmake();
else ok = (hasCmake() && buildWithCmake()) || buildWithGyp();

if (!ok) {
  console.error(
    '[supcon-native] could not build the native addon. Install CMake (or python3 + make + a C++17 compiler for node-gyp) ' +
      'and run `npm rebuild supcon-native`, or set SUPCON_SKIP_NATIVE=1 to install without it.',
  );
  process.exit(1);
}
log(`built ${addonPath}`);
