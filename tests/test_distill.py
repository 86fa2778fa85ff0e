"""effdl.distill: the Hinton loss against hand-computed values, the Distiller's
teacher handling, FitNets hints, and training under DistributedDataParallel."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import effdl
from effdl import training
from effdl.distill import Distiller, HintAdapter, distillation_loss
from effdl.models import MobileNetV2, SmallResNet
from effdl.nn import DWSeparableConv2d


def softmax(row: list[float], T: float) -> list[float]:
    exps = [math.exp(v / T) for v in row]
    return [e / sum(exps) for e in exps]


def hand_loss(student: list[list[float]], teacher: list[list[float]], labels: list[int], T: float,
              alpha: float) -> float:
    """The formula of Hinton et al. written out with the math module."""
    total = 0.0
    for s, t, y in zip(student, teacher, labels, strict=True):
        ce = -math.log(softmax(s, 1.0)[y])
        p, q = softmax(t, T), softmax(s, T)
        kl = sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))
        total += alpha * ce + (1 - alpha) * T * T * kl
    return total / len(labels)


STUDENT = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
TEACHER = [[2.0, 1.0, 0.0], [0.5, 0.5, 2.0]]
LABELS = [1, 2]


@pytest.mark.parametrize("T, alpha", [(1.0, 0.5), (3.0, 0.5), (2.0, 0.3), (4.0, 0.0), (0.5, 0.9)])
def test_loss_matches_hand_computed(T, alpha):
    got = distillation_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS), T=T, alpha=alpha)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert got.item() == pytest.approx(hand_loss(STUDENT, TEACHER, LABELS, T, alpha), rel=1e-5)


def test_kl_is_scaled_by_T_squared():
    s, t, y = torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS)
    for T in (1.0, 2.0, 5.0):
        kl = hand_loss(STUDENT, TEACHER, LABELS, T, 0.0) / (T * T)
        assert distillation_loss(s, t, y, T=T, alpha=0.0).item() == pytest.approx(T * T * kl, rel=1e-5)


def test_T_squared_keeps_the_gradient_scale_at_high_temperature():
    # Hinton et al. eq. 4: at high T, d(T^2 KL)/dz_i -> ((z_i - mean z) - (v_i - mean v)) / C, per example
    s = torch.tensor(STUDENT, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(TEACHER, dtype=torch.float64)
    distillation_loss(s, t, None, T=1e4, alpha=0.0).backward()
    B, C = s.shape
    centred = (s - s.mean(1, keepdim=True)) - (t - t.mean(1, keepdim=True))
    torch.testing.assert_close(s.grad, centred.detach() / (C * B), rtol=1e-3, atol=1e-6)


def test_alpha_one_is_plain_cross_entropy_and_equal_logits_give_no_kl():
    s, t, y = torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS)
    assert torch.equal(distillation_loss(s, t, y, T=3.0, alpha=1.0), F.cross_entropy(s, y))
    assert distillation_loss(s, s.clone(), y, T=3.0, alpha=0.0).item() == pytest.approx(0.0, abs=1e-7)
    torch.testing.assert_close(distillation_loss(s, s.clone(), y, T=3.0, alpha=0.4), 0.4 * F.cross_entropy(s, y))


def test_no_gradient_reaches_the_teacher():
    s = torch.tensor(STUDENT, requires_grad=True)
    t = torch.tensor(TEACHER, requires_grad=True)
    distillation_loss(s, t, torch.tensor(LABELS)).backward()
    assert t.grad is None and s.grad is not None and s.grad.abs().sum() > 0


def test_leading_dims_and_low_precision():
    s, t = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    y = torch.randint(0, 5, (2, 3))
    torch.testing.assert_close(distillation_loss(s, t, y), distillation_loss(s.view(6, 5), t.view(6, 5), y.view(6)))
    half = distillation_loss(s.bfloat16(), t.bfloat16(), y)
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(distillation_loss(s.bfloat16().float(), t.bfloat16().float(), y).item(),
                                        rel=1e-6)


def _bad(**over):
    args = {"student_logits": torch.randn(4, 3), "teacher_logits": torch.randn(4, 3),
            "labels": torch.tensor([0, 1, 2, 0]), "T": 2.0, "alpha": 0.5}
    args.update(over)
    return args


NAN = torch.tensor([[0.0, float("nan"), 1.0]] * 4)
INF = torch.tensor([[0.0, float("inf"), 1.0]] * 4)


@pytest.mark.parametrize("args, match", [
    (_bad(T=0.0), "temperature T"), (_bad(T=-1.0), "temperature T"), (_bad(T=float("nan")), "temperature T"),
    (_bad(alpha=-0.1), "alpha"), (_bad(alpha=1.5), "alpha"),
    (_bad(teacher_logits=torch.randn(4, 4)), "same shape"),
    (_bad(student_logits=torch.randn(3), teacher_logits=torch.randn(3)), r"\[B, C\]"),
    (_bad(student_logits=torch.zeros(4, 3, dtype=torch.long)), "floating-point"),
    (_bad(student_logits=torch.randn(0, 3), teacher_logits=torch.randn(0, 3), labels=torch.zeros(0).long()),
     "empty batch"),
    (_bad(student_logits=NAN), "NaN or infinite"), (_bad(teacher_logits=INF), "NaN or infinite"),
    (_bad(labels=torch.tensor([0, 1])), "labels must be integer class indices of shape"),
    (_bad(labels=torch.zeros(4)), "labels must be integer"),
    (_bad(labels=None), "labels are needed"),
])
def test_loss_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        distillation_loss(**args)


def test_nan_check_can_be_turned_off():
    assert torch.isnan(distillation_loss(**_bad(student_logits=NAN), check_finite=False))


# ---------------------------------------------------------------- Distiller


def small_pair(seed: int = 0) -> tuple[SmallResNet, MobileNetV2]:
    torch.manual_seed(seed)
    teacher = SmallResNet(num_classes=10, in_channels=1, depths=(1, 1), widths=(8, 16))
    student = MobileNetV2(num_classes=10, width_mult=0.25, in_channels=1, input_size=8,
                          inverted_residual_setting=[(1, 8, 1, 1), (4, 16, 1, 2)], last_channel=32, dropout=0.0)
    return teacher, student


def batches(n: int = 3, batch: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch, 1, 8, 8, generator=g), torch.randint(0, 10, (batch,), generator=g))
            for _ in range(n)]


def bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_distiller_freezes_teacher_and_keeps_it_in_eval():
    teacher, student = small_pair()
    d = Distiller(teacher, student, T=2.0, alpha=0.25)
    assert not any(p.requires_grad for p in d.teacher.parameters())
    assert all(p.requires_grad for p in d.student.parameters())
    d.train()
    assert d.training and d.student.training and not d.teacher.training
    assert not any(m.training for m in d.teacher.modules())
    x, y = batches(1)[0]
    torch.testing.assert_close(d(x), student(x))
    with torch.no_grad():
        t_logits = teacher(x)
    expected = distillation_loss(student(x), t_logits, y, T=2.0, alpha=0.25)
    torch.testing.assert_close(d.loss(x, y), expected)
    torch.testing.assert_close(Distiller.compute_loss(d, x, y), expected)


def test_teacher_state_never_changes_during_training():
    teacher, student = small_pair()
    before = bn_state(teacher)
    d = Distiller(teacher, student)
    teacher.train()  # even when someone switches the teacher back to training mode
    training.train(d, batches(), epochs=2, lr=0.05, compute_loss=Distiller.compute_loss)
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not teacher.training


def test_distiller_rejects_bad_arguments():
    teacher, student = small_pair()
    for kwargs, match in [({"T": 0}, "temperature"), ({"alpha": 2}, "alpha"), ({"beta": -1}, "beta"),
                          ({"hints": [("features.1", "nope")]}, "teacher has no layer named 'nope'"),
                          ({"hints": [("nope", "stages.0")]}, "student has no layer named 'nope'"),
                          ({"hints": ["features.1"]}, "pairs")]:
        with pytest.raises(ValueError, match=match):
            Distiller(teacher, student, **kwargs)
    with pytest.raises(ValueError, match="share parameters"):
        Distiller(student, student)
    with pytest.raises(ValueError, match="example_input"):  # a ReLU does not say how many channels it has
        Distiller(teacher, student, hints=[("features.1", "stages.0.0.relu")])


def test_hint_adapter_resizes_and_projects():
    adapter = HintAdapter(2, 3)
    with torch.no_grad():
        adapter.proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]).view(3, 2, 1, 1))
        adapter.proj.bias.zero_()
    x = torch.arange(32.0).view(1, 2, 4, 4)
    down = adapter(x, torch.Size([1, 3, 2, 2]))  # larger student grid: 2x2 average pooling
    pooled = F.avg_pool2d(x, 2)
    torch.testing.assert_close(down, torch.cat([pooled, pooled.sum(1, keepdim=True)], 1))
    up = adapter(x, torch.Size([1, 3, 8, 8]))  # smaller student grid: bilinear upsampling
    assert up.shape == (1, 3, 8, 8)
    with pytest.raises(RuntimeError, match="2 channels"):
        adapter(torch.randn(1, 5, 4, 4), torch.Size([1, 3, 4, 4]))
    flat = HintAdapter(4, 6, spatial=False)
    assert flat(torch.randn(2, 4), torch.Size([2, 6])).shape == (2, 6)


def test_hint_distillation_trains_adapter_not_teacher():
    teacher, student = small_pair()
    before = bn_state(teacher)
    hints = [("features.1", "stages.0"), ("student.features.2", "teacher.stages.1")]  # both spellings
    d = Distiller(teacher, student, hints=hints, beta=0.5)
    # channels read from the layers' attributes and measured on an input agree
    probed = Distiller(*small_pair(), hints=dict(hints), example_input=torch.rand(2, 1, 8, 8))
    assert [tuple(a.proj.weight.shape) for a in d.adapters] == [tuple(a.proj.weight.shape) for a in probed.adapters]
    assert d.hints == [("features.1", "stages.0"), ("features.2", "stages.1")]
    assert {n.split(".")[0] for n, _ in d.named_parameters() if "adapters" in n} == {"adapters"}

    x, y = batches(1)[0]
    hint_free = distillation_loss(student(x), teacher(x).detach(), y, T=d.T, alpha=d.alpha)
    assert d(x, y).item() > hint_free.item()  # the hint terms add a positive MSE
    d.zero_grad()
    d(x, y).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.adapters.parameters())
    assert all(p.grad is None for p in d.teacher.parameters())

    adapter_before = [p.clone() for p in d.adapters.parameters()]
    training.train(d, batches(), epochs=2, lr=0.05, compute_loss=Distiller.compute_loss)
    assert any(not torch.equal(a, p) for a, p in zip(adapter_before, d.adapters.parameters(), strict=True))
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats included
    # the student carries no hooks after training: the conversions still see every layer
    assert not any(m._forward_hooks for m in d.student.modules())
    kept = d.student.eval()
    depthwise = sum(isinstance(m, nn.Conv2d) and m.groups > 1 for m in kept.modules())
    effdl.fuse_dwsep_(kept, verbose=False)
    assert sum(isinstance(m, DWSeparableConv2d) for m in kept.modules()) == depthwise


def test_hint_layer_that_does_not_run_is_reported():
    teacher, student = small_pair()
    teacher.unused = nn.Conv2d(1, 4, 1)
    d = Distiller(teacher, student, hints=[("features.1", "unused")])
    x, y = batches(1)[0]
    with pytest.raises(RuntimeError, match="teacher layer 'unused' of hint 0 did not run"):
        d(x, y)


def test_distiller_under_ddp(tmp_path):
    """One-process gloo group: DDP with find_unused_parameters=False accepts the
    distiller (frozen teacher left out of the reducer, adapters used every step)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this build")
    teacher, student = small_pair()
    before = bn_state(teacher)
    d = Distiller(teacher, student, hints=[("features.2", "stages.1")])
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/rendezvous", rank=0, world_size=1)
    try:
        wrapped = DDP(d, find_unused_parameters=False)
        training.train(wrapped, batches(n=3), epochs=2, lr=0.05, compute_loss=Distiller.compute_loss)
        assert not d.teacher.training
        x, _ = batches(1)[0]
        wrapped.eval()
        with torch.no_grad():
            torch.testing.assert_close(wrapped(x), d.student(x))
    finally:
        dist.destroy_process_group()
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_linear_hints_and_mismatched_feature_kinds():
    teacher = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 10))
    student = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 36, 10))
    guessed = Distiller(teacher, student, hints=[("0", "0"), ("3", "3")])
    assert isinstance(guessed.adapters[0].proj, nn.Conv2d) and isinstance(guessed.adapters[1].proj, nn.Linear)
    probed = Distiller(teacher, student, hints=[("2", "2")], example_input=torch.rand(2, 1, 8, 8))
    assert probed.adapters[0].proj.weight.shape == (144, 72)  # the flattened features
    x, y = batches(1)[0]
    probed(x, y).backward()
    assert probed.adapters[0].proj.weight.grad is not None
    with pytest.raises(ValueError, match=r"\[B, C, H, W\] output\) with the teacher layer '3'"):
        Distiller(teacher, student, hints=[("0", "3")])
