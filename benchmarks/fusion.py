"""Fusing trials, as HFTA does: K models of one architecture trained as one, against K apart.

HFTA (Wang et al., MLSys 2021) trains trials that share an architecture and differ in
hyperparameters as one fused model.  PyTorch's own form of that fusion is
``torch.func.stack_module_state`` + ``vmap``: the K models' weights are stacked, one
vmapped forward and backward runs all K on their own batches, and Adam (elementwise) steps
the stacked weights, which is K independent Adams.  Measured here on this machine's CPUs,
with the threads a search trial has (1) and all cores (2):

- apart: K models, each a training step on its own batch, one after the other;
- fused: the same K steps as one vmapped step.

Reported: training samples/s of all K models together, fused / apart.
"""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.common import Mode, fmt, samples_per_s, stats
from textsearch.models import CNN, CNNConfig

# two architectures of the cnn_emnist space, without BatchNorm (its running statistics are
# in-place updates that vmap does not batch) and without dropout (so the test can compare
# the fused models' weights with separately trained ones exactly)
ARCHS = {
    "2 plain blocks, 32 ch": CNNConfig(num_blocks=2, block="plain", batchnorm=False, conv_dim=32,
                                       downsample="maxpool", downsample_every=1, fc_dim=128,
                                       dropout=0.0),
    "3 residual blocks, 24 ch": CNNConfig(num_blocks=3, block="residual", batchnorm=False,
                                          conv_dim=24, downsample="stride", downsample_every=1,
                                          fc_dim=128, dropout=0.0),
}
BATCH = 128
CLASSES = 62


def models(arch: CNNConfig, k: int) -> list[torch.nn.Module]:
    torch.manual_seed(0)
    return [CNN((1, 28, 28), CLASSES, arch) for _ in range(k)]


def apart_rate(arch: CNNConfig, k: int, seconds: float) -> float:
    nets = models(arch, k)
    opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in nets]
    xs, ys = torch.rand(k, BATCH, 1, 28, 28), torch.randint(0, CLASSES, (k, BATCH))

    def step():
        for i, (m, opt) in enumerate(zip(nets, opts)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(xs[i]), ys[i]).backward()
            opt.step()

    return samples_per_s(step, k * BATCH, seconds)


def fused_step(nets: list[torch.nn.Module], xs: torch.Tensor, ys: torch.Tensor, lr: float = 1e-3):
    """One training step of all ``nets`` as one fused model; returns (step, stacked params).

    ``xs``/``ys``: each model's batch, stacked ``(K, B, ...)``."""
    from torch.func import functional_call, grad, stack_module_state, vmap

    params, buffers = stack_module_state(nets)
    params = {n: p.detach() for n, p in params.items()}
    base = nets[0]
    opt = torch.optim.Adam(list(params.values()), lr=lr)

    def loss(p, b, x, y):
        return torch.nn.functional.cross_entropy(functional_call(base, (p, b), (x,)), y)

    grads_of_all = vmap(grad(loss), randomness="different")  # each model its own dropout

    def step():
        grads = grads_of_all(params, buffers, xs, ys)
        for name, p in params.items():
            p.grad = grads[name]
        opt.step()

    return step, params


def fused_rate(arch: CNNConfig, k: int, seconds: float) -> float:
    xs, ys = torch.rand(k, BATCH, 1, 28, 28), torch.randint(0, CLASSES, (k, BATCH))
    step, _ = fused_step(models(arch, k), xs, ys)
    return samples_per_s(step, k * BATCH, seconds)


def run(mode: Mode, results: Path) -> dict:
    seconds = mode.fusion_seconds
    out: dict = {"k": mode.fusion_k, "batch": BATCH, "reps": mode.reps, "archs": {}}
    before = torch.get_num_threads()
    try:
        for name, arch in ARCHS.items():
            per_threads = {}
            for threads in (1, 2):
                torch.set_num_threads(threads)
                apart, fused = [], []
                for _ in range(mode.reps):  # alternating
                    apart.append(apart_rate(arch, mode.fusion_k, seconds))
                    fused.append(fused_rate(arch, mode.fusion_k, seconds))
                per_threads[threads] = {
                    "apart": stats(apart), "fused": stats(fused),
                    "ratio": stats([f / a for f, a in zip(fused, apart)])}
            out["archs"][name] = per_threads
    finally:
        torch.set_num_threads(before)
    return out


def rows(r: dict) -> list[str]:
    cells = []
    for name, per in r["archs"].items():
        for threads, v in per.items():
            cells.append(f"{name}, {threads} thread{'s' if int(threads) > 1 else ''}: "
                         f"{fmt(v['ratio'], 2)}x")
    return [f"| fusing {r['k']} trials of one architecture (torch.func vmap, as HFTA does): "
            f"training samples/s fused / apart | {'; '.join(cells)} | take it only if > 1 | "
            f"{'yes' if any(v['ratio']['median'] > 1.0 for per in r['archs'].values() for v in per.values()) else 'no'} |"]


def section(r: dict) -> list[str]:
    lines = ["", f"Fusing trials (HFTA's idea, with `torch.func.stack_module_state` + `vmap`): "
             f"{r['k']} models of one architecture, batch {r['batch']} each, no BatchNorm; "
             "training samples/s of all models together, median (min-max):", "",
             "| architecture | threads | apart | fused | fused / apart |", "|---|---|---|---|---|"]
    for name, per in r["archs"].items():
        for threads, v in per.items():
            lines.append(f"| {name} | {threads} | {fmt(v['apart'])} | {fmt(v['fused'])} | "
                         f"{fmt(v['ratio'], 2)}x |")
    return lines
