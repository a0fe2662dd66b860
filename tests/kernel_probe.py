"""The kernel probe of ../shared/xcpu/probe.py, for the kernels this process was started with: trains the demo MLP
784-512-512-10 with SGD for 30 steps of batch 64 and a small CNN (3x3 convolutions 16-32-64 with BatchNorm and
max-pooling) with AdamW for 10 steps of batch 128, on random inputs from a fixed seed, on one thread; prints a
digest of every loss and of the final parameters. Two CPUs whose digests agree compute these kernels alike.

usage: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=AVX2 python tests/kernel_probe.py
"""
import hashlib
import json
import time

import torch
from torch import nn

torch.set_num_threads(1)


def digest(xs):
    return hashlib.sha256(" ".join(xs).encode()).hexdigest()[:16]


def params(m):
    return digest([p.detach().double().sum().item().hex() for p in m.parameters()] +
                  [hashlib.sha256(p.detach().numpy().tobytes()).hexdigest() for p in m.parameters()])


out = {"kernels": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__}
torch.manual_seed(0)
mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
opt = torch.optim.SGD(mlp.parameters(), lr=0.1)
x, y = torch.rand(30, 64, 1, 28, 28), torch.randint(0, 10, (30, 64))
losses, t = [], time.perf_counter()
for i in range(30):
    loss = nn.functional.cross_entropy(mlp(x[i]), y[i])
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item().hex())
out["mlp_ms_per_step"] = round(1000 * (time.perf_counter() - t) / 30, 2)
out["mlp"] = digest(losses) + "/" + params(mlp)
torch.manual_seed(1)


def block(i, o, pool):
    return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()] + ([nn.MaxPool2d(2)] if pool else [])


cnn = nn.Sequential(*block(1, 16, True), *block(16, 32, True), *block(32, 64, False), nn.Flatten(), nn.Linear(64 * 7 * 7, 10))
opt = torch.optim.AdamW(cnn.parameters(), lr=0.01, weight_decay=0.05)
x, y = torch.rand(10, 128, 1, 28, 28), torch.randint(0, 10, (10, 128))
losses, t = [], time.perf_counter()
for i in range(10):
    loss = nn.functional.cross_entropy(cnn(x[i]), y[i])
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item().hex())
out["cnn_ms_per_step"] = round(1000 * (time.perf_counter() - t) / 10, 2)
out["cnn"] = digest(losses) + "/" + params(cnn)
print(json.dumps(out))
