#!/usr/bin/env bash
# One-shot GPU check of supcon-native's CUDA loss, for a machine with CMake, CUDA 13 and
# (optionally) python3 + PyTorch, and no Node and no network. Steps, each with its own time
# limit, each reported and none stopping the next:
#   1. configure (Release, SUPCON_CUDA=ON, tests on; CUDA architecture of the GPU found)
#   2. build with all cores
#   3. ctest: the CPU tests, then the CUDA tests (test_cuda_loss on the GPU, test_cuda_emu)
#   4. bench_cuda: forward+backward timings, TFLOP/s, peak memory (JSON + table), and the
#      inputs/outputs for step 5
#   4b. native/cuda/dev/general_backward: two-pass vs atomic general backward (correctness + time)
#   5. torch_supcon.py: PyTorch's dense formulation on the same inputs and GPU: loss and
#      gradient agreement, time side by side
# Budget: about 8 minutes on an H100. Everything goes to $OUT (default bench/gpu/results):
# log.txt (all output), summary.json (per-step exit codes and seconds), bench_cuda.json,
# torch_compare.json, dev_general_backward.json, ctest logs, nvidia-smi.txt.
#
# Without a GPU (or with SUPCON_GPU_DRYRUN=1) it still configures, builds (one architecture,
# sm_80, to keep it quick) and runs ctest; the GPU steps report "skipped".
# Environment: OUT, SUPCON_GPU_DRYRUN=1, SUPCON_CUDA_ARCHS (e.g. "90"), SUPCON_GPU_BUILD_DIR,
# SUPCON_BENCH_BUDGET_S (default 170).
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$ROOT/bench/gpu/results}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
LOG="$OUT/log.txt"
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1

BUILD="${SUPCON_GPU_BUILD_DIR:-$ROOT/build-gpu}"
JOBS="$(nproc 2>/dev/null || echo 4)"
START="$(date +%s)"
STEPS_JSON=""

elapsed() { echo $(($(date +%s) - START)); }

# step NAME LIMIT_SECONDS COMMAND...: runs COMMAND under a timeout, records rc and seconds.
step() {
  local name="$1" limit="$2"
  shift 2
  echo
  echo "=== [$name] start at +$(elapsed)s, limit ${limit}s: $*"
  local t0 rc
  t0="$(date +%s)"
  timeout --kill-after=15 "$limit" "$@"
  rc=$?
  local secs=$(($(date +%s) - t0))
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "=== [$name] TIMED OUT after ${secs}s (limit ${limit}s)"
  elif [ "$rc" -ne 0 ]; then
    echo "=== [$name] FAILED with exit code $rc after ${secs}s"
  else
    echo "=== [$name] ok in ${secs}s"
  fi
  STEPS_JSON="${STEPS_JSON:+$STEPS_JSON,}{\"step\":\"$name\",\"rc\":$rc,\"seconds\":$secs,\"limit_s\":$limit}"
  return 0
}

skip() {
  echo
  echo "=== [$1] skipped: $2"
  STEPS_JSON="${STEPS_JSON:+$STEPS_JSON,}{\"step\":\"$1\",\"rc\":null,\"skipped\":\"$2\"}"
}

# ---- what machine is this -----------------------------------------------------------------
GPU=0
if [ "${SUPCON_GPU_DRYRUN:-0}" = "1" ]; then
  echo "SUPCON_GPU_DRYRUN=1: treating this machine as having no GPU"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  GPU=1
  nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
  nvidia-smi -L
else
  echo "no usable GPU found (nvidia-smi missing or failing): GPU steps will be skipped"
fi

if ! command -v nvcc >/dev/null 2>&1 && [ -z "${CUDACXX:-}" ]; then
  for c in /usr/local/cuda/bin/nvcc /usr/local/cuda-13*/bin/nvcc; do
    if [ -x "$c" ]; then
      export CUDACXX="$c"
      break
    fi
  done
fi
echo "nvcc: ${CUDACXX:-$(command -v nvcc || echo 'not found')}"; "${CUDACXX:-nvcc}" --version 2>&1 | tail -2
cmake --version | head -1

# One architecture: the GPU's own (fast to compile), sm_80 for a dry run.
ARCH="${SUPCON_CUDA_ARCHS:-}"
if [ -z "$ARCH" ] && [ "$GPU" = "1" ]; then
  ARCH="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')"
  [ -z "$ARCH" ] && ARCH="native"
