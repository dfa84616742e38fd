#!/usr/bin/env node
// Builds the prebuilt addon shipped inside the package, so that users install with no compiler
// and no install script: node-gyp-build's layout and naming,
//   prebuilds/<platform>-<arch>/supcon-native.napi[.glibc|.musl].node
// N-API (version 8), so one file serves every Node version. CPU only: the kernels pick
// AVX-512, AVX2 or the generic path at run time (native/core/simd.cpp), and CUDA needs a build
// from source, and so does MPI (a prebuilt binary must not need libmpi). The C and C++ runtimes are linked dynamically: built on Debian 12 the file needs
// glibc >= 2.34 and libstdc++ of GCC >= 12 (a static libstdc++ would raise the glibc floor to
// 2.36 through its arc4random and unwinder symbols). Runs as `prepack` (incremental: a rebuild
// only compiles what changed).
//   node scripts/prebuild.mjs
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const log = (msg) => console.log(`[supcon-native prebuild] ${msg}`);
const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;

function libcTag() {
  if (process.platform !== 'linux') return '';
  const report = process.report?.getReport?.();
  return report?.header?.glibcVersionRuntime ? '.glibc' : '.musl';
}

const outDir = join(root, 'build-prebuild');
const cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const defines = [`--CDSUPCON_VERSION=${version}`, '--CDSUPCON_CUDA=OFF', '--CDSUPCON_MPI=OFF', '--CDCMAKE_BUILD_TYPE=Release', '--CDCMAKE_SHARED_LINKER_FLAGS='];
log(`building a CPU-only addon in ${relative(root, outDir)}/`);
const built = spawnSync(process.execPath, [cmakeJs, 'compile', '--out', outDir, ...defines], { cwd: root, stdio: 'inherit' });
if (built.status !== 0) {
  console.error('[supcon-native prebuild] the build failed (needs CMake and a C++17 compiler)');
  process.exit(1);
}
const addon = join(outDir, 'Release', 'supcon_native.node');
const target = join(root, 'prebuilds', `${process.platform}-${process.arch}`, `supcon-native.napi${libcTag()}.node`);
mkdirSync(dirname(target), { recursive: true });
copyFileSync(addon, target);

// It must load in a fresh process and report the CPU path.
const check = spawnSync(
  process.execPath,
  ['-e', `const a = require(${JSON.stringify(target)}); const i = a.info(); console.log(JSON.stringify({ version: i.version, simd: i.cpu.simd, cuda: i.cuda.compiled }))`],
  { encoding: 'utf8' },
);
if (check.status !== 0) {
  console.error(`[supcon-native prebuild] ${target} does not load: ${check.stderr}`);
  process.exit(1);
}
const info = JSON.parse(check.stdout);
if (info.version !== version || info.cuda !== false) {
  console.error(`[supcon-native prebuild] unexpected build: ${check.stdout}`);
  process.exit(1);
}
let needs = '';
if (process.platform === 'linux' && existsSync('/usr/bin/objdump')) {
  const symbols = spawnSync('objdump', ['-T', target], { encoding: 'utf8' }).stdout ?? '';
  const newest = (re) => {
    const v = [...symbols.matchAll(re)].map((m) => m.slice(1).map(Number));
    v.sort((a, b) => b[0] - a[0] || b[1] - a[1] || (b[2] ?? 0) - (a[2] ?? 0));
    return v.length ? v[0].join('.') : '?';
  };
  const libs = (spawnSync('objdump', ['-p', target], { encoding: 'utf8' }).stdout ?? '').match(/NEEDED\s+\S+/g) ?? [];
  needs = `, needs glibc >= ${newest(/GLIBC_(\d+)\.(\d+)/g)}, GLIBCXX >= ${newest(/GLIBCXX_(\d+)\.(\d+)\.(\d+)/g)} (${libs.map((l) => l.split(/\s+/)[1]).join(' ')})`;
}
log(`${relative(root, target)}: ${(statSync(target).size / 1024).toFixed(0)} KiB, loads (simd ${info.simd}, no CUDA)${needs}`);
