"""``effdl.info()``: what this installation is and can do."""

from __future__ import annotations

import platform

import torch

from effdl import _ext, backends


def info() -> dict:
    """Versions, CPU features, CUDA archs compiled, and the ops x backends table.

    Returns a dict; ``effdl info`` prints it.
    """
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    from effdl import __version__

    build = _ext.build_info()
    isa = _ext.cpu_isa()
    return {
        "effdl": __version__,
        "torch": torch.__version__,
        "triton": triton_version,
        "python": platform.python_version(),
        "native": "loaded" if _ext.available() else f"NOT LOADED ({_ext.load_error})",
        "built_with_torch": build.get("torch_built_with"),
        "compiler": build.get("compiler"),
        "cpu": platform.processor() or platform.machine(),
        "cpu_features": {k: v for k, v in _ext.cpu_features().items() if k != "arch"},
        # the CPU kernel level in use; EFFDL_CPU_ISA=avx512_bf16|avx512_vnni|avx512|avx2|portable forces one
        "cpu_kernel_isa": isa["isa"] if isa["error"] is None else f"UNUSABLE ({isa['error']})",
        "cpu_kernel_isa_forced": isa["forced"],
        "cpu_kernel_isas_here": ", ".join(isa["available"]) or None,
        "cuda_compiled": bool(build.get("cuda")),
        "cuda_archs": build.get("cuda_archs") or None,
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "backend": backends.get_backend(),
        "threads": torch.get_num_threads(),
        "ops": backends.op_backends(),
    }


def format_info(d: dict | None = None) -> str:
    """A plain-text rendering of :func:`info`."""
    d = d or info()
    lines = []
    key_width = max(len(key) for key in d)
    for key, value in d.items():
        if key == "ops":
            continue
        if isinstance(value, dict):
            value = " ".join(f"{k}" for k, v in value.items() if v) or "-"
        lines.append(f"{key:>{key_width}}: {value}")
    cols = ["cpu", "cuda", "triton", "reference"]
    width = max(len(op) for op in d["ops"])
    lines.append("")
    lines.append((f"{'op':<{width}}  " + "  ".join(f"{c:<22}" for c in cols)).rstrip())
    for op, row in d["ops"].items():
        lines.append((f"{op:<{width}}  " + "  ".join(f"{row[c]:<22}" for c in cols)).rstrip())
    return "\n".join(lines)
