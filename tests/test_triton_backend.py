"""The Triton kernels as a backend: routing, autograd, ``torch.compile`` and opcheck.

CPU tests run in triton's interpreter (see test_triton_ops.py). There the
``effdl_triton::*`` ops are opaque custom ops (an interpreted kernel cannot be
traced); on a GPU they are ``triton_op``s that ``torch.compile`` traces into —
the ``cuda``-marked compile test covers that.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from samples import DIFF_ARGNUMS, OPS, nm_weight, rand, sample_inputs
from test_backends import restore_backend  # noqa: F401  (autouse: every test starts and ends on "auto")
from test_ops import TOL, assert_bitwise_equal, assert_close_rel

import effdl
from effdl import backends, reference

T = pytest.importorskip("effdl.triton")

interpreter = pytest.mark.skipif(
    not T.INTERPRETED, reason="CPU tensors need triton's interpreter: TRITON_INTERPRET=1 before effdl.triton is imported"
)
DEVICES = [pytest.param("cpu", marks=interpreter), pytest.param("cuda", marks=pytest.mark.cuda)]


def _first_sample(op: str, device: str = "cpu") -> tuple:
    return next(iter(sample_inputs(op, device, torch.float32)))


def _outputs(result):
    return result if isinstance(result, tuple) else (result,)


def test_every_op_has_a_triton_kernel():
    assert set(backends.TRITON_OPS) <= set(OPS)
    for op in backends.TRITON_OPS:
        assert callable(getattr(T, op)), op
        assert hasattr(torch.ops.effdl_triton, op), op


# ---------------------------------------------------------------- routing


@interpreter
@pytest.mark.parametrize("op", backends.TRITON_OPS)
def test_triton_backend_routes_to_triton(monkeypatch, op):
    calls = []
    kernel = getattr(T, op)
    monkeypatch.setattr(T, op, lambda *args: calls.append(op) or kernel(*args))
    monkeypatch.setattr(reference, op, lambda *args: pytest.fail("the reference ran"))
    monkeypatch.setenv("EFFDL_BACKEND", "triton")
    args = _first_sample(op)
    result = getattr(effdl.ops, op)(*args)
    assert calls == [op]
    for a, b in zip(_outputs(result), _outputs(getattr(torch.ops.effdl, op)(*args)), strict=True):
        assert_close_rel(a, b, 1e-6) if a.is_floating_point() else assert_bitwise_equal(a, b)


@interpreter
def test_modules_run_on_the_triton_backend():
    linear = torch.nn.Linear(24, 10)
    sparse = effdl.nn.SparseLinear.from_dense(linear, 2, 4)
    x = rand(3, 24)
    expected = sparse(x)
    effdl.set_backend("triton")
    assert_close_rel(sparse(x), expected, TOL[torch.float32])


def test_triton_missing_keeps_effdl_importable():
    """Without triton: effdl imports, info() says so, the triton backend raises clearly."""
    script = textwrap.dedent("""
        import sys
        sys.modules["triton"] = None  # import triton now raises ImportError
        import torch, effdl
        assert effdl.info()["ops"]["nm_linear"]["triton"] == "triton not installed"
        effdl.set_backend("triton")
        try:
            effdl.ops.quantize_rows(torch.randn(2, 3))
        except RuntimeError as exc:
            assert "the triton package is not installed" in str(exc), exc
        else:
            raise AssertionError("the triton backend ran without triton")
        try:
            import effdl.triton
        except ImportError as exc:
            assert "effdl.triton needs the triton package" in str(exc), exc
        else:
            raise AssertionError("effdl.triton imported without triton")
        print("ok")
    """)
    python_dir = Path(effdl.__file__).resolve().parents[1]
    env = {"PYTHONPATH": str(python_dir), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_kernels_compile_for_the_gpu():
    """Every kernel through triton's GPU compiler (sm_90, down to the cubin), without a GPU:
    what only the compiler rejects fails here, not on the first GPU run."""
    script = Path(__file__).with_name("triton_gpu_compile.py")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(Path(effdl.__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, str(script), "90"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0 and "failures: 0" in out.stdout, (out.stdout + out.stderr)[-4000:]


# ---------------------------------------------------------------- autograd


def _grads(fn, args: tuple, argnums: tuple[int, ...], grad_out: torch.Tensor):
    args = list(args)
    leaves = []
    for i in argnums:
        if args[i] is not None:
            args[i] = args[i].detach().clone().requires_grad_(True)
            leaves.append(args[i])
    out = fn(*args)
    return out, torch.autograd.grad(out, leaves, grad_out)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", sorted(DIFF_ARGNUMS))
def test_gradients_through_the_triton_forward(device, op):
    """nm_linear and dwsep_conv2d stay differentiable on the triton backend: the
    gradients match autograd through the reference (float64: exact up to rounding)."""
    args = next(iter(sample_inputs(op, device, torch.float64)))
    effdl.set_backend("triton")
    out = getattr(effdl.ops, op)(*args)
    grad_out = torch.randn_like(out)
    out, grads = _grads(getattr(effdl.ops, op), args, DIFF_ARGNUMS[op], grad_out)
    ref_out, ref_grads = _grads(getattr(reference, op), args, DIFF_ARGNUMS[op], grad_out)
    assert_close_rel(out, ref_out, 1e-12)
    assert len(grads) == len(ref_grads) >= 3
    for g, ref_g in zip(grads, ref_grads, strict=True):
        assert_close_rel(g, ref_g, 1e-12)


@interpreter
def test_sparse_fine_tuning_keeps_the_pattern_on_triton():
    effdl.set_backend("triton")
    layer = effdl.nn.SparseLinear.from_dense(torch.nn.Linear(16, 6), 2, 4)
    before = layer.meta.clone()
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        layer(rand(5, 16)).square().mean().backward()
        opt.step()
    assert torch.equal(layer.meta, before)
    assert layer.values.grad is not None and layer.values.grad.abs().sum() > 0


# ---------------------------------------------------------------- torch.compile and opcheck


def _compiled_pipeline(x, values, meta, wq, w_scale):
    y = T.nm_linear(x, values, meta, 2, 4)
    q, q_scale = T.quantize_rows(y)
    return T.int8_linear(q, q_scale, wq, w_scale, None, torch.float16)


@pytest.mark.parametrize(("device", "backend"), [pytest.param("cpu", "aot_eager", marks=interpreter),
                                                 pytest.param("cuda", "inductor", marks=pytest.mark.cuda)])
def test_torch_compile_fullgraph(device, backend):
    """One graph, no breaks: the fakes give shapes, the failure checks stay in the graph.
    (On CPU the ops are opaque, so Inductor would add only its own compile time.)"""
    torch._dynamo.reset()
    x = rand(7, 24, device=device)
    values, meta = T.nm_compress(nm_weight(20, 24, 2, 4, device=device), 2, 4)
    wq = torch.randint(-127, 128, (9, 20), dtype=torch.int8, device=device)
    w_scale = torch.rand(9, device=device) * 0.01
    args = (x, values, meta, wq, w_scale)
    compiled = torch.compile(_compiled_pipeline, fullgraph=True, backend=backend)
    assert torch.equal(compiled(*args), _compiled_pipeline(*args))
    meta[2, 1] = 0xFF  # row 2, columns 8..15 all kept: the compiled graph still checks the mask
    with pytest.raises(RuntimeError, match=r"nm_linear: meta is not a valid 2:4 mask"):
        compiled(*args)


@pytest.mark.cuda
def test_torch_compile_traces_into_the_kernels():
    """On a GPU the ops are triton_ops: Inductor's code calls the Triton kernels itself."""
    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    x = rand(16, 64, device="cuda")
    values, meta = T.nm_compress(nm_weight(32, 64, 2, 4, device="cuda"), 2, 4)
    compiled = torch.compile(lambda t: torch.relu(T.nm_linear(t, values, meta, 2, 4)), fullgraph=True)
    out, code = run_and_get_code(compiled, x)
    assert_close_rel(out, torch.relu(reference.nm_linear(x, values, meta, 2, 4)), TOL[torch.float32])
    assert "_linear_kernel" in "\n".join(code)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", backends.TRITON_OPS)
def test_opcheck(device, op):
    args = _first_sample(op, device)
    # with gradients, the AOT test compiles the backward too: seconds for nm_linear, too many for
    # dwsep_conv2d in the interpreter (its backward is the effdl op's, checked by test_opcheck.py)
    if op == "nm_linear" or (op in DIFF_ARGNUMS and device == "cuda"):
        args = tuple(a.detach().requires_grad_(True) if i in DIFF_ARGNUMS[op] and a is not None else a
                     for i, a in enumerate(args))
    torch.library.opcheck(getattr(torch.ops.effdl_triton, op), args)
