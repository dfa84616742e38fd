#!/usr/bin/env bash
# The README's results table: SupCon vs cross-entropy vs SimCLR with the same encoder (ResNet-8),
# augmentation, batch, optimizer and epochs, on the embedded Fashion-MNIST subset and on the
# full Fashion-MNIST (apt-get install dataset-fashion-mnist). Each run writes runs/exp-*/result.json;
# bench/results-table.ts turns them into the table.
#   bash bench/experiments.sh [mini|full|all]
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}"
npm run build:ts >/dev/null
cli="node dist/cli/main.js train --model resnet8 --batch-size 256 --seed 0"

if [ "$which" = mini ] || [ "$which" = all ]; then
  for method in supcon ce simclr; do
    $cli --method "$method" --dataset fashion-mnist-mini --epochs 7 --out "runs/exp-mini-$method"
  done
fi
if [ "$which" = full ] || [ "$which" = all ]; then
  for method in supcon ce simclr; do
    $cli --method "$method" --dataset fashion-mnist --epochs 4 --out "runs/exp-full-$method"
  done
fi
npx tsx bench/results-table.ts
