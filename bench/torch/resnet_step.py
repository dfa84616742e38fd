"""PyTorch side of the training-step benchmark (bench/training.ts): the same ResNets as
src/models/resnet.ts (He et al. basic blocks, projection shortcuts = 1x1 conv + BN, CIFAR stem,
global average pooling, a dense classifier), one SGD-momentum step (forward, backward, update)
with softmax cross-entropy, channels_last, float32, on the CPU.

    python3 bench/torch/resnet_step.py --model resnet8 --batch 128 --threads 2 [--steps 10]

Prints one JSON line: {"torch": version, "threads": n, "model": ..., "batch": ..., "ms": [...]}.
A benchmark only: PyTorch is never a dependency of the package.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

LAYOUTS = {
    # name: (blocks per stage, stage widths, input [C, H, W])
    "resnet8": ([1, 1, 1], [16, 32, 64], (1, 28, 28)),
    "resnet20": ([3, 3, 3], [16, 32, 64], (3, 32, 32)),
    "resnet18": ([2, 2, 2, 2], [64, 128, 256, 512], (3, 32, 32)),
}


class Basic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class ResNet(nn.Module):
    def __init__(self, name, classes=10):
        super().__init__()
        blocks, widths, (cin, _, _) = LAYOUTS[name]
        self.stem = nn.Sequential(nn.Conv2d(cin, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers, c = [], widths[0]
        for stage, (n, w) in enumerate(zip(blocks, widths)):
            for b in range(n):
                layers.append(Basic(c, w, 2 if stage > 0 and b == 0 else 1))
                c = w
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="resnet8", choices=sorted(LAYOUTS))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = ResNet(a.model).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    _, _, shape = LAYOUTS[a.model]
    x = torch.randn(a.batch, *shape).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (a.batch,))
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        loss.item()
        if i >= a.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "model": a.model,
                      "batch": a.batch, "ms": times}))


if __name__ == "__main__":
    main()
