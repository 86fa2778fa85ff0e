"""``effdl plan`` and ``effdl bench`` from the command line; model specs; the bench plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from effdl import cli
from effdl.plan import Plan
from effdl.plan.specs import load_model, make_input, parse_shape

ROOT = Path(__file__).resolve().parents[1]

FACTORY = """
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8))

def not_a_model():
    return 3
"""


def test_plan_command_writes_an_applicable_plan(tmp_path, capsys):
    (tmp_path / "mymodel.py").write_text(FACTORY)
    out = tmp_path / "plan.json"
    rc = cli.main(["plan", "--model", f"{tmp_path / 'mymodel.py'}:build", "--input", "4x32", "--max-error", "30",
                   "--budget-s", "0.01", "--kinds", "int8_dynamic,int8_weight_only", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| layer" in printed and "predicted" in printed and f"wrote {out}" in printed
    plan = Plan.load(out)
    assert [lay.name for lay in plan.layers] == ["0", "2"]
    assert all(set(lay.candidates) == {"int8_dynamic", "int8_weight_only"} for lay in plan.layers)
    assert plan.max_error_db == 30 and plan.target == "latency" and plan.meta["input"] == "4x32"
    # whatever the noisy timings chose, every choice keeps the rules
    for lay in plan.layers:
        if lay.choice:
            c = lay.candidates[lay.choice]
            assert c.sqnr_db >= 30 and c.latency_ms * 1.05 <= lay.dense_ms


def test_model_specs(tmp_path):
    (tmp_path / "mymodel.py").write_text(FACTORY)
    assert isinstance(load_model(f"{tmp_path / 'mymodel.py'}:build"), torch.nn.Sequential)
    bert = load_model("hf-bert:hidden_size=32,num_hidden_layers=1,num_attention_heads=2,intermediate_size=64")
    ids = make_input(bert, "2x5")
    assert ids.dtype == torch.int64 and ids.shape == (2, 5) and int(ids.max()) < bert.config.vocab_size
    assert make_input(torch.nn.Linear(3, 3), "2x3").dtype == torch.float32
    assert parse_shape("1x3x224x224") == [1, 3, 224, 224]
    for bad, match in [("resnet18", "unknown model spec"), ("hf-bert-huge", "unknown BERT preset"),
                       ("hf-bert:hidden_size=big", "KEY=INT"), (f"{tmp_path / 'nope.py'}:build", "no file"),
                       (f"{tmp_path / 'mymodel.py'}:missing", "has no missing"),
                       (f"{tmp_path / 'mymodel.py'}:not_a_model", "not an nn.Module")]:
        with pytest.raises(ValueError, match=match):
            load_model(bad)
    for bad in ["", "1x0", "ax3", "1x-2"]:
        with pytest.raises(ValueError, match="input shape"):
            parse_shape(bad)
    with pytest.raises(ValueError, match="BATCHxSEQ"):
        make_input(bert, "1x2x3")


def test_bench_plot_series_and_png(tmp_path):
    if str(ROOT) not in sys.path:  # bench/ is a folder of the checkout, not an installed package
        sys.path.insert(0, str(ROOT))
    from bench import plot

    result = {"date": "2026-01-01", "mode": "quick", "machine": {"cpu_model": "x", "threads": 1}, "cases": [
        {"op": "int8_linear", "params": {"M": 1, "K": 8}, "ratios": {"fp32": 4.0}},
        {"op": "int8_linear", "params": {"M": 1, "K": 16}, "ratios": {"fp32": 1.0}},
        {"op": "int8_linear", "params": {"M": 16, "K": 8}, "ratios": {"fp32": 0.5}},
        {"op": "dwsep_conv2d", "params": {"B": 8}, "ratios": {"CL": 0.25}},
        {"op": "nm_compress", "params": {"rows": 8}, "ratios": {"ref": 3.0}},  # no batch: not drawn
        {"op": "int8_linear", "params": {"M": 4}, "error": "boom", "ratios": {}},
    ]}
    series = plot.speedup_series(result)
    assert set(series) == {"int8_linear", "dwsep_conv2d"}
    (m1, g1), (m16, g16) = series["int8_linear"]["fp32"]
    assert (m1, m16) == (1, 16) and g1 == pytest.approx(2.0) and g16 == pytest.approx(0.5)  # geomean(4, 1) = 2
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result))
    png = plot.plot(path)
    assert png == tmp_path / "r.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_command_passes_arguments(capsys):
    assert cli.main(["bench", "--list", "--quick", "--ops", "int8_linear"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines and all(line.startswith("int8_linear") for line in lines)
