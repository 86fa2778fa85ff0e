"""``effdl demo --quick`` end to end, and the consistency of what it reports.

The report must be honest: sizes are the files on disk, accuracies are those of
the saved models, speedups are ratios of the reported latencies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import effdl
from effdl import serialize
from effdl.demo import DemoConfig
from effdl.models import count_flops, count_params

QUICK_STAGES = ["teacher", "student", "distilled", "distilled_kernels", "pruned", "pruned_kernels", "ptq"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "report"
    proc = subprocess.run([sys.executable, "-m", "effdl.cli", "demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, json.loads((out / "report.json").read_text()), proc.stdout


def test_every_stage_is_reported_and_printed(quick_run):
    out, report, stdout = quick_run
    assert [st["key"] for st in report["stages"]] == QUICK_STAGES
    for st in report["stages"]:
        assert st["name"] in stdout
        assert set(st["latency_ms"]) == {str(b) for b in report["batch_sizes"]}
    md = (out / "report.md").read_text()
    for st in report["stages"]:
        assert f"| {st['name']} | {st['accuracy']:.2f} |" in md


def test_sizes_are_the_saved_files(quick_run):
    out, report, _ = quick_run
    for st in report["stages"]:
        assert len(st["files"]) == 2
        for rel, size in st["files"].items():
            assert os.path.getsize(out / rel) == size
        assert st["bytes_on_disk"] == sum(st["files"].values())
        assert st["bytes_on_disk"] == serialize.saved_bytes(out / "models" / st["key"])
    assert (out / (report["final_model"] + ".safetensors")).exists()


def test_accuracy_params_flops_recomputed_from_the_saved_models(quick_run):
    out, report, _ = quick_run
    split = effdl.data.digits(seed=report["config"]["seed"])
    for st in report["stages"]:
        model = serialize.load(out / "models" / st["key"])
        assert effdl.training.evaluate(model, split.test_x, split.test_y) == pytest.approx(st["accuracy"], abs=1e-9)
        assert count_params(model) == st["params"]
        assert count_params(model, nonzero=True) == st["params_nonzero"]
        assert count_flops(model, split.test_x[:1]) == st["flops"]


def test_the_compressed_stages_are_what_they_say(quick_run):
    _, report, _ = quick_run
    by_key = {st["key"]: st for st in report["stages"]}
    assert by_key["distilled_kernels"]["layers"]["DWSeparableConv2d"] > 0
    assert by_key["pruned_kernels"]["layers"]["SparseLinear"] == 1
    assert by_key["ptq"]["layers"]["QLinear"] == 1
    # 2:4 leaves half of the pointwise/classifier weights; the stem and depthwise convs stay dense
    pruned = by_key["pruned"]
    assert 0.4 * pruned["params"] < pruned["params_nonzero"] < 0.8 * pruned["params"]
    assert by_key["pruned_kernels"]["bytes_on_disk"] < by_key["pruned"]["bytes_on_disk"]
    assert by_key["ptq"]["bytes_on_disk"] < by_key["distilled_kernels"]["bytes_on_disk"]
    # trained on real data: far above chance even in the quick run
    assert all(st["accuracy"] > 50 for st in report["stages"])


def test_speedups_are_ratios_of_the_latencies(quick_run):
    _, report, _ = quick_run
    by_key = {st["key"]: st for st in report["stages"]}
    refs = report["speedup_references"]
    assert refs == {"teacher": "teacher", "student": "distilled"}
    for st in report["stages"]:
        for ref_name, ref_key in refs.items():
            for bs, s in st[f"speedup_vs_{ref_name}"].items():
                assert s == pytest.approx(by_key[ref_key]["latency_ms"][bs] / st["latency_ms"][bs], rel=1e-12)
                assert st["latency_ms"][bs] > 0


def test_plots_are_small_pngs_linked_from_the_report(quick_run):
    out, report, _ = quick_run
    md = (out / "report.md").read_text()
    assert len(report["plots"]) == 2
    for name in report["plots"].values():
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 200_000
        assert f"]({name})" in md


def test_config_checks():
    with pytest.raises(ValueError, match="unknown steps"):
        DemoConfig.make(quick=True, pipeline=("teacher", "frobnicate"))
    with pytest.raises(ValueError, match="'distill' needs 'teacher'"):
        DemoConfig.make(quick=True, pipeline=("distill",))
    with pytest.raises(ValueError, match="needs a student"):
        DemoConfig.make(quick=True, pipeline=("teacher", "prune"))
    with pytest.raises(ValueError, match="prune: must be one of"):
        DemoConfig.make(quick=True, prune_method="4:8")
    with pytest.raises(ValueError, match="sparsity"):
        DemoConfig.make(quick=True, sparsity=1.5)
    cfg = DemoConfig.make(quick=True, pipeline=("convert", "student"))
    assert cfg.pipeline == ("student", "convert")  # run order, whatever the order given


def test_cli_rejects_a_bad_pipeline(capsys):
    from effdl import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--quick", "--pipeline", "student,nonsense"])
    assert exc.value.code == 2
    assert "unknown steps ['nonsense']" in capsys.readouterr().err


def test_channel_pruning_and_qat_run(tmp_path):
    """Another pipeline: channel pruning (a smaller dense model) then QAT, both reloadable."""
    from effdl.demo import run

    cfg = DemoConfig.make(quick=True, out=str(tmp_path / "r"), pipeline=("teacher", "distill", "prune", "qat"),
                          prune_method="channel", sparsity=0.25)
    cfg.teacher_epochs, cfg.student_epochs, cfg.batch_sizes, cfg.timing_reps = 1, 2, (4,), 2
    report = run(cfg)
    by_key = {st["key"]: st for st in report["stages"]}
    assert list(by_key) == ["teacher", "distilled", "pruned", "qat"]
    assert by_key["pruned"]["params"] < by_key["distilled"]["params"]
    assert by_key["qat"]["layers"]["QLinear"] == 1 and by_key["qat"]["layers"]["DWSeparableConv2d"] > 0
    # QAT keeps the pruned zeros (none here: channel pruning leaves dense layers) and the shape
    assert by_key["qat"]["params"] <= by_key["pruned"]["params"]
    split = effdl.data.digits(seed=0)
    for key in ("pruned", "qat"):
        model = serialize.load(tmp_path / "r" / "models" / key)
        with torch.inference_mode():
            assert effdl.training.evaluate(model, split.test_x, split.test_y) == pytest.approx(
                by_key[key]["accuracy"], abs=1e-9)


@pytest.mark.parametrize(("device", "message"), [("nonsense", "device: "), ("meta", "'cpu' or 'cuda")]
                         + ([] if torch.cuda.is_available() else [("cuda", "no CUDA GPU is available")]))
def test_cli_rejects_a_bad_device(capsys, tmp_path, device, message):
    from effdl import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--quick", "--device", device, "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
