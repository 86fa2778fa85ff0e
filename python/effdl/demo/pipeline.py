"""The demo's pipeline: train, distill, prune, quantize, convert, then measure every stage."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from torch import nn

import effdl
from effdl import serialize
from effdl.demo import stages
from effdl.demo.config import DemoConfig
from effdl.demo.progress import Bars
from effdl.demo.timing import latency_table
from effdl.models import count_flops, count_params

TEACHER_ARCH, STUDENT_ARCH = "SmallResNet", "MobileNetV2"


@dataclass
class Stage:
    """One model of the report: what it is, how it was made and what runs it."""

    key: str
    name: str
    model: nn.Module
    how: str
    kernels: list[str] = field(default_factory=list)
    train_seconds: float = 0.0


def _kernel_counts(model: nn.Module) -> dict[str, int]:
    """How many layers of each compute type the model runs (what ran where)."""
    kinds = ("DWSeparableConv2d", "SparseLinear", "QLinear", "Conv2d", "Linear")
    counts = {k: 0 for k in kinds}
    for mod in model.modules():
        name = type(mod).__name__
        if name in counts:
            counts[name] += 1
    return {k: v for k, v in counts.items() if v}


def build_stages(cfg: DemoConfig, data, split, bars: Bars) -> list[Stage]:
    """Run the configured pipeline; every stage's model is kept for measuring."""
    out: list[Stage] = []
    steps = set(cfg.pipeline)
    seed, lr, T, alpha = cfg.seed, cfg.lr, cfg.temperature, cfg.alpha
    device = split.train_x.device
    teacher = student = distilled = pruned = None

    def timed(fn, *args, **kwargs):
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        return result, time.perf_counter() - t0

    if "teacher" in steps:
        with bars.epochs("train teacher (ResNet)", cfg.teacher_epochs) as p:
            teacher, s = timed(stages.train_from_scratch, TEACHER_ARCH, cfg.teacher, data, cfg.teacher_epochs, lr,
                               seed, device, progress=p)
        out.append(Stage("teacher", "teacher (ResNet, float)", teacher, "trained on labels", train_seconds=s))
    if "student" in steps:
        with bars.epochs("train student on labels", cfg.student_epochs) as p:
            student, s = timed(stages.train_from_scratch, STUDENT_ARCH, cfg.student, data, cfg.student_epochs, lr,
                               seed + 1, device, progress=p)
        out.append(Stage("student", "student (MobileNetV2, labels)", student, "trained on labels alone",
                         train_seconds=s))
    if "distill" in steps:
        with bars.epochs("distill teacher -> student", cfg.student_epochs) as p:
            distilled, s = timed(stages.distill, teacher, STUDENT_ARCH, cfg.student, data, cfg.student_epochs, lr,
                                 seed + 1, T, alpha, device, progress=p)
        out.append(Stage("distilled", "student (distilled)", distilled,
                         f"distilled from the teacher (T={T}, alpha={alpha})", train_seconds=s))
    base = distilled if distilled is not None else student
    if "convert" in steps:
        fused, done = stages.to_kernels(base, sparse_linear=False)
        out.append(Stage("distilled_kernels", "student + fused dwsep", fused,
                         "depthwise + pointwise convs fused (BN folded)", kernels=done))
    if "prune" in steps:
        example = split.train_x[:8]
        teacher_for_ft = teacher if "distill" in steps else None
        with bars.epochs(f"prune {cfg.prune_method} + fine-tune", cfg.finetune_epochs) as p:
            (pruned, summary), s = timed(stages.prune_and_finetune, base, teacher_for_ft, cfg.prune_method,
                                         cfg.sparsity, data, cfg.finetune_epochs, lr / 5, T, alpha, example,
                                         progress=p)
        out.append(Stage("pruned", f"pruned {cfg.prune_method} (float)", pruned,
                         f"{summary}; fine-tuned {cfg.finetune_epochs} epochs", train_seconds=s))
        if "convert" in steps:
            kernels, done = stages.to_kernels(pruned, sparse_linear=cfg.prune_method == "2:4")
            label = "fused dwsep + 2:4 SparseLinear" if cfg.prune_method == "2:4" else "fused dwsep"
            out.append(Stage("pruned_kernels", f"pruned {cfg.prune_method} + {label}", kernels,
                             "the pruned student on effdl's kernels", kernels=done))
    qbase = pruned if pruned is not None else base
    qprefix = f"pruned {cfg.prune_method} + " if pruned is not None else ""
    if "ptq" in steps:
        with bars.step("int8 PTQ (calibrate, convert)", 1) as advance:
            (q, summary), s = timed(stages.ptq, qbase, data)
            advance("")
        q, done = stages.to_kernels(q, sparse_linear=False)
        out.append(Stage("ptq", f"{qprefix}int8 PTQ + fused dwsep", q, "post-training int8 of the linear layers",
                         kernels=[summary, *done], train_seconds=s))
    if "qat" in steps:
        with bars.epochs("int8 QAT fine-tune", cfg.qat_epochs) as p:
            (q, summary), s = timed(stages.qat, qbase, teacher, data, cfg.qat_epochs, lr / 10, T, alpha,
                                    progress=p)
        q, done = stages.to_kernels(q, sparse_linear=False)
        out.append(Stage("qat", f"{qprefix}int8 QAT + fused dwsep", q, "quantization-aware fine-tuning of the linear layers",
                         kernels=[summary, *done], train_seconds=s))
    return out


