"""effdl.plan: per-layer candidates, the JSON plan, the solver's rules, apply_plan, and
policy="faster_only" — with deterministic timers (no timing asserts here)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from plan_timers import CostTimer, TableTimer
from torch import nn

import effdl
from effdl import convert
from effdl.nn import DWSeparableConv2d, QLinear, SparseLinear
from effdl.plan import Plan, apply_plan, choose, find_units, load_plan, make_plan, sqnr_db
from effdl.plan.cli import verify
from effdl.plan.io import CandidateResult, LayerPlan


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32), nn.ReLU(), nn.Linear(32, 10))


def dwsep_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.ReLU6(),
        nn.Conv2d(16, 24, 1), nn.BatchNorm2d(24),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 10),
    )
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def layer(name, dense_ms, cands, dense_bytes=1000, calls=1):
    return LayerPlan(name, "Linear", [name], [1, 4], calls, dense_ms, dense_bytes,
                     {k: CandidateResult(*v) for k, v in cands.items()})


# ---------------------------------------------------------------- SQNR


def test_sqnr_hand_computed():
    ref = torch.tensor([3.0, 4.0])  # energy 25
    assert sqnr_db(ref + torch.tensor([0.5, 0.0]), ref) == pytest.approx(10 * math.log10(25 / 0.25))
    assert sqnr_db(ref.clone(), ref) == 200.0  # exact: capped, JSON-safe
    assert sqnr_db(torch.zeros(2), ref) == pytest.approx(0.0)
    assert sqnr_db(torch.tensor([float("nan"), 0.0]), ref) == -200.0


def test_sqnr_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        sqnr_db(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="tensors"):
        sqnr_db([1.0], torch.zeros(1))


# ---------------------------------------------------------------- candidates


def test_units_and_candidates():
    net = dwsep_net()
    units = {u.name: u for u in find_units(net)}
    assert set(units) == {"1", "8"}
    assert units["1"].type == "DWSepRun" and units["1"].modules == ["1", "2", "3", "4", "5"]
    lin = units["8"]
    assert {"sparse_2_4", "int8_dynamic", "int8_weight_only", "sparse_int8"} <= set(lin.kinds)
    assert type(lin.build("sparse_int8")) is effdl.nn.SparseQLinear
    odd = find_units(nn.Sequential(nn.Linear(6, 4)))[0]  # 6 % 4 != 0
    assert "sparse_2_4" not in odd.kinds and "multiple of 4" in odd.skipped["sparse_2_4"]
    with pytest.raises(ValueError, match="unknown candidate kind"):
        find_units(net, ["int4"])
    with pytest.raises(ValueError, match="not applicable"):
        odd.build("sparse_2_4")


# ---------------------------------------------------------------- solver rules


def test_never_slower_and_margin():
    plan = Plan([
        layer("a", 1.0, {"int8_dynamic": (1.2, 40.0, 250)}),  # slower: stays dense
        layer("b", 1.0, {"int8_dynamic": (0.97, 40.0, 250)}),  # 3 % faster: inside the margin
        layer("c", 1.0, {"int8_dynamic": (0.5, 40.0, 250), "int8_weight_only": (0.4, 42.0, 250)}),
    ], model_ms=5.0, input_shapes=[[1, 4]], device="cpu")
    choose(plan, "latency", None, margin=0.05)
    assert [lay.choice for lay in plan.layers] == [None, None, "int8_weight_only"]
    assert "0.83x" in plan.layers[0].reason
    choose(plan, "latency", None, margin=0.0)
    assert plan.layers[1].choice == "int8_dynamic"
    # size: the fewest bytes among candidates no slower than dense
    plan = Plan([
        layer("a", 1.0, {"int8_dynamic": (1.2, 40.0, 250), "sparse_2_4": (1.0, 9.0, 600)}),
        layer("b", 1.0, {"int8_dynamic": (0.9, 40.0, 250), "sparse_2_4": (0.5, 9.0, 600)}),
    ], model_ms=5.0, input_shapes=[[1, 4]], device="cpu")
    choose(plan, "size")
    assert [lay.choice for lay in plan.layers] == ["sparse_2_4", "int8_dynamic"]


def test_max_error_rule():
    plan = Plan([layer("a", 1.0, {"sparse_2_4": (0.3, 9.0, 600), "int8_dynamic": (0.5, 38.0, 250),
                                  "int8_weight_only": (0.8, 42.0, 250)})],
                model_ms=2.0, input_shapes=[[1, 4]], device="cpu")
    assert choose(plan, "latency", None).layers[0].choice == "sparse_2_4"
    assert choose(plan, "latency", 30).layers[0].choice == "int8_dynamic"
    assert choose(plan, "latency", 40).layers[0].choice == "int8_weight_only"
    assert choose(plan, "latency", 50).layers[0].choice is None
    assert "< 50 dB" in plan.layers[0].reason
    with pytest.raises(ValueError, match="target"):
        choose(plan, "energy")
    with pytest.raises(ValueError, match="margin"):
        choose(plan, margin=-0.1)


def test_prediction_hand_computed():
    plan = Plan([layer("a", 2.0, {"int8_dynamic": (0.5, 40.0, 250)}, calls=2),
                 layer("b", 1.0, {"int8_dynamic": (2.0, 40.0, 250)})],
                model_ms=10.0, input_shapes=[[1, 4]], device="cpu")
    choose(plan)
    # remainder = 10 - (2*2 + 1) = 5; planned = 5 + 2*0.5 + 1 = 7
    assert plan.remainder_ms() == pytest.approx(5.0)
    assert plan.predicted_ms() == pytest.approx(7.0)
    assert plan.predicted_speedup() == pytest.approx(10.0 / 7.0)
    plan.rest_ms = 1.0  # the rest timed directly wins over the difference: 1 + 2*0.5 + 1 = 3 vs 1 + 4 + 1 = 6
    assert plan.predicted_ms() == pytest.approx(3.0) and plan.predicted_speedup() == pytest.approx(2.0)
    assert plan.bytes(planned=False) == 2000 and plan.bytes(planned=True) == 1250


# ---------------------------------------------------------------- JSON, edits, apply


def test_json_round_trip_and_user_edit(tmp_path):
    net = mlp()
    x = torch.randn(4, 64)
    plan = make_plan(net, x, timer=CostTimer())
    # the cost model: int8 dynamic is the fastest candidate of every linear
    assert [lay.choice for lay in plan.layers] == ["int8_dynamic"] * 3
    path = tmp_path / "plan.json"
    plan.save(path)
    again = load_plan(path)
    assert again.to_dict() == plan.to_dict()
    doc = json.loads(path.read_text())
    assert doc["format"] == "effdl.plan" and doc["version"] == 1
    assert set(doc["layers"][0]["candidates"]["int8_dynamic"]) >= {"latency_ms", "sqnr_db", "bytes"}
    # the user edits: keep "0" dense, make "2" weight-only
    doc["layers"][0]["choice"] = None
    doc["layers"][1]["choice"] = "int8_weight_only"
    path.write_text(json.dumps(doc))
    model = apply_plan(copy.deepcopy(net), path, verbose=False)
    assert type(model[0]) is nn.Linear
    assert isinstance(model[2], QLinear) and model[2].mode == "weight_only"
    assert isinstance(model[4], QLinear) and model[4].mode == "dynamic"
    assert convert.last_report.action == "apply_plan" and len(convert.last_report.converted) == 2
    out, ref = model(x), net(x)
    assert sqnr_db(out, ref) > 25


def test_apply_plan_rejects_mismatches(tmp_path):
    net = mlp()
    doc = make_plan(net, torch.randn(2, 64), timer=CostTimer()).to_dict()
    bad = copy.deepcopy(doc)
    bad["layers"][0]["choice"] = "int4"
    with pytest.raises(ValueError, match="not one of its candidates"):
        apply_plan(copy.deepcopy(net), bad)
    with pytest.raises(ValueError, match="does not match the model"):
        apply_plan(nn.Sequential(nn.Linear(64, 10)), doc)
    with pytest.raises(ValueError, match="version"):
        load_plan({**doc, "version": 99})
    with pytest.raises(ValueError, match="not an effdl plan"):
        load_plan({"layers": []})
    with pytest.raises(ValueError, match="must be a Plan"):
        load_plan(3)
    failed = copy.deepcopy(doc)
    failed["layers"][0]["candidates"]["int8_dynamic"] = {"error": "RuntimeError: x"}
    with pytest.raises(ValueError, match="failed when measured"):
        load_plan(failed)
    with pytest.raises(ValueError, match="example_input"):
        make_plan(net, "not a tensor", timer=CostTimer())


def test_prediction_matches_planned_model_under_cost_model():
    """With a deterministic cost model the prediction must equal the planned model's cost:
    the per-layer accounting (remainder, calls, fused runs) is exact."""
    net = dwsep_net()
    x = torch.randn(2, 3, 12, 12)
    before = [type(m) for m in net]
    plan = make_plan(net, x, timer=CostTimer())
    assert [type(m) for m in net] == before  # the stubs used to time the rest are gone
    assert plan.rest_ms is not None and plan.meta["rest"].startswith("rest timed directly")
    assert {lay.name: lay.choice for lay in plan.layers} == {"1": "dwsep", "8": "int8_dynamic"}
    got = verify(net, x, plan, timer=CostTimer())
    assert got["measured_speedup"] > 1.2
    assert got["rel_diff"] == pytest.approx(0.0, abs=1e-9)
    fused = apply_plan(copy.deepcopy(net), plan, verbose=False)
    assert isinstance(fused[1], DWSeparableConv2d) and all(isinstance(fused[i], nn.Identity) for i in (2, 3, 4, 5))
    assert sqnr_db(fused(x), net(x)) > 30


# ---------------------------------------------------------------- real models, end to end


def test_mobilenet_v2_end_to_end():
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.mobilenet_v2(weights=None).eval()
    x = torch.randn(1, 3, 32, 32)
    plan = make_plan(net, x, max_error_db=30, timer=CostTimer())
    types = [lay.type for lay in plan.layers]
    assert types.count("DWSepRun") == 17 and types.count("Linear") == 1
    assert all(lay.candidates["dwsep"].sqnr_db > 60 for lay in plan.layers if lay.type == "DWSepRun")
    assert all(lay.choice == "dwsep" for lay in plan.layers if lay.type == "DWSepRun")
    planned = apply_plan(copy.deepcopy(net), Plan.from_dict(json.loads(json.dumps(plan.to_dict()))), verbose=False)
    assert sum(isinstance(m, DWSeparableConv2d) for m in planned.modules()) == 17
    assert sqnr_db(planned(x), net(x)) > 30
    assert verify(net, x, plan, timer=CostTimer())["rel_diff"] == pytest.approx(0.0, abs=1e-9)


def test_hf_bert_from_config_end_to_end():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                                  vocab_size=500)
    net = transformers.BertModel(cfg).eval()
    ids = torch.randint(0, 500, (2, 8))
    plan = make_plan(net, {"input_ids": ids}, max_error_db=30, timer=CostTimer())
    assert len(plan.layers) == 2 * 6 + 1  # q, k, v, attn out, intermediate, output per layer + pooler
    assert plan.layers[0].input_shape == [2, 8, 64]
    assert all(lay.choice == "int8_dynamic" for lay in plan.layers)
    assert all(lay.candidates["sparse_2_4"].sqnr_db < 30 for lay in plan.layers)  # 2:4 of a random weight
    planned = apply_plan(copy.deepcopy(net), plan, verbose=False)
    assert sum(isinstance(m, QLinear) for m in planned.modules()) == 13
    ref = net(input_ids=ids).last_hidden_state
    assert sqnr_db(planned(input_ids=ids).last_hidden_state, ref) > 20
    assert verify(net, {"input_ids": ids}, plan, timer=CostTimer())["rel_diff"] == pytest.approx(0.0, abs=1e-9)


def test_real_timer_smoke():
    """The default interleaved timer runs (tiny budget); no assert on its numbers."""
    from effdl.plan import interleaved_timer
    from effdl.plan.timing import Budget

    quick = Budget(seconds=0.01, min_reps=3, max_case_s=1.0, max_reps=5, sample_s=0.0005, warmup_s=0.005)
    plan = make_plan(mlp(), torch.randn(4, 64), timer=interleaved_timer(quick, quick))
    assert all(lay.dense_ms > 0 for lay in plan.layers) and plan.model_ms > 0
    assert all(c.latency_ms > 0 for lay in plan.layers for c in lay.candidates.values())
    assert plan.meta["cache"]["weights"] == "warm (one copy)"


# ---------------------------------------------------------------- policy="faster_only"


def test_faster_only_policy_injected_timer():
    net = mlp()
    x = torch.randn(4, 64)
    timer = TableTimer({("0", "dense"): 1.0, ("0", "converted"): 0.5,  # 2x faster: converted
                        ("2", "dense"): 1.0, ("2", "converted"): 1.25,  # 0.8x: skipped
                        ("4", "dense"): 1.0, ("4", "converted"): 0.98})  # within the 5 % margin: skipped
    model = effdl.quantize_(copy.deepcopy(net), policy="faster_only", example_input=x, timer=timer, verbose=False)
    assert isinstance(model[0], QLinear) and type(model[2]) is nn.Linear and type(model[4]) is nn.Linear
    skipped = dict(convert.last_report.skipped)
    assert skipped["2"] == "not faster on example_input: 0.80x dense (needs >= 1.05x)"
    assert "0.98x" not in skipped["4"] and "1.02x" in skipped["4"]
    model = effdl.sparsify_(copy.deepcopy(net), policy="faster_only", example_input=x, timer=timer, verbose=False)
    assert isinstance(model[0], SparseLinear) and type(model[2]) is nn.Linear
    # default policy converts everything, as before
    model = effdl.quantize_(copy.deepcopy(net), verbose=False)
    assert all(isinstance(model[i], QLinear) for i in (0, 2, 4))


def test_faster_only_policy_bad_input():
    net = mlp()
    with pytest.raises(ValueError, match="needs example_input"):
        effdl.quantize_(net, policy="faster_only")
    with pytest.raises(ValueError, match="policy must be one of"):
        effdl.sparsify_(net, policy="fastest")
    # a layer the example input never runs is not converted, and the report says why
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x):
            return self.used(x)

    net = Branchy()
    effdl.quantize_(net, policy="faster_only", example_input=torch.randn(2, 8),
                    timer=TableTimer({("used", "converted"): 0.1}), verbose=False)
    assert isinstance(net.used, QLinear) and type(net.unused) is nn.Linear
    assert dict(convert.last_report.skipped)["unused"] == "not run by example_input, so not measured"


def test_faster_only_policy_real_timer_smoke():
    """With the default timer every linear is either converted or skipped with its measured ratio."""
    net = mlp()
    effdl.quantize_(net, policy="faster_only", example_input=torch.randn(1, 64), verbose=False)
    skipped = dict(convert.last_report.skipped)
    for name in ("0", "2", "4"):
        assert isinstance(net.get_submodule(name), QLinear) or skipped[name].startswith("not faster on example_input")