fi
[ -z "$ARCH" ] && ARCH="80"
echo "CUDA architecture(s): $ARCH; build dir: $BUILD; jobs: $JOBS; output: $OUT"

# ---- 1-2: configure and build -------------------------------------------------------------
step configure 180 cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSUPCON_CUDA=ON \
  -DSUPCON_BUILD_TESTS=ON "-DCMAKE_CUDA_ARCHITECTURES=$ARCH"
step build 420 cmake --build "$BUILD" -j "$JOBS"

# ---- 3: tests ------------------------------------------------------------------------------
if [ -f "$BUILD/CTestTestfile.cmake" ]; then
  step ctest-cpu 240 bash -c "ctest --test-dir '$BUILD' -E cuda --output-on-failure --timeout 200 -j $JOBS 2>&1 | tee '$OUT/ctest_cpu.txt'"
  step ctest-cuda 360 bash -c "ctest --test-dir '$BUILD' -R cuda --output-on-failure --timeout 330 -j 2 -V 2>&1 | tee '$OUT/ctest_cuda.txt'"
else
  skip ctest "no build tree (configure failed)"
fi

# ---- 4: benchmark --------------------------------------------------------------------------
BENCH="$BUILD/native/bench/cuda/bench_cuda"
if [ "$GPU" != "1" ]; then
  skip bench "no GPU"
elif [ ! -x "$BENCH" ]; then
  skip bench "bench_cuda was not built"
else
  # Keep about 170 s for the dev check, the torch comparison and the summary inside 8 minutes.
  left=$((480 - $(elapsed) - 170))
  budget="${SUPCON_BENCH_BUDGET_S:-170}"
  [ "$left" -lt "$budget" ] && budget="$left"
  [ "$budget" -lt 30 ] && budget=30
  mkdir -p "$OUT/torch_io"
  step bench $((budget + 120)) "$BENCH" --json "$OUT/bench_cuda.json" --budget-s "$budget" --torch-dir "$OUT/torch_io"
fi

# ---- 4b: atomics vs second pass for the general backward (native/cuda/dev) ------------------
DEV="$BUILD/native/cuda/cuda_dev_general_backward"
if [ "$GPU" != "1" ]; then
  skip dev-general-backward "no GPU"
elif [ ! -x "$DEV" ]; then
  skip dev-general-backward "cuda_dev_general_backward was not built"
elif [ "$(elapsed)" -gt 330 ]; then
  skip dev-general-backward "not enough time left (at +$(elapsed)s)"
else
  step dev-general-backward 90 "$DEV" --sizes 4096,16384,65536 --reps 3 --json "$OUT/dev_general_backward.json"
fi

# ---- 5: PyTorch comparison -----------------------------------------------------------------
if [ "$GPU" != "1" ]; then
  skip torch "no GPU"
elif ! python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
  skip torch "python3 cannot import torch with CUDA"
elif [ ! -f "$OUT/torch_io/manifest.json" ]; then
  skip torch "no inputs from bench_cuda (see the bench step)"
else
  step torch 180 python3 "$ROOT/bench/gpu/torch_supcon.py" --io "$OUT/torch_io" --json "$OUT/torch_compare.json"
fi
# The exported arrays are large and reproducible: keep only the manifest.
rm -f "$OUT"/torch_io/*.f32 "$OUT"/torch_io/*.i32 2>/dev/null

# ---- summary -------------------------------------------------------------------------------
TOTAL="$(elapsed)"
cat >"$OUT/summary.json" <<EOF
{"gpu": $GPU, "cuda_architectures": "$ARCH", "total_seconds": $TOTAL, "steps": [$STEPS_JSON]}
EOF
echo
echo "=== summary (total ${TOTAL}s): $OUT/summary.json"
python3 - "$OUT/summary.json" <<'PY' || cat "$OUT/summary.json"
import json, sys
s = json.load(open(sys.argv[1]))
for st in s["steps"]:
    state = st.get("skipped") and "skipped: " + st["skipped"] or ("ok" if st["rc"] == 0 else
            ("TIMED OUT" if st["rc"] in (124, 137) else "FAILED rc=%d" % st["rc"]))
    print("  %-22s %6s  %s" % (st["step"], "%ds" % st["seconds"] if "seconds" in st else "", state))
PY
