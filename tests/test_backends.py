"""Backend selection: ``effdl.set_backend``, ``EFFDL_BACKEND``, and ``effdl.info()``."""

from __future__ import annotations

import pytest
import torch
from samples import OPS, sample_inputs
from test_errors import CASES

import effdl
from effdl import backends, reference


@pytest.fixture(autouse=True)
def restore_backend(monkeypatch):
    """Every test starts and ends on "auto" with no EFFDL_BACKEND in the environment."""
    monkeypatch.delenv("EFFDL_BACKEND", raising=False)
    effdl.set_backend("auto")
    yield
    effdl.set_backend("auto")


def _first_sample(op: str) -> tuple:
    return next(iter(sample_inputs(op, "cpu", torch.float32)))


class _Spy:
    """Stands in for a reference op: records the call, then runs the real reference."""

    def __init__(self, fn):
        self.fn = fn
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def _spy_on_reference(monkeypatch, op: str) -> _Spy:
    spy = _Spy(getattr(reference, op))
    monkeypatch.setattr(reference, op, spy)
    return spy


def _outputs(result):
    return result if isinstance(result, tuple) else (result,)


@pytest.mark.parametrize("op", OPS)
def test_reference_backend_routes_to_reference(monkeypatch, op):
    spy = _spy_on_reference(monkeypatch, op)
    effdl.set_backend("reference")
    assert effdl.get_backend() == "reference"
    args = _first_sample(op)
    result = getattr(effdl.ops, op)(*args)
    assert spy.calls == 1
    for a, b in zip(_outputs(result), _outputs(spy.fn(*args)), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", ["auto", "cpu"])
@pytest.mark.parametrize("op", OPS)
def test_native_backends_do_not_use_reference(monkeypatch, op, backend):
    spy = _spy_on_reference(monkeypatch, op)
    effdl.set_backend(backend)
    args = _first_sample(op)
    result = getattr(effdl.ops, op)(*args)
    assert spy.calls == 0
    native = getattr(torch.ops.effdl, op)(*args)
    for a, b in zip(_outputs(result), _outputs(native), strict=True):
        assert torch.equal(a, b)


def test_top_level_functions_are_the_wrappers():
    for op in OPS:
        assert getattr(effdl, op) is getattr(effdl.ops, op)


def test_wrapper_keyword_defaults():
    w = torch.tensor([[1.0, 0.0, 2.0, 0.0]])
    values, meta = effdl.nm_compress(w)  # 2:4 by default
    assert values.tolist() == [[1.0, 2.0]]
    assert torch.equal(effdl.nm_decompress(values, meta), w)
    x = torch.randn(2, 4)
    torch.testing.assert_close(effdl.nm_linear(x, values, meta), x @ w.t())


def test_unknown_backend_raises():
    with pytest.raises(ValueError, match=r"effdl backend must be one of .*got 'tpu'"):
        effdl.set_backend("tpu")
    assert effdl.get_backend() == "auto"


def test_triton_backend_is_accepted(monkeypatch):
    effdl.set_backend("triton")
    assert effdl.get_backend() == "triton"
    effdl.set_backend("auto")
    monkeypatch.setenv("EFFDL_BACKEND", "triton")
    assert effdl.get_backend() == "triton"


def test_triton_backend_on_cpu_tensor_needs_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    effdl.set_backend("triton")
    with pytest.raises(RuntimeError, match=r"quantize_rows: backend 'triton' is forced but the input is on cpu.*"
                                           r"TRITON_INTERPRET=1"):
        effdl.ops.quantize_rows(torch.randn(2, 3))


def test_triton_backend_without_triton_raises(monkeypatch):
    monkeypatch.setattr(backends, "triton_installed", lambda: False)
    effdl.set_backend("triton")
    with pytest.raises(RuntimeError, match=r"nm_linear: backend 'triton' is forced but the triton package is not installed"):
        effdl.ops.nm_linear(*_first_sample("nm_linear"))
    for op, row in backends.op_backends().items():
        assert row["triton"] == ("triton not installed" if op in backends.TRITON_OPS else "no kernel"), op


def test_triton_backend_for_an_op_without_triton_kernel_raises(monkeypatch):
    monkeypatch.setattr(backends, "TRITON_OPS", tuple(op for op in OPS if op != "int8_linear"))
    effdl.set_backend("triton")
    with pytest.raises(RuntimeError, match=r"int8_linear: backend 'triton' is forced but int8_linear has no Triton kernel"):
        effdl.ops.int8_linear(*_first_sample("int8_linear"))
    assert backends.op_backends()["int8_linear"]["triton"] == "no kernel"


@pytest.mark.parametrize(
    ("cuda_built", "validated_here", "triton", "expected"),
    [
        (True, True, True, "native"),  # a validated native kernel wins
        (True, False, True, "triton"),  # built but not validated on this GPU
        (False, False, True, "triton"),  # a CPU-only build
        (True, False, False, "reference"),
        (False, False, False, "reference"),
    ],
)
def test_auto_on_cuda_prefers_validated_native_then_triton(monkeypatch, cuda_built, validated_here, triton, expected):
    """The decision on a CUDA tensor, with the GPU, the build and triton stood in for."""
    monkeypatch.setattr(backends, "cuda_arch", lambda device: "sm_90")
    monkeypatch.setattr(backends, "native_built", lambda kind: kind == "cpu" or cuda_built)
    monkeypatch.setattr(backends, "validated", lambda: {"nm_linear": ["sm_90"] if validated_here else ["sm_80"]})
    monkeypatch.setattr(backends, "triton_installed", lambda: triton)
    monkeypatch.setattr(backends, "_warned", set())
    if expected == "reference":
        with pytest.warns(RuntimeWarning, match=r"effdl.nm_linear: using the pure-PyTorch reference .*triton is not installed"):
            assert backends.select("nm_linear", torch.device("cuda")) == expected
    else:
        assert backends.select("nm_linear", torch.device("cuda")) == expected


@pytest.mark.parametrize(
    ("cuda_built", "validated_here", "triton", "expected"),
    [
        (True, True, True, "auto -> native cuda"),
        (True, False, True, "auto -> triton"),
        (True, False, False, "auto -> reference (its CUDA kernel is not validated on sm_90"),
    ],
)
def test_describe_names_the_kernel_a_module_runs(monkeypatch, recwarn, cuda_built, validated_here, triton, expected):
    """What the modules' repr shows: the resolved choice, without warning or raising."""
    monkeypatch.setattr(backends, "cuda_arch", lambda device: "sm_90")
    monkeypatch.setattr(backends, "native_built", lambda kind: kind == "cpu" or cuda_built)
    monkeypatch.setattr(backends, "validated", lambda: {"nm_linear": ["sm_90"] if validated_here else []})
    monkeypatch.setattr(backends, "triton_installed", lambda: triton)
    monkeypatch.setattr(backends, "_warned", set())
    assert backends.describe("nm_linear", "cuda").startswith(expected)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_describe_on_cpu_and_forced_backends():
    assert backends.describe("int8_linear", "cpu") == "auto -> native cpu"
    effdl.set_backend("cuda")
    assert backends.describe("int8_linear", "cpu").startswith("cuda (forced) -> unusable here: ")
    effdl.set_backend("reference")
    assert backends.describe("int8_linear", "cpu") == "reference (forced)"
    module = effdl.nn.QLinear.from_float(torch.nn.Linear(8, 4))
    assert "backend=reference (forced)" in repr(module)
    effdl.set_backend("auto")
    assert "backend=auto -> native cpu" in repr(module)


def test_forced_cuda_backend_on_cpu_tensor_raises():
    effdl.set_backend("cuda")
    with pytest.raises(RuntimeError, match=r"backend 'cuda' is forced but the input is on cpu"):
        effdl.ops.quantize_rows(torch.randn(2, 3))


def test_env_var_selects_backend(monkeypatch):
    spy = _spy_on_reference(monkeypatch, "nm_linear")
    monkeypatch.setenv("EFFDL_BACKEND", "reference")
    assert effdl.get_backend() == "reference"
    effdl.ops.nm_linear(*_first_sample("nm_linear"))
    assert spy.calls == 1
    assert effdl.info()["backend"] == "reference"


def test_env_var_cpu(monkeypatch):
    spy = _spy_on_reference(monkeypatch, "quantize_rows")
    monkeypatch.setenv("EFFDL_BACKEND", "cpu")
    assert effdl.get_backend() == "cpu"
    effdl.ops.quantize_rows(torch.randn(3, 5))
    assert spy.calls == 0


def test_set_backend_wins_over_env_var(monkeypatch):
    monkeypatch.setenv("EFFDL_BACKEND", "reference")
    effdl.set_backend("cpu")
    assert effdl.get_backend() == "cpu"


def test_bad_env_var_raises(monkeypatch):
    monkeypatch.setenv("EFFDL_BACKEND", "bogus")
    with pytest.raises(ValueError, match=r"must be one of"):
        effdl.get_backend()


def test_info_lists_every_op():
    info = effdl.info()
    assert isinstance(info, dict)
    assert set(info["ops"]) == set(OPS) == set(backends.OPS)
    for op, row in info["ops"].items():
        assert set(row) >= {"cpu", "cuda", "triton", "reference"}, op
        assert row["cpu"] == "yes", op
        assert row["reference"] == "yes", op
        archs = backends.validated("triton").get(op)
        triton = ("validated " + ",".join(archs) if archs else "yes, not validated") if backends.triton_installed() \
            else "triton not installed"
        assert row["triton"] == (triton if op in backends.TRITON_OPS else "no kernel"), op
    assert info["native"] == "loaded"
    assert info["backend"] == "auto"
    assert info["effdl"] == effdl.__version__
    assert info["torch"] == torch.__version__


def test_info_reports_forced_backend():
    effdl.set_backend("reference")
    assert effdl.info()["backend"] == "reference"


def test_reference_backend_rejects_bad_input():
    """DESIGN §2: bad input raises through every backend, the reference included. Every
    case of test_errors.py must raise a RuntimeError or ValueError under "reference"."""
    effdl.set_backend("reference")
    accepted, wrong_type = [], []
    for case in CASES:
        args = case.args()
        try:
            getattr(effdl.ops, case.op)(*args)
        except (RuntimeError, ValueError):
            continue
        except Exception as exc:  # the type is what is checked
            wrong_type.append(f"{case.id} ({type(exc).__name__}: {exc})")
        else:
            accepted.append(case.id)
    assert not accepted and not wrong_type, (
        f"the reference backend silently accepts {len(accepted)} bad inputs: {accepted}; "
        f"raises another error type for: {wrong_type}"
    )
