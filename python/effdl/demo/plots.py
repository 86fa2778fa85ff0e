"""The demo's plots (matplotlib, Agg backend): accuracy vs size, latency vs batch size."""

from __future__ import annotations

from pathlib import Path


def write_plots(result: dict, out_dir: Path) -> dict[str, str]:
    """Writes the PNGs into ``out_dir``; returns ``{title: file name}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = result["stages"]
    written = {}

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=90)
    markers = "osD^vP*Xh"
    for i, st in enumerate(stages):  # a legend, not annotations: stages of the same size overlap
        ax.scatter(st["bytes_on_disk"] / 1024, st["accuracy"], s=40, marker=markers[i % len(markers)],
                   label=st["name"], alpha=0.8)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel("bytes on disk (KiB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy vs size")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy_vs_size.png")
    plt.close(fig)
    written["accuracy vs size"] = "accuracy_vs_size.png"

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=90)
    bss = result["batch_sizes"]
    for st in stages:
        ax.plot(bss, [st["latency_ms"][str(b)] for b in bss], marker="o", label=st["name"])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(bss, [str(b) for b in bss])
    ax.set_xlabel("batch size")
    ax.set_ylabel("latency per batch (ms, median)")
    ax.set_title("latency vs batch size, per stage")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "latency_vs_batch.png")
    plt.close(fig)
    written["latency vs batch size"] = "latency_vs_batch.png"
    return written
