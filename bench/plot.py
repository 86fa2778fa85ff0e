"""Speedup vs batch size per kernel and peer, from a ``python -m bench`` JSON (what ``effdl bench`` draws).

    python -m bench.plot RESULT.json [OUT.png]

One panel per op; one line per peer: the geometric mean over the op's shapes of
``peer_time / effdl_time`` (> 1: effdl faster) at each batch size (``M`` rows for the
linear ops, ``B`` images for dwsep_conv2d). Ops without a batch dimension
(format conversion) are not drawn.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

BATCH_KEYS = ("M", "B")


def speedup_series(result: dict) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{op: {peer: [(batch, geomean speedup), ...]}}`` from a bench result."""
    acc: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for case in result["cases"]:
        key = next((k for k in BATCH_KEYS if k in case.get("params", {})), None)
        if key is None or case.get("error"):
            continue
        for peer, ratio in case.get("ratios", {}).items():
            if ratio and ratio > 0:
                acc[case["op"]][peer][case["params"][key]].append(math.log(ratio))
    return {
        op: {peer: sorted((b, math.exp(sum(v) / len(v))) for b, v in by_b.items()) for peer, by_b in peers.items()}
        for op, peers in acc.items()
    }


def plot(result_path: str | Path, png_path: str | Path | None = None) -> Path:
    """Draw the speedup-vs-batch figure of ``result_path``; returns the PNG path
    (default: next to the JSON, same stem)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = json.loads(Path(result_path).read_text())
    series = speedup_series(result)
    png = Path(png_path) if png_path else Path(result_path).with_suffix(".png")
    n = max(1, len(series))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False)
    for ax, (op, peers) in zip(axes[0], sorted(series.items()), strict=False):
        for peer, pts in peers.items():
            ax.plot([b for b, _ in pts], [s for _, s in pts], marker="o", label=f"vs {peer}")
        ax.axhline(1.0, color="gray", lw=0.8, ls="--")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_title(op)
        ax.set_xlabel("batch (M rows / B images)")
        ax.set_ylabel("speedup of effdl (peer time / effdl time)")
        ax.legend(fontsize=7)
    machine = result.get("machine", {})
    fig.suptitle(f"{machine.get('cpu_model', '?')}, {machine.get('threads', '?')} threads, {result.get('date', '')} "
                 f"({result.get('mode', '')}); geometric mean over shapes", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def run_and_plot(argv: list[str]) -> int:
    """``python -m bench`` with ``argv``, then :func:`plot` of the JSON it wrote."""
    from bench import __main__ as bench_main

    rc = bench_main.main(argv)
    if bench_main.last_written is not None:  # --list writes nothing
        print(f"wrote {plot(bench_main.last_written)}")
    return rc


if __name__ == "__main__":
    if not 2 <= len(sys.argv) <= 3:
        sys.exit(__doc__)
    print(plot(*sys.argv[1:]))
