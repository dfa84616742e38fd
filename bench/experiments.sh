#!/usr/bin/env bash
# The README's results tables: the main job (`npm start`, i.e. `supcon train` with its defaults) and the
# baselines a skeptic asks for, all with the same ResNet-8 encoder:
#   mini  (the embedded 10k / 2k Fashion-MNIST subset):
#         SupCon L_out (= npm start), SupCon L_in, SupCon with the paper's two views per image at the same
#         number of images processed (half the epochs), SimCLR (two views, its paper's augmentation, same
#         number of images processed), cross-entropy with the same encoder, augmentation and epochs (one view
#         per image, like the main job: about the same time), cross-entropy at the main job's measured wall
#         time when that differs, and raw-pixel logistic regression and MLP (bench/baselines.ts);
#         then `supcon robustness` on the SupCon and cross-entropy runs.
#   full  (the full Fashion-MNIST, apt-get install dataset-fashion-mnist): SupCon and cross-entropy with
#         the main job's recipe at FULL_EPOCHS (default 30), and the raw-pixel baselines.
# Each run writes runs/exp-NAME/{result.json,metrics.jsonl,wall.json}; bench/results-table.ts turns them into
# the tables and bench/results/experiments.json.
#   bash bench/experiments.sh [mini|full|robustness|all]
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}"
npm run build:ts >/dev/null
cli="node dist/cli/main.js"
defaults() { node -e "const d = require('./dist/train/config').DEFAULT_TRAIN_CONFIG; console.log(d.$1)"; }
E=$(defaults epochs)
HALF=$(( (E + 1) / 2 ))
FULL_EPOCHS="${FULL_EPOCHS:-30}"

# run NAME ARGS...: one training run (skipped when its result exists), its wall time in wall.json.
run() {
  local name="$1"; shift
  local out="runs/exp-$name"
  if [ -f "$out/result.json" ]; then echo "exp-$name: done before"; return; fi
  rm -rf "$out"
  local start; start=$(date +%s.%N)
  $cli train --out "$out" "$@"
  local end; end=$(date +%s.%N)
  node -e "require('fs').writeFileSync('$out/wall.json', JSON.stringify({ seconds: $end - $start, load: require('os').loadavg(), args: process.argv.slice(1) }) + '\n')" -- "$@"
}
# training seconds of a run (sum over its epochs)
train_seconds() { node -e "
  const lines = require('fs').readFileSync('runs/exp-$1/metrics.jsonl', 'utf8').trim().split('\n').map(JSON.parse);
  console.log(lines.filter((l) => l.type === 'epoch').reduce((s, l) => s + l.seconds, 0));"; }

if [ "$which" = mini ] || [ "$which" = all ]; then
  run mini-supcon
  run mini-supcon-lin --loss-variant in
  run mini-supcon-2views --views 2 --epochs "$HALF"
  run mini-simclr --method simclr --views 2 --epochs "$HALF" --augment paper
  run mini-ce --method ce
  # Cross-entropy at the main job's training time: more epochs when its steps are faster.
  ce_epochs=$(node -e "console.log(Math.max($E, Math.round($E * $(train_seconds mini-supcon) / $(train_seconds mini-ce))))")
  if [ "$ce_epochs" -gt "$E" ]; then run mini-ce-equal-time --method ce --epochs "$ce_epochs"; fi
  [ -f bench/results/baselines-fashion-mnist-mini.json ] || npx tsx bench/baselines.ts fashion-mnist-mini
fi
if [ "$which" = robustness ] || [ "$which" = mini ] || [ "$which" = all ]; then
  for r in mini-supcon mini-ce; do
    if [ ! -f "runs/exp-$r/robustness.json" ]; then $cli robustness --checkpoint "runs/exp-$r"; fi
  done
fi
if [ "$which" = full ] || [ "$which" = all ]; then
  run full-supcon --dataset fashion-mnist --epochs "$FULL_EPOCHS"
  run full-ce --dataset fashion-mnist --method ce --epochs "$FULL_EPOCHS"
  [ -f bench/results/baselines-fashion-mnist.json ] || npx tsx bench/baselines.ts fashion-mnist
fi
npx tsx bench/results-table.ts
