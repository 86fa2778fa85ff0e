"""``effdl demo``: the whole story in one command, on real data.

On scikit-learn's bundled handwritten digits (8x8, no download): train a ResNet
teacher, distill it into a MobileNetV2 student (and train the same student on
labels alone), prune the student (2:4 by default) and fine-tune it, quantize its
linear layers to int8 (PTQ, QAT when asked), convert to effdl's kernels
(``fuse_dwsep_``, ``sparsify_``, ``QLinear``), then report every stage side by
side: accuracy, parameters, FLOPs, bytes on disk of the saved files, latency per
batch size measured here, and speedups against the float teacher and student.

Files: ``config`` (what runs), ``stages`` (the compression steps), ``pipeline``
(running and measuring them), ``timing``, ``report`` (Markdown + terminal table),
``plots``, ``progress``. Every stage's model is saved with
:func:`effdl.serialize.save` under ``<out>/models/``.
"""

from __future__ import annotations

from effdl.demo.config import DEFAULT_PIPELINE, PRUNE_METHODS, STEPS, DemoConfig
from effdl.demo.pipeline import run


def main(quick: bool = False, seed: int = 0, out: str = "report", pipeline: tuple[str, ...] | None = None,
         device: str = "cpu", threads: int | None = None, prune_method: str | None = None,
         sparsity: float | None = None) -> dict:
    """Run the demo with the command line's options; returns the report's dict."""
    cfg = DemoConfig.make(quick=quick, seed=seed, out=out, pipeline=pipeline, device=device, threads=threads,
                          prune_method=prune_method, sparsity=sparsity)
    return run(cfg)


__all__ = ["DEFAULT_PIPELINE", "PRUNE_METHODS", "STEPS", "DemoConfig", "main", "run"]
