#!/usr/bin/env python3
"""PyTorch side of the CPU loss benchmark (bench/loss.ts runs it in the same run).

Reads the problems bench/loss.ts wrote (DIR/manifest.json, <name>_features.f32 [B, V, D] and
<name>_labels.i32 [B], raw little-endian), computes SupCon L_out forward and backward with the
widely used PyTorch formulation (the full N x N logits matrix, the label and self masks,
log-softmax, the mean over positives: supcon_loss_reference in bench/gpu/torch_supcon.py, the
reference code of Khosla et al.) on the CPU, and prints one JSON object: per problem the median
milliseconds of forward+backward, the loss, and the gradient's max |value|.

Usage: torch_loss.py --io DIR [--reps 3] [--threads T]
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu"))
from torch_supcon import read_tensor, supcon_loss_reference  # noqa: E402


def time_problem(features, labels, temperature, reps):
    times, loss_value, grad_max = [], None, None
    for rep in range(reps + 1):  # the first run warms up (allocator, thread pool)
        x = features.detach().clone().requires_grad_(True)
        start = time.perf_counter()
        loss = supcon_loss_reference(x, labels, temperature, temperature)
        loss.backward()
        elapsed = (time.perf_counter() - start) * 1e3
        if rep > 0:
            times.append(elapsed)
        loss_value, grad_max = float(loss.detach().item()), float(x.grad.abs().max().item())
        del loss, x
    times.sort()
    return times[len(times) // 2], loss_value, grad_max


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--io", required=True, help="directory written by bench/loss.ts")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    with open(os.path.join(args.io, "manifest.json")) as f:
        manifest = json.load(f)
    report = {"torch": torch.__version__, "threads": torch.get_num_threads(), "results": []}
    for entry in manifest["entries"]:
        batch, views, dim = entry["batch"], entry["views"], entry["dim"]
        features = read_tensor(os.path.join(args.io, entry["features"]), torch.float32, (batch, views, dim))
        labels = read_tensor(os.path.join(args.io, entry["labels"]), torch.int32, (batch,)).long()
        reps = entry.get("reps", args.reps)
        try:
            ms, loss, grad_max = time_problem(features, labels, entry["temperature"], reps)
            report["results"].append({"n": entry["n"], "ms": ms, "loss": loss, "gradMax": grad_max, "reps": reps})
        except RuntimeError as err:  # out of memory at the largest sizes: report, keep going
            report["results"].append({"n": entry["n"], "error": str(err).splitlines()[0][:300]})
        print("torch N=%d done" % entry["n"], file=sys.stderr, flush=True)
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
