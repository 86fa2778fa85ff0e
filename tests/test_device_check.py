"""The GPU device check's pieces that run without a GPU: the script's syntax, the junit ->
validated.json converter, the GPU benchmark cases (formulas, builders on CPU tensors, the
timer's rotation) and ``python -m bench --device cuda``'s refusal without a GPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import gpu_cases, gpu_run, gpu_timing, validate
from bench.harness import Budget, Candidate

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "device_check.sh"
TINY = Budget(seconds=0.0, min_reps=3, max_case_s=5.0, max_reps=3, sample_s=0.0, warmup_s=0.0)


# ---------------------------------------------------------------- the script


def test_device_check_script_parses():
    assert SCRIPT.stat().st_mode & 0o111, "bench/device_check.sh must be executable"
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_device_check_script_shellcheck():
    subprocess.run(["shellcheck", "-S", "warning", str(SCRIPT)], check=True)


def test_device_check_script_never_changes_gpu_settings():
    text = SCRIPT.read_text()
    for forbidden in ("nvidia-smi -pm", "nvidia-smi -lgc", "nvidia-smi -ac", "nvidia-smi -pl", "nvidia-smi -r",
                      "nvidia-smi -mig", "--gpu-reset", "pip install"):
        assert forbidden not in text, forbidden


# ---------------------------------------------------------------- junit -> validated.json

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="9">
 <testcase classname="tests.test_ops" name="test_nm_linear[cuda-bf16-0]" time="0.1"/>
 <testcase classname="tests.test_ops" name="test_nm_linear[cuda-f32-1]" time="0.1"/>
 <testcase classname="tests.test_ops" name="test_int8_linear[cuda-f32-0]" time="0.1">
  <failure message="relative error 0.5 &gt; 1e-05">trace</failure></testcase>
 <testcase classname="tests.test_ops" name="test_int8_linear[cuda-f32-1]" time="0.1"/>
 <testcase classname="tests.test_ops" name="test_nm_int8_linear_thing[cuda]" time="0.1"/>
 <testcase classname="tests.test_opcheck" name="test_opcheck_cuda[dwsep_conv2d]" time="0.1">
  <error message="CUDA error: an illegal memory access">trace</error></testcase>
 <testcase classname="tests.test_ops.TestGroup" name="test_quantize_rows_zero_row[cuda]" time="0.1"/>
 <testcase classname="tests.test_ops" name="test_int8_weight_linear[cuda-f32-0]" time="0.0">
  <skipped message="no CUDA GPU">skip</skipped></testcase>
 <testcase classname="tests.test_triton_ops" name="test_nm_linear[cuda-bf16]" time="0.1"/>
</testsuite></testsuites>
"""


def _junit(tmp_path: Path, text: str = JUNIT) -> Path:
    path = tmp_path / "cuda-tests.xml"
    path.write_text(text)
    return path


def test_parse_junit_outcomes_and_modules(tmp_path):
    results = validate.parse_junit(_junit(tmp_path))
    assert [r.outcome for r in results] == ["passed", "passed", "failed", "passed", "passed", "error", "passed",
                                            "skipped", "passed"]
    assert results[2].message == "relative error 0.5 > 1e-05"
    assert results[6].module == "test_ops"  # a test class: the module above it
    assert [validate.family(r) for r in results][-1] == "triton"
    assert validate.op_of(results[4]) == "nm_int8_linear"  # the longest op name, not int8_linear


def test_validated_ops_rule(tmp_path):
    summary = validate.summarize(validate.parse_junit(_junit(tmp_path)))
    assert summary["cuda"]["nm_linear"] == {"passed": 2, "failed": 0, "skipped": 0}
    assert summary["cuda"]["int8_linear"] == {"passed": 1, "failed": 1, "skipped": 0}
    assert summary["cuda"]["dwsep_conv2d"] == {"passed": 0, "failed": 1, "skipped": 0}  # error = failed
    assert summary["cuda"]["int8_weight_linear"] == {"passed": 0, "failed": 0, "skipped": 1}
    ops = validate.validated_ops(summary)
    # int8_linear had a failure, dwsep an error, int8_weight_linear only skips
    assert ops == {"cuda": ["nm_int8_linear", "nm_linear", "quantize_rows"], "triton": ["nm_linear"]}


