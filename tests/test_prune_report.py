"""effdl.prune.sparsity_report: per-layer weights and FLOPs before/after pruning."""

from __future__ import annotations

import torch
from torch import nn

import effdl
from effdl.models import count_flops
from effdl.prune import magnitude_prune, make_permanent, nm_prune, sparsity_report


def cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 2))


def test_counts_by_hand():
    model = cnn()
    with torch.no_grad():
        model[2].weight[:, :2] = 0  # half of conv 2's 4*8*9 = 288 weights
    x = torch.randn(3, 1, 4, 4)
    report = sparsity_report(model, x)
    assert [r.name for r in report.layers] == ["0", "2", "5", "7"]
    row = report["2"]
    assert row.shape == (8, 4, 3, 3) and row.params == 288 and row.nonzero == 144 and row.sparsity == 0.5
    # 3 images x 16 output positions x 288 weights x 2 FLOPs, and half of it
    assert row.flops == 3 * 16 * 288 * 2 and row.nonzero_flops == 3 * 16 * 144 * 2
    assert report.params == 36 + 288 + 128 * 16 + 32 and report.nonzero == report.params - 144
    assert report.flops == count_flops(model, x) and report.nonzero_flops == count_flops(model, x, nonzero=True)


def test_pruned_model_report_and_table():
    model = cnn()
    magnitude_prune(model, 0.75, scope="layer", verbose=False)
    report = sparsity_report(model, torch.randn(1, 1, 4, 4))
    assert report["2"].nonzero == 72 and report["5"].nonzero == 512
    assert report["0"].sparsity == 0.0 and report["7"].sparsity == 0.0
    text = str(report)
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "shape", "sparsity", "params", "nonzero", "FLOPs", "nonzero", "FLOPs"]
    assert "8x4x3x3" in text and "75.00%" in text and lines[-1].startswith("total")
    assert f"{report.params:,}" in lines[-1] and f"{report.nonzero_flops:,}" in lines[-1]


def test_without_example_input_there_are_no_flops():
    report = sparsity_report(cnn())
    assert report.flops is None and all(r.flops is None for r in report.layers)
    assert "FLOPs" not in str(report) and report.sparsity == 0.0


def test_sparse_linear_rows_after_sparsify():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    nm_prune(model, 2, 4, keep_first_last=False, verbose=False)
    make_permanent(model)
    before = sparsity_report(model, torch.randn(2, 16))
    effdl.sparsify_(model, 2, 4, verbose=False)
    after = sparsity_report(model, torch.randn(2, 16))
    assert [r.name for r in after.layers] == ["0", "2"]
    assert after["0"].params == 512 and after["0"].nonzero == before["0"].nonzero == 256
    assert after["0"].shape == (32, 16)
    assert after.nonzero_flops == before.nonzero_flops