def _machine() -> dict:
    info = effdl.info()
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "effdl": effdl.__version__, "cpu_kernel_isa": info.get("cpu_kernel_isa"),
            "backend": effdl.get_backend()}


def measure(cfg: DemoConfig, built: list[Stage], split, bars: Bars) -> dict:
    """Save every stage, count it, score it, time it; returns the report's dict."""
    out_dir = Path(cfg.out)
    models_dir = out_dir / "models"
    example = split.test_x[:1]
    rows = []
    with bars.step("save, count, evaluate", len(built)) as advance:
        for st in built:
            st.model.eval()
            files = serialize.save(st.model, models_dir / st.key)
            rows.append({
                "key": st.key, "name": st.name, "how": st.how, "conversions": st.kernels,
                "layers": _kernel_counts(st.model),
                "accuracy": effdl.training.evaluate(st.model, split.test_x, split.test_y),
                "params": count_params(st.model), "params_nonzero": count_params(st.model, nonzero=True),
                "flops": count_flops(st.model, example), "flops_nonzero": count_flops(st.model, example, nonzero=True),
                "files": {os.path.relpath(p, out_dir): n for p, n in files.items()},
                "bytes_on_disk": sum(files.values()), "train_seconds": round(st.train_seconds, 2),
            })
            advance(st.key)
    models = {st.key: st.model.to(memory_format=torch.channels_last) for st in built}
    with bars.step("latency (interleaved, medians)", len(cfg.batch_sizes)) as advance:
        ms = latency_table(models, split.test_x, cfg.batch_sizes, cfg.timing_reps, advance)
    device = split.test_x.device
    refs = {"teacher": "teacher", "student": "distilled" if "distilled" in models else "student"}
    for row in rows:
        row["latency_ms"] = {str(bs): ms[row["key"]][bs] for bs in cfg.batch_sizes}
        for ref_name, ref_key in refs.items():
            if ref_key in ms:
                row[f"speedup_vs_{ref_name}"] = {str(bs): ms[ref_key][bs] / ms[row["key"]][bs]
                                                 for bs in cfg.batch_sizes}
    final = built[-1].key
    return {
        "effdl_demo_version": 1, "machine": _machine(), "device": str(device), "config": cfg.as_dict(),
        "data": {"name": "scikit-learn load_digits (8x8)", "train": len(split.train_x), "test": len(split.test_x)},
        "batch_sizes": list(cfg.batch_sizes), "speedup_references": {k: v for k, v in refs.items() if v in ms},
        "stages": rows, "final_model": os.path.relpath(str(models_dir / final), out_dir),
    }


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"device: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} asked for, but no CUDA GPU is available here")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device: 'cpu' or 'cuda[:N]', got {name!r}")
    return device


def run(cfg: DemoConfig, console: Console | None = None) -> dict:
    """The whole demo; writes ``cfg.out``/report.{json,md}, plots and the saved models."""
    from effdl.demo import plots, report

    console = console or Console()
    device = _device(cfg.device)
    torch.set_num_threads(cfg.threads)
    # the data set is 1797 tiny images: it lives on the device for the whole run
    split = effdl.data.Split(*(t.to(device) for t in effdl.data.digits(seed=cfg.seed)))
    data = effdl.data.loader(split.train_x, split.train_y, cfg.batch_size, shuffle=True, seed=cfg.seed)
    console.print(f"effdl {effdl.__version__} demo: {', '.join(cfg.pipeline)} on the scikit-learn digits "
                  f"({len(split.train_x)} train / {len(split.test_x)} test images), device {device}, "
                  f"{cfg.threads} thread(s), "
                  f"{'quick' if cfg.quick else 'full'} run")
    t0 = time.perf_counter()
    with Bars(console) as bars:
        built = build_stages(cfg, data, split, bars)
        result = measure(cfg, built, split, bars)
    result["total_seconds"] = round(time.perf_counter() - t0, 1)
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result["plots"] = plots.write_plots(result, out_dir)
    (out_dir / "report.json").write_text(json.dumps(result, indent=1) + "\n")
    (out_dir / "report.md").write_text(report.markdown(result))
    report.print_table(result, console)
    console.print(f"report: {out_dir / 'report.md'}, {out_dir / 'report.json'}; compressed model: "
                  f"{out_dir / result['final_model']}.safetensors (reload with effdl.serialize.load)")
    return result
