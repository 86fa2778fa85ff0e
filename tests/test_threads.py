"""The CPU kernels and modules under threads: results do not depend on how many
threads torch uses, and several Python threads may call the same op or the same
module at once (shared weights, caches filled on first use) and get the
single-threaded answer."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from samples import int8, nm_int8_pack, nm_int8_weight, nm_pack, nm_weight, rand, sample_inputs, scales
from torch import nn

from effdl import _ext
from effdl.backends import OPS
from effdl.nn import DWSeparableConv2d, QLinear, SparseLinear, SparseQLinear

pytestmark = pytest.mark.skipif(not _ext.available(), reason="effdl._C is not built")

PY_THREADS = 4
CALLS_PER_THREAD = 6


def _outputs(result) -> tuple[torch.Tensor, ...]:
    return tuple(result) if isinstance(result, tuple | list) else (result,)


def _assert_same(a, b) -> None:
    for x, y in zip(_outputs(a), _outputs(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape and x.stride() == y.stride()
        # bit for bit (NaN-safe): the same kernel must round alike whatever the threads
        assert torch.equal(x.contiguous().view(torch.uint8), y.contiguous().view(torch.uint8))


def _large(op: str) -> tuple:
    """Arguments big enough that the kernels split their work over threads."""
    N, K, M = 256, 512, 16
    values, meta = nm_pack(nm_weight(N, K, 2, 4), 2, 4)
    values_q, meta_q = nm_int8_pack(nm_int8_weight(N, K, 2, 4), 2, 4)
    x_cl = rand(2, 32, 28, 28).to(memory_format=torch.channels_last)
    return {
        "nm_compress": (nm_weight(N, K, 2, 4), 2, 4),
        "nm_decompress": (values, meta, 2, 4),
        "nm_linear": (rand(M, K), values, meta, 2, 4, rand(N)),
        "nm_pack_weight": (values, meta, 2, 4),
        "nm_linear_packed": (rand(M, K), torch.ops.effdl.nm_pack_weight(values, meta, 2, 4), N, rand(N)),
        "quantize_rows": (rand(64, 1024),),
        "int8_linear": (int8(M, K), scales(M), int8(N, K), scales(N), rand(N), None),
        "nm_int8_linear": (int8(M, K), scales(M), values_q, meta_q, 2, 4, scales(N), rand(N), None),
        "int8_weight_linear": (rand(4, K), int8(N, K), scales(N), rand(N)),
        "int8_pack_weight": (int8(N, K),),
        "int8_linear_packed": (int8(M, K), scales(M), torch.ops.effdl.int8_pack_weight(int8(N, K)), scales(N), rand(N),
                               None),
        "dwsep_conv2d": (x_cl, rand(32, 1, 3, 3), rand(32), rand(48, 32, 1, 1), rand(48), [1, 1], [1, 1], [1, 1],
                         "relu6", "none"),
    }[op]


def _samples(op: str, count: int = 3) -> list[tuple]:
    return [*itertools.islice(sample_inputs(op, "cpu", torch.float32), count), _large(op)]


@pytest.fixture
def intra_op_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("op", OPS)
def test_results_do_not_depend_on_the_thread_count(op, intra_op_threads):
    fn = getattr(torch.ops.effdl, op)
    for args in _samples(op):
        torch.set_num_threads(1)
        one = fn(*args)
        torch.set_num_threads(2)
        assert torch.get_num_threads() == 2
        _assert_same(fn(*args), one)


@pytest.mark.parametrize("op", OPS)
def test_concurrent_python_threads_get_the_single_threaded_result(op):
    fn = getattr(torch.ops.effdl, op)
    samples = _samples(op)
    expected = [fn(*args) for args in samples]

    def worker(seed: int) -> None:
        for i in range(CALLS_PER_THREAD):
            j = (seed + i) % len(samples)
            _assert_same(fn(*samples[j]), expected[j])

    with ThreadPoolExecutor(PY_THREADS) as pool:
        for f in [pool.submit(worker, s) for s in range(PY_THREADS)]:
            f.result()


def _modules() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    lin = nn.Linear(96, 40)
    sparse = SparseLinear.from_dense(lin, 2, 4)
    return {
        "QLinear": QLinear.from_float(lin, "dynamic"),
        "QLinear weight_only": QLinear.from_float(lin, "weight_only"),
        "SparseLinear": sparse,
        "SparseQLinear": SparseQLinear.from_sparse(sparse, "dynamic"),
        "DWSeparableConv2d": DWSeparableConv2d(12, 20, kernel_size=3, stride=1, padding=1).eval(),
    }


@pytest.mark.parametrize("name", list(_modules()))
def test_one_module_called_from_several_threads(name):
    """A fresh module (nothing cached yet) is called from several threads at once."""
    reference_module = _modules()[name]
    module = _modules()[name]
    shape = (3, 12, 9, 9) if name == "DWSeparableConv2d" else (5, 96)
    inputs = [torch.randn(*shape) for _ in range(PY_THREADS)]
    with torch.inference_mode():
        expected = [reference_module(x) for x in inputs]

        def worker(i: int) -> None:
            for _ in range(CALLS_PER_THREAD):
                _assert_same(module(inputs[i]), expected[i])

        with ThreadPoolExecutor(PY_THREADS) as pool:
            for f in [pool.submit(worker, i) for i in range(PY_THREADS)]:
                f.result()
