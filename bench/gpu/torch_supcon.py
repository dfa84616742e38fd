#!/usr/bin/env python3
"""PyTorch side of the GPU comparison (bench/gpu/run.sh).

Reads the inputs and this library's outputs that `bench_cuda --torch-dir DIR` wrote
(DIR/manifest.json, N<n>_features.f32, N<n>_labels.i32, N<n>_grad.f32), computes the loss and
its gradient with the widely used PyTorch formulation of SupCon (the full N x N logits matrix,
as in the reference code of Khosla et al.), on the same GPU, and reports agreement and time
side by side. Needs only torch (no numpy, no network).

Usage: torch_supcon.py --io DIR --json OUT.json [--reps 3]
"""
import argparse
import json
import math
import os
import sys
import time

import torch


def supcon_loss_reference(features, labels, temperature, base_temperature):
    """SupCon L_out with every row an anchor ('all' mode), the dense formulation.

    features: [batch, views, dim] with unit rows; labels: [batch] int64.
    """
    device = features.device
    batch, views, _ = features.shape
    # View-major rows: row v * batch + b is view v of sample b.
    contrast = torch.cat(torch.unbind(features, dim=1), dim=0)
    rows = batch * views
    same_class = torch.eq(labels.view(-1, 1), labels.view(1, -1)).float().repeat(views, views)
    logits = torch.matmul(contrast, contrast.T) / temperature
    row_max, _ = torch.max(logits, dim=1, keepdim=True)
    logits = logits - row_max.detach()  # stability only: the softmax is unchanged
    not_self = torch.scatter(torch.ones_like(same_class), 1, torch.arange(rows, device=device).view(-1, 1), 0)
    positives = same_class * not_self
    denominator = (torch.exp(logits) * not_self).sum(1, keepdim=True)
    log_prob = logits - torch.log(denominator)
    mean_log_prob_positive = (positives * log_prob).sum(1) / positives.sum(1)
    per_anchor = -(temperature / base_temperature) * mean_log_prob_positive
    return per_anchor.view(views, batch).mean()


def read_tensor(path, dtype, shape):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    return torch.frombuffer(data, dtype=dtype).reshape(shape).clone()


def is_oom(err):
    return isinstance(err, getattr(torch.cuda, "OutOfMemoryError", ())) or "out of memory" in str(err).lower()


def time_torch(features, labels, entry, reps):
    """Median milliseconds of forward+backward (CUDA events), peak memory, loss and gradient."""
    tau, base = entry["temperature"], entry["base_temperature"]
    times = []
    loss_value, grad = None, None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    for rep in range(reps + 1):  # the first run warms up (kernel selection, allocator)
        x = features.detach().clone().requires_grad_(True)
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        loss = supcon_loss_reference(x, labels, tau, base)
        loss.backward()
        stop.record()
        torch.cuda.synchronize()
        if rep > 0:
            times.append(start.elapsed_time(stop))
        loss_value, grad = float(loss.item()), x.grad.detach()
        del loss, x
    times.sort()
    return times[len(times) // 2], torch.cuda.max_memory_allocated(), loss_value, grad


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--io", required=True, help="directory written by bench_cuda --torch-dir")
    parser.add_argument("--json", required=True, help="output JSON file")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    report = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "results": []}
    if not torch.cuda.is_available():
        report["status"] = "skipped: torch has no CUDA device"
        print(report["status"])
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        return 0
    device = torch.device("cuda")
    report["device"] = torch.cuda.get_device_name(0)
    # Plain float32 matmuls: the library's default precision is float32 too.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with open(os.path.join(args.io, "manifest.json")) as f:
        manifest = json.load(f)

    failures = 0
    for entry in manifest["entries"]:
        n, batch, views, dim = entry["n"], entry["batch"], entry["views"], entry["dim"]
        row = {"n": n, "dim": dim, "ours_kernel_ms": entry["kernel_ms"], "ours_end_to_end_ms": entry["end_to_end_ms"],
               "ours_loss": entry["loss"]}
        if entry["status"] != "ok":
            row["status"] = "ours failed: " + entry["status"]
            failures += 1
            report["results"].append(row)
            continue
        try:
            features = read_tensor(os.path.join(args.io, entry["features"]), torch.float32, (batch, views, dim)).to(device)
            labels = read_tensor(os.path.join(args.io, entry["labels"]), torch.int32, (batch,)).to(device).long()
            ours_grad = read_tensor(os.path.join(args.io, entry["grad"]), torch.float32, (batch, views, dim)).to(device)
            ms, peak, loss, grad = time_torch(features, labels, entry, args.reps)
            grad_scale = float(grad.abs().max().item())
            row.update({
                "status": "ok",
                "torch_ms": ms,
                "torch_peak_bytes": int(peak),
                "torch_loss": loss,
                "loss_rel_err": abs(entry["loss"] - loss) / max(1.0, abs(loss)),
                "grad_max_abs_err": float((grad - ours_grad).abs().max().item()),
                "grad_max_abs": grad_scale,
                "ratio_torch_over_ours_kernel": ms / entry["kernel_ms"] if entry["kernel_ms"] > 0 else None,
                "ratio_torch_over_ours_end_to_end": ms / entry["end_to_end_ms"] if entry["end_to_end_ms"] > 0 else None,
            })
            row["grad_rel_err"] = row["grad_max_abs_err"] / max(grad_scale, 1e-30)
            # Both are float32 against float32: the project's tolerances (docs/loss.md).
            row["agrees"] = row["loss_rel_err"] <= 1e-5 and row["grad_rel_err"] <= 1e-4
            if not row["agrees"]:
                failures += 1
            del features, labels, ours_grad, grad
        except Exception as err:  # keep going: one size failing must not hide the others
            row["status"] = ("torch out of memory: " if is_oom(err) else "error: ") + str(err).splitlines()[0][:300]
            if not is_oom(err):
                failures += 1
        torch.cuda.empty_cache()
        report["results"].append(row)

    print("\nPyTorch (dense N x N, float32) vs supcon-native CUDA (fused, float32), forward+backward, D = 128")
    header = "%8s %11s %13s %13s %10s %12s %12s %12s  %s" % (
        "N", "torch ms", "ours kern ms", "ours e2e ms", "ratio", "loss relerr", "grad relerr", "torch MiB", "status")
    print(header)
    for r in report["results"]:
        def fmt(key, spec):
            v = r.get(key)
            return spec % v if isinstance(v, (int, float)) and v is not None and not (isinstance(v, float) and math.isnan(v)) else "-"
        print("%8d %11s %13s %13s %10s %12s %12s %12s  %s" % (
            r["n"], fmt("torch_ms", "%.3f"), fmt("ours_kernel_ms", "%.3f"), fmt("ours_end_to_end_ms", "%.3f"),
            fmt("ratio_torch_over_ours_kernel", "%.2fx"), fmt("loss_rel_err", "%.2e"), fmt("grad_rel_err", "%.2e"),
            "%.0f" % (r["torch_peak_bytes"] / 2**20) if "torch_peak_bytes" in r else "-",
            r.get("status", "") + ("" if r.get("agrees", True) else " (DISAGREES)")))
    print("ratio = torch time / our kernel time (>1: ours faster); our end-to-end time includes host copies")
    report["failures"] = failures
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