def test_a_failed_test_without_an_op_blocks_its_family(tmp_path):
    text = JUNIT.replace("</testsuite>", '<testcase classname="tests.test_triton_ops" name="test_bf16_dots_on_gpu">'
                         '<failure message="bad">t</failure></testcase></testsuite>')
    ops = validate.validated_ops(validate.summarize(validate.parse_junit(_junit(tmp_path, text))))
    assert ops["triton"] == [] and ops["cuda"] == ["nm_int8_linear", "nm_linear", "quantize_rows"]


def test_candidate_extends_the_base_without_duplicates():
    base = {"_doc": "d", "cuda": {"nm_linear": ["sm_80"]}, "triton": {"nm_linear": ["sm_90"]}}
    doc = validate.candidate(base, {"cuda": ["nm_linear", "int8_linear"], "triton": ["nm_linear"]}, "sm_90")
    assert doc == {"_doc": "d", "cuda": {"nm_linear": ["sm_80", "sm_90"], "int8_linear": ["sm_90"]},
                   "triton": {"nm_linear": ["sm_90"]}}
    assert base["cuda"]["nm_linear"] == ["sm_80"]  # the base is not modified
    with pytest.raises(ValueError, match="arch must look like 'sm_90'"):
        validate.candidate(base, {}, "9.0a")


def test_validate_cli_writes_candidate_and_summary(tmp_path, capsys):
    base = tmp_path / "validated.json"
    base.write_text(json.dumps({"cuda": {}, "triton": {}}))
    out, summary = tmp_path / "cand.json", tmp_path / "summary.json"
    rc = validate.main([str(_junit(tmp_path)), "--arch", "sm_90", "--base", str(base), "--out", str(out),
                        "--summary", str(summary)])
    assert rc == 0
    assert json.loads(out.read_text()) == {"cuda": {"nm_int8_linear": ["sm_90"], "nm_linear": ["sm_90"],
                                               "quantize_rows": ["sm_90"]},
                                           "triton": {"nm_linear": ["sm_90"]}}
    s = json.loads(summary.read_text())
    assert s["tests"] == 9 and {f["name"] for f in s["failures"]} == {"test_int8_linear[cuda-f32-0]",
                                                                       "test_opcheck_cuda[dwsep_conv2d]"}
    text = capsys.readouterr().out
    assert "9 (6 passed, 2 failed/errored, 1 skipped)" in text
    assert "| int8_linear " in text and "| no " in text and "| yes " in text


def test_validate_cli_rejects_a_broken_file(tmp_path, capsys):
    bad = tmp_path / "bad.xml"
    bad.write_text("<testsuites><testcase")
    assert validate.main([str(bad), "--arch", "sm_90"]) == 2
    assert "cannot read it as XML" in capsys.readouterr().err


# ---------------------------------------------------------------- GPU cases: lists and formulas


def test_case_lists():
    full = gpu_cases.gpu_cases(list(gpu_cases.OPS), quick=False)
    by_op = {op: [c for c in full if c.op == op] for op in gpu_cases.OPS}
    assert {op: len(v) for op, v in by_op.items()} == {"nm_linear": 24, "int8_linear": 12, "nm_int8_linear": 12,
                                                       "int8_weight_linear": 12, "dwsep_conv2d": 10}
    assert [c.op for c in full[:5]] == list(gpu_cases.OPS)  # round-robin: a cut-short run covers every op
    # any prefix spreads over both weights, decode and prefill; fp16 2:4 comes after every bf16 case
    first = [(c.params["N"], c.params["phase"]) for c in by_op["int8_linear"][:4]]
    assert first == [(4096, "decode"), (4096, "prefill"), (11008, "decode"), (11008, "prefill")]
    assert [c.params["dtype"] for c in by_op["nm_linear"]] == ["bf16"] * 12 + ["fp16"] * 12
    assert full[-12:] == by_op["nm_linear"][12:]
    assert [c.params["B"] for c in by_op["dwsep_conv2d"][:2]] == [32, 1]
    ms = sorted({c.params["M"] for c in by_op["int8_linear"]})
    assert ms == [1, 4, 16, 512, 2048, 8192]
    assert {(c.params["K"], c.params["N"]) for c in by_op["int8_linear"]} == {(4096, 4096), (4096, 11008)}
    assert {c.params["dtype"] for c in by_op["nm_linear"]} == {"bf16", "fp16"}
    assert {c.params["B"] for c in by_op["dwsep_conv2d"]} == {1, 32}
    quick = gpu_cases.gpu_cases(list(gpu_cases.OPS), quick=True)
    assert len(quick) <= 10
    with pytest.raises(ValueError, match="unknown GPU op 'nm_compress'"):
        gpu_cases.gpu_cases(["nm_compress"], quick=True)


