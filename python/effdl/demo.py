"""``effdl demo``: convert a small model three ways and compare with the float model.

A MobileNet-style network (depthwise-separable convolution blocks and an MLP
head) is converted with ``fuse_dwsep_``, then with ``sparsify_`` (2:4) and with
``quantize_`` (dynamic W8A8 and weight-only int8); every variant is timed side
by side with the float model on this machine and compared on output error and
saved size.
"""

from __future__ import annotations

import copy
import io
import statistics
import time

import torch
from torch import nn

import effdl


class DemoNet(nn.Module):
    """Stem conv, three depthwise-separable blocks, global pooling, a 3-layer MLP head."""

    def __init__(self, width: int = 64, hidden: int = 1024, classes: int = 10) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
                nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(),
            )

        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU6(),
            block(width, width, 1), block(width, 2 * width, 2), block(2 * width, 4 * width, 2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(4 * width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.head(x.mean((2, 3), keepdim=True))


def _saved_bytes(model: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def _time_interleaved(models: dict[str, nn.Module], x: torch.Tensor, reps: int) -> dict[str, float]:
    """Median ms per forward, every model timed in turn within each repetition."""
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():  # warm-up
            model(x)
        for _ in range(reps):
            for name, model in models.items():
                t0 = time.perf_counter()
                model(x)
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def build_variants(seed: int = 0) -> tuple[dict[str, nn.Module], torch.Tensor]:
    torch.manual_seed(seed)
    base = DemoNet().eval()
    # give the BatchNorms non-trivial statistics so that folding is exercised
    with torch.no_grad():
        for mod in base.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    channels_last = {"memory_format": torch.channels_last}
    fused = effdl.fuse_dwsep_(copy.deepcopy(base), verbose=False)
    variants = {
        "float": base.to(**channels_last),
        "fused dwsep": fused.to(**channels_last),
        "fused + 2:4 sparse": effdl.sparsify_(copy.deepcopy(fused), verbose=False),
        "fused + int8 dynamic": effdl.quantize_(copy.deepcopy(fused), "dynamic", verbose=False),
        "fused + int8 weight-only": effdl.quantize_(copy.deepcopy(fused), "weight_only", verbose=False),
    }
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    return variants, x


def run(batch_sizes: tuple[int, ...] = (1, 32), reps: int = 30, seed: int = 0) -> list[dict]:
    """Returns one row per variant: error vs float, saved bytes, ms per batch size."""
    variants, x1 = build_variants(seed)
    with torch.inference_mode():
        ref = variants["float"](x1.repeat(8, 1, 1, 1))
    rows = []
    timings = {}
    for bs in batch_sizes:
        xb = torch.randn(bs, *x1.shape[1:]).contiguous(memory_format=torch.channels_last)
        timings[bs] = _time_interleaved(variants, xb, reps)
    for name, model in variants.items():
        with torch.inference_mode():
            out = model(x1.repeat(8, 1, 1, 1))
        rel = float((out - ref).norm() / ref.norm())
        rows.append({
            "variant": name,
            "rel_error": rel,
            "saved_bytes": _saved_bytes(model),
            "ms": {bs: timings[bs][name] for bs in batch_sizes},
            "speedup": {bs: timings[bs]["float"] / timings[bs][name] for bs in batch_sizes},
        })
    return rows


def format_table(rows: list[dict]) -> str:
    bss = list(rows[0]["ms"])
    head = f"{'variant':<26}{'rel. error':>11}{'saved KiB':>11}" + "".join(
        f"{f'ms @ bs={bs}':>13}{'speedup':>9}" for bs in bss
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        line = f"{r['variant']:<26}{r['rel_error']:>11.2e}{r['saved_bytes'] / 1024:>11.1f}"
        line += "".join(f"{r['ms'][bs]:>13.3f}{r['speedup'][bs]:>8.2f}x" for bs in bss)
        lines.append(line)
    return "\n".join(lines)


def main(quick: bool = False, seed: int = 0) -> list[dict]:
    print(f"effdl {effdl.__version__} demo: DemoNet (depthwise-separable blocks + MLP head), "
          f"{torch.get_num_threads()} threads, backend {effdl.get_backend()}")
    rows = run(batch_sizes=(1, 8) if quick else (1, 32), reps=5 if quick else 30, seed=seed)
    print(format_table(rows))
    print("rel. error: ||y - y_float|| / ||y_float|| on a random batch; speedup: float ms / variant ms, "
          "timed interleaved in this process (medians).\n"
          "The 2:4 error is magnitude pruning of an untrained network without fine-tuning; "
          "speedups below 1x are real: see bench/README.md for where each kernel stands.")
    return rows