def test_linear_formulas():
    K = N = 4096
    dense, work, nbytes = gpu_cases.linear_counts("nm_linear", K, N, 1)
    assert dense == 2 * 4096 * 4096 and work == dense / 2
    # bf16 kept values (half of the weight) + 4 bits of mask per group of 4 + bf16 x and y
    assert nbytes == 4096 * 2048 * 2 + 4096 * 4096 // 8 + 4096 * 2 + 4096 * 2
    dense, work, nbytes = gpu_cases.linear_counts("int8_linear", 4096, 11008, 2048)
    assert dense == work == 2 * 2048 * 11008 * 4096
    assert nbytes == 11008 * 4096 + 4 * 11008 + 2048 * 4096 * 2 + 2048 * 11008 * 2
    dense, work, nbytes = gpu_cases.linear_counts("nm_int8_linear", 4096, 4096, 16)
    assert work == dense / 2
    # int8 kept values (half of the weight) + the mask + fp32 scales + bf16 x and y
    assert nbytes == 4096 * 2048 + 4096 * 4096 // 8 + 4 * 4096 + 16 * 4096 * 2 + 16 * 4096 * 2
    with pytest.raises(ValueError, match="got 'dwsep_conv2d'"):
        gpu_cases.linear_counts("dwsep_conv2d", 8, 8, 1)


def test_dwsep_formulas():
    flops, nbytes = gpu_cases.dwsep_counts(32, 112, 16, 1, 1)
    assert flops == 2 * 112 * 112 * 32 * 9 + 2 * 112 * 112 * 32 * 16
    assert nbytes == (32 * 112 * 112 + 16 * 112 * 112 + 32 * 9 + 32 + 16 * 32 + 16) * 2
    flops, _ = gpu_cases.dwsep_counts(96, 112, 24, 2, 32)
    assert flops == 32 * 56 * 56 * (2 * 96 * 9 + 2 * 96 * 24)  # stride 2, padding 1: 112 -> 56


def test_sparse24_pattern_and_torch_quantize_rows():
    w = gpu_cases.sparse24(8, 32, torch.float32, torch.device("cpu"))
    assert ((w.view(8, 8, 4) != 0).sum(-1) == 2).all()
    x = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]])
    q, s = gpu_cases.torch_quantize_rows(x)
    assert torch.equal(q, torch.tensor([[64, -127, 32], [0, 0, 0]], dtype=torch.int8))  # 63.5 -> 64 (half-even)
    assert s[0] == pytest.approx(2 / 127) and s[1] > 0


# ---------------------------------------------------------------- GPU cases: builders on CPU tensors


def test_nm_linear_builder_on_cpu():
    built = gpu_cases.check(gpu_cases._build_nm_linear(64, 32, 4, torch.float16, torch.device("cpu"), 4096))
    cands = {c.name: c for c in built.candidates}
    assert list(cands) == ["effdl cuda", "effdl triton", "effdl cuda simple", "cuBLAS dense", "cuSPARSELt",
                           "CUTLASS 2:4"]
    assert "backend 'cuda' is forced but the input is on cpu" in cands["effdl cuda"].error
    assert "backend 'cuda' is forced but the input is on cpu" in cands["effdl cuda simple"].error
    assert cands["cuSPARSELt"].error and cands["CUTLASS 2:4"].error  # unavailable, with the reason
    assert built.errors["cuBLAS dense"] < 1e-2
    assert built.errors["effdl triton"] < 1e-2  # fp16 dots are right in triton's interpreter
    assert built.n_sets == 4  # 2 x 4096 bytes of L2 / (64*32*2/2 + 4*64*2) bytes per set
    assert built.set_bytes["cuBLAS dense"] == 64 * 32 * 2 + 4 * 64 * 2


def test_int8_builders_on_cpu():
    built = gpu_cases.check(gpu_cases._build_int8_linear(64, 32, 4, torch.device("cpu"), 4096),
                            skip={"effdl cuda": "its cuda tests failed"})
    assert built.candidates[0].error == "its cuda tests failed" and built.ref_out is None
    assert built.candidates[2].error == "its cuda tests failed"  # the simple cuda kernels are skipped with them
    assert [c.name for c in built.candidates] == ["effdl cuda", "effdl triton", "effdl cuda simple",
                                                  "_int_mm+epilogue", "cuBLAS bf16"]
    out = built.candidates[3].calls[0]()  # padded to 32 rows inside, 4 rows out
    assert out.shape == (4, 32) and out.dtype == torch.bfloat16
    assert built.errors["_int_mm+epilogue"] < built.tol and built.errors["effdl triton"] < built.tol
    built = gpu_cases.check(gpu_cases._build_int8_weight_linear(64, 32, 4, torch.device("cpu"), 4096))
    assert built.errors["cuBLAS bf16"] < built.tol
    assert "effdl cuda simple" in {c.name for c in built.candidates}
    prefill = gpu_cases._build_int8_weight_linear(64, 32, 17, torch.device("cpu"), 4096)
    assert "effdl cuda simple" not in {c.name for c in prefill.candidates}  # decode sizes only


def test_int8_wgmma_candidate_only_when_asked_at_prefill_sizes(monkeypatch):
    """The opt-in wgmma kernel is timed only when the run asks (EFFDL_BENCH_WGMMA=1) and from 128 rows,
    and is skipped with the other effdl cuda kernels."""
    cpu = torch.device("cpu")
    names = lambda built: [c.name for c in built.candidates]  # noqa: E731
    assert gpu_cases.WGMMA not in names(gpu_cases._build_int8_linear(64, 32, 128, cpu, 4096))
    monkeypatch.setenv("EFFDL_BENCH_WGMMA", "1")
    assert gpu_cases.WGMMA not in names(gpu_cases._build_int8_linear(64, 32, 127, cpu, 4096))
    built = gpu_cases.check(gpu_cases._build_int8_linear(64, 32, 128, cpu, 4096),
                            skip={"effdl cuda": "its cuda tests failed"})
    assert names(built) == ["effdl cuda", "effdl triton", "effdl cuda wgmma", "_int_mm+epilogue", "cuBLAS bf16"]
    assert built.candidates[2].error == "its cuda tests failed"
    built = gpu_cases.check(gpu_cases._build_int8_linear(64, 32, 128, cpu, 4096))
    assert "backend 'cuda' is forced but the input is on cpu" in built.candidates[2].error
    assert "EFFDL_CUDA_WGMMA" not in os.environ  # set around the call only


def test_nm_int8_builder_on_cpu():
    built = gpu_cases.check(gpu_cases._build_nm_int8_linear(64, 32, 4, torch.device("cpu"), 4096))
    cands = {c.name: c for c in built.candidates}
    assert list(cands) == ["effdl cuda", "effdl triton", "effdl cuda simple", "effdl dense int8",
                           "_int_mm+epilogue", "cuBLAS bf16"]
    assert "backend 'cuda' is forced but the input is on cpu" in cands["effdl dense int8"].error
    assert built.errors["effdl triton"] < built.tol and built.errors["cuBLAS bf16"] < built.tol
    assert built.errors["_int_mm+epilogue"] < built.tol  # the same quantized 2:4 weight, densely
    assert built.set_bytes["effdl triton"] < built.set_bytes["effdl dense int8"]


def test_dwsep_builder_on_cpu():
    built = gpu_cases.check(gpu_cases._build_dwsep(8, 8, 4, 2, 2, torch.device("cpu"), 4096))
    peer = built.candidates[2]
    assert peer.name == "cuDNN dw+pw" and built.errors["cuDNN dw+pw"] < 1e-2
    assert peer.calls[0]().shape == (2, 4, 4, 4)


# ---------------------------------------------------------------- the timer and the runner


def test_timer_rotates_sets_and_reports_broken_candidates():
    seen: dict[str, list[int]] = {"a": [], "b": []}
    a = Candidate("a", [lambda i=i: seen["a"].append(i) for i in range(3)])
    b = Candidate("b", [lambda i=i: seen["b"].append(i) for i in range(2)])

    def boom():
        raise RuntimeError("kernel exploded")

    broken = Candidate("broken", [boom])
    missing = Candidate("missing", error="not in this torch")
    timings = gpu_timing.time_interleaved_device([a, b, broken, missing], TINY, torch.device("cpu"))
    assert [t.name for t in timings] == ["a", "b", "broken", "missing"]
    assert timings[0].samples == timings[1].samples == 3 and timings[0].median_s > 0
    assert "kernel exploded" in timings[2].error and timings[3].error == "not in this torch"
    # consecutive calls take consecutive sets, wrapping around
    assert seen["a"] == [i % 3 for i in range(len(seen["a"]))]
    assert seen["b"] == [i % 2 for i in range(len(seen["b"]))]


def test_ceilings_on_cpu():
    c = gpu_timing.measure_ceilings(torch.device("cpu"), TINY, quick=True, gemm_size=64, copy_mib=1)
    assert c["gemm"]["flops"] == 2 * 64**3 and c["gemm"]["TFLOPs"] > 0
    assert c["copy"]["bytes"] == 2 << 20 and c["copy"]["TBps"] > 0


def test_run_case_derive_and_tables_on_cpu():
    case = gpu_cases.linear_case("nm_linear", 64, 32, 4, torch.float16)
    r = gpu_run.run_case(case, torch.device("cpu"), 4096, TINY, seed=0)
    assert "error" not in r, r.get("error")
    assert r["candidates"]["effdl cuda"]["median_ms"] is None and r["candidates"]["effdl cuda"]["error"]
    assert r["check"]["ok"] == {"effdl triton": True}
    ratio = r["ratios"]["effdl triton"]["cuBLAS dense"]
    cand = r["candidates"]
    assert ratio == pytest.approx(cand["cuBLAS dense"]["median_ms"] / cand["effdl triton"]["median_ms"], rel=1e-3)
    ceilings = {"gemm": {"TFLOPs": 1.0}, "copy": {"TBps": 1.0}}
    gpu_run.derive(r, ceilings)
    t = cand["effdl triton"]["median_ms"] / 1e3
    ach = r["achieved"]["effdl triton"]
    assert ach["TFLOPs"] == pytest.approx(case.flops / t / 1e12)
    assert ach["pct_of_ceiling"] == pytest.approx(100 * max(case.work_flops / t / 1e12, case.bytes / t / 1e12))
    doc = {"cases": [r, gpu_run._skipped(case, "time budget of 1 s spent")]}
    table = gpu_run.format_tables(doc)
    assert "## nm_linear" in table and "unavailable" in table and f"{ratio:.2f}x" in table
    assert "skipped: time budget of 1 s spent" in table and "triton:ok" in table


# ---------------------------------------------------------------- python -m bench --device cuda


def _bench(*args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT / "python"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where no GPU exists")
def test_bench_device_cuda_without_gpu_says_why():
    p = _bench("--device", "cuda", "--quick")
    assert p.returncode == 1
    assert "needs a CUDA GPU: torch.cuda.is_available() is False" in p.stderr


def test_bench_device_cuda_list_and_bad_op():
    p = _bench("--device", "cuda", "--list", "--ops", "dwsep_conv2d")
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 10
    p = _bench("--device", "cuda", "--ops", "nm_compress")
    assert p.returncode == 2 and "unknown op(s) nm_compress for --device cuda" in p.stderr


def test_gpu_main_end_to_end_on_cpu(tmp_path, monkeypatch, capsys):
    """The runner's whole flow (ceilings, cases, time budget, JSON after each case, tables) with the
    GPU swapped for the CPU and one tiny case; the second case finds the time budget spent."""
    import argparse

    cpu = torch.device("cpu")
    case = gpu_cases.linear_case("int8_weight_linear", 64, 32, 4)
    monkeypatch.setattr(gpu_run, "require_gpu", lambda: cpu)
    monkeypatch.setattr(gpu_run, "gpu_info", lambda device: {"gpu": "Fake GPU 9000", "arch": "sm_90",
                                                             "l2_bytes": 4096, "torch": "t", "triton": "x"})
    monkeypatch.setattr(gpu_run, "gpu_cases", lambda ops, quick: [case, case])
    monkeypatch.setattr(gpu_run, "measure_ceilings", lambda device, budget, quick: {
        "gemm": {"TFLOPs": 1.0}, "copy": {"TBps": 1.0}})
    monkeypatch.setattr(gpu_run, "QUICK", TINY)
    clock = iter([0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0])  # deadline 2.5: case 1 starts at 1.0, case 2 at 3.0
    monkeypatch.setattr(gpu_run, "_now", lambda: next(clock))
    args = argparse.Namespace(ops=["int8_weight_linear"], quick=True, filter=None, list=False, out=str(tmp_path),
                              time_budget=2.5, seed=0)
    rc = gpu_run.main(args)
    doc = json.loads(next(tmp_path.glob("cuda-fake-gpu-9000-sm90-*-quick.json")).read_text())
    first, second = doc["cases"]
    assert second["skipped"] == "time budget of 2 s spent" and doc["total_s"] == 4.0
    assert first["candidates"]["cuBLAS bf16"]["median_ms"] > 0 and "achieved" in first
    out = capsys.readouterr().out
    assert "## int8_weight_linear" in out and out.strip().splitlines()[-1].startswith("wrote ")
    # bf16 dots are garbage in triton's interpreter (DESIGN.md §5): the triton check is BAD here, and says so
    assert rc == (0 if first["check"]["ok"].get("effdl triton", True) else 1)
    gpu_run.print_tables(next(tmp_path.glob("*.json")))
    assert "Fake GPU 9000 (sm_90)" in capsys.readouterr().out


def test_kernels_that_failed_their_tests_are_not_benchmarked(tmp_path):
    validate.main([str(_junit(tmp_path)), "--arch", "sm_90", "--summary", str(tmp_path / "v.json")])
    untrusted = gpu_run.untrusted_kernels(json.loads((tmp_path / "v.json").read_text()))
    assert set(untrusted) == {("cuda", "int8_linear"), ("cuda", "dwsep_conv2d")}
    assert "1 of its cuda kernel's cuda tests failed" in untrusted[("cuda", "int8_linear")]
    skips = {op: gpu_run.skips_for(gpu_cases.gpu_cases([op], quick=True)[0], untrusted) for op in gpu_cases.OPS}
    assert set(skips["int8_linear"]) == {"effdl cuda"} and set(skips["dwsep_conv2d"]) == {"effdl cuda"}
    assert skips["nm_linear"] == {} and skips["int8_weight_linear"] == {}
    # the W8A8 path also calls quantize_rows: its failure keeps the int8_linear case's kernel out too
    only_q = {("triton", "quantize_rows"): "q failed"}
    assert gpu_run.skips_for(gpu_cases.gpu_cases(["int8_linear"], quick=True)[0], only_q) == {"effdl triton": "q failed"}
    assert gpu_run.cuda_context_error(torch.device("cpu")) is None


def test_a_test_without_a_result_counts_as_failed(tmp_path):
    """A shard killed by its time limit (or crashed) leaves no junit: its tests must not vanish."""
    ids = tmp_path / "cuda-tests.txt"
    ids.write_text("tests/test_ops.py::test_nm_linear[cuda-bf16-0]\ntests/test_ops.py::test_nm_linear[cuda-f32-1]\n"
                   "tests/test_ops.py::TestGroup::test_quantize_rows_zero_row[cuda]\n"
                   "tests/test_triton_ops.py::test_nm_linear[cuda-fp16-7]\n"
                   "4/1972 tests collected (1968 deselected) in 3.1s\n")
    expected = validate.expected_tests(ids)
    assert [(e.module, e.name) for e in expected][2:] == [("test_ops", "test_quantize_rows_zero_row[cuda]"),
                                                          ("test_triton_ops", "test_nm_linear[cuda-fp16-7]")]
    results = validate.with_missing(validate.parse_junit(_junit(tmp_path)), expected)
    missing = [r for r in results if r.message.startswith("no result")]
    assert [(r.module, r.name, r.outcome) for r in missing] == [("test_triton_ops", "test_nm_linear[cuda-fp16-7]",
                                                                 "error")]
    assert validate.validated_ops(validate.summarize(results))["triton"] == []
    rc = validate.main([str(_junit(tmp_path)), "--arch", "sm_90", "--expected", str(ids),
                        "--summary", str(tmp_path / "v.json")])
    assert rc == 0 and json.loads((tmp_path / "v.json").read_text())["validated"]["triton"] == []
