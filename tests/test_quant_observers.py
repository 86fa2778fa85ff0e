"""Observers on known data: recorded ranges by hand, percentiles of known distributions,
the MSE clip search, state_dict round trips and bad inputs."""

from __future__ import annotations

import pytest
import torch

from effdl.quant import MinMaxObserver, MovingAverageMinMaxObserver, MSEObserver, PercentileObserver

ALL = [MinMaxObserver, MovingAverageMinMaxObserver, PercentileObserver, MSEObserver]


def _range(obs) -> tuple[list[float], list[float]]:
    return obs.min_val.reshape(-1).tolist(), obs.max_val.reshape(-1).tolist()


@pytest.mark.parametrize("cls", ALL)
def test_forward_returns_its_input(cls):
    x = torch.randn(4, 5)
    assert cls()(x) is x


def test_minmax_by_hand():
    obs = MinMaxObserver()
    obs(torch.tensor([1.0, 2.0, 3.0]))
    obs(torch.tensor([-1.0, 0.5]))
    assert _range(obs) == ([-1.0], [3.0])
    assert int(obs.num_batches) == 2
    qp = obs.qparams()
    assert qp.scale.item() == pytest.approx(4 / 255) and qp.min_val.item() == -1.0


def test_minmax_symmetric_qparams():
    obs = MinMaxObserver(num_bits=4, symmetric=True)
    obs(torch.tensor([-3.5, 1.0, 2.0]))
    qp = obs.qparams()
    assert qp.scale.item() == pytest.approx(0.5) and qp.min_val.item() == 0.0


def test_minmax_per_channel():
    obs = MinMaxObserver(axis=1)
    obs(torch.tensor([[1.0, -2.0], [3.0, 5.0]]))
    obs(torch.tensor([[0.0, -1.0]]))
    assert _range(obs) == ([0.0, -2.0], [3.0, 5.0])
    qp = obs.qparams()
    assert qp.scale.tolist() == pytest.approx([3 / 255, 7 / 255])


def test_moving_average_by_hand():
    obs = MovingAverageMinMaxObserver()  # averaging_constant 0.01
    obs(torch.tensor([0.0, 10.0]))  # the first batch is taken as is
    assert _range(obs) == ([0.0], [10.0])
    obs(torch.tensor([-2.0, 20.0]))
    # min = 0 + 0.01 * (-2 - 0); max = 10 + 0.01 * (20 - 10)
    assert obs.min_val.item() == pytest.approx(-0.02) and obs.max_val.item() == pytest.approx(10.1)
    obs(torch.tensor([-1.0, 5.0]))
    assert obs.min_val.item() == pytest.approx(-0.02 + 0.01 * (-1 + 0.02))
    assert obs.max_val.item() == pytest.approx(10.1 + 0.01 * (5 - 10.1))


def test_moving_average_constant_one_follows_the_last_batch():
    obs = MovingAverageMinMaxObserver(averaging_constant=1.0, axis=0)
    obs(torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
    obs(torch.tensor([[-5.0, 5.0], [7.0, 9.0]]))
    assert _range(obs) == ([-5.0, 7.0], [5.0, 9.0])


def test_percentile_exact_on_small_tensors():
    obs = PercentileObserver(percentile=90.0)
    obs(torch.arange(101.0))  # 0..100: the 10th and 90th percentiles are 10 and 90
    assert _range(obs) == ([10.0], [90.0])
    obs(2 * torch.arange(101.0))  # 20 and 180; the recorded range is the mean over batches
    assert _range(obs) == ([15.0], [135.0])


def test_percentile_matches_torch_quantile():
    x = torch.randn(1000)
    obs = PercentileObserver(percentile=99.0)
    obs(x)
    expected = torch.quantile(x, torch.tensor([0.01, 0.99]))
    assert obs.min_val.item() == pytest.approx(expected[0].item(), rel=1e-5)
    assert obs.max_val.item() == pytest.approx(expected[1].item(), rel=1e-5)


def test_percentile_symmetric_uses_magnitudes():
    obs = PercentileObserver(num_bits=8, symmetric=True, percentile=90.0)
    obs(torch.cat([torch.arange(101.0), -torch.arange(101.0)]))  # |x|: every value 0..100 twice
    assert _range(obs) == ([-90.0], [90.0])
    assert obs.qparams().scale.item() == pytest.approx(90 / 127)


def test_percentile_per_channel():
    x = torch.stack([torch.arange(101.0), 10 * torch.arange(101.0)])
    obs = PercentileObserver(percentile=95.0, axis=0)
    obs(x)
    assert _range(obs) == ([5.0, 50.0], [95.0, 950.0])


def test_percentile_on_a_large_normal_sample():
    # 3M elements, estimated from a 2^20 sample: the 0.1% / 99.9% points of N(0, 1) are -+3.0902
    obs = PercentileObserver(percentile=99.9)
    obs(torch.randn(3_000_000))
    assert obs.min_val.item() == pytest.approx(-3.0902, abs=0.04)
    assert obs.max_val.item() == pytest.approx(3.0902, abs=0.04)


def test_percentile_clips_an_outlier_that_minmax_keeps():
    x = torch.rand(100_000)
    x[123] = 1000.0
    pct, mm = PercentileObserver(percentile=99.99), MinMaxObserver()
    pct(x)
    mm(x)
    assert mm.max_val.item() == 1000.0
    assert pct.max_val.item() < 1.01


def test_mse_clips_a_huge_outlier():
    # the 4-bit grid over [-50, 50] has step 50/7: every N(0,1) value rounds to 0 (MSE ~ 1),
    # while clipping at ~4 costs (50 - 4)^2 / 16384 ~ 0.13 plus a little rounding noise
    x = torch.randn(16384)
    x[0] = 50.0
    obs = MSEObserver(num_bits=4, symmetric=True)
    obs(x)
    assert 1.5 < obs.max_val.item() < 25.0
    assert obs.min_val.item() == -obs.max_val.item()


def test_mse_keeps_the_full_range_without_outliers():
    x = torch.linspace(0.0, 1.0, 10_001)  # uniform: clipping only adds error
    obs = MSEObserver(num_bits=8)
    obs(x)
    assert obs.min_val.item() == 0.0  # the end nearest zero stays put
    assert obs.max_val.item() >= 0.98


def test_mse_per_channel_clips_only_the_channel_with_the_outlier():
    x = torch.randn(2, 16384)
    x[0, 7] = 50.0
    obs = MSEObserver(num_bits=4, symmetric=True, axis=0)
    obs(x)
    top = obs.max_val.tolist()
    assert 1.5 < top[0] < 25.0
    # without the outlier: the MSE-optimal 4-bit clip of N(0, 1) is about 2.5 sigma, not the outlier's 50
    assert 1.8 < top[1] < 3.2


def test_mse_on_a_range_away_from_zero():
    x = torch.linspace(5.0, 6.0, 1001)
    obs = MSEObserver(num_bits=8)
    obs(x)
    assert obs.min_val.item() == 5.0 and obs.max_val.item() >= 5.98


@pytest.mark.parametrize("cls", ALL)
def test_reset_forgets(cls):
    obs = cls(axis=0)
    obs(torch.randn(3, 8))
    obs.reset()
    assert not obs.has_data
    obs(torch.full((3, 8), 2.0))
    assert _range(obs) == ([2.0] * 3, [2.0] * 3)


@pytest.mark.parametrize("cls", ALL)
def test_state_dict_round_trip_into_a_fresh_observer(cls):
    obs = cls(num_bits=6, axis=0)
    obs(torch.randn(5, 40))
    obs(torch.randn(5, 40))
    fresh = cls(num_bits=6, axis=0)
    fresh.load_state_dict(obs.state_dict())  # buffers are sized by the first batch: loading resizes them
    a, b = obs.qparams(), fresh.qparams()
    assert torch.equal(a.scale, b.scale) and torch.equal(a.min_val, b.min_val)
    assert int(fresh.num_batches) == 2


@pytest.mark.parametrize("cls", ALL)
def test_bad_inputs(cls):
    obs = cls()
    with pytest.raises(RuntimeError, match="no data observed"):
        obs.qparams()
    with pytest.raises(ValueError, match="empty"):
        obs(torch.empty(0, 3))
    with pytest.raises(ValueError, match="NaN or Inf"):
        obs(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        obs(torch.tensor([1.0, float("-inf")]))
    with pytest.raises(ValueError, match="floating-point"):
        obs(torch.arange(3))
    assert not obs.has_data  # nothing half-recorded
    with pytest.raises(ValueError, match="num_bits"):
        cls(num_bits=9)
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        cls(axis=2)(torch.randn(3, 4))
    per_channel = cls(axis=0)
    per_channel(torch.randn(3, 4))
    with pytest.raises(ValueError, match="channels"):
        per_channel(torch.randn(5, 4))


def test_bad_observer_arguments():
    with pytest.raises(ValueError, match="averaging_constant"):
        MovingAverageMinMaxObserver(averaging_constant=0.0)
    with pytest.raises(ValueError, match="percentile"):
        PercentileObserver(percentile=40.0)
    with pytest.raises(ValueError, match="grid"):
        MSEObserver(grid=0)
    with pytest.raises(ValueError, match="max_samples"):
        PercentileObserver(max_samples=0)


def test_ranges_stay_float32_when_the_model_goes_half():
    obs = MinMaxObserver()
    obs(torch.tensor([0.0, 1.0001]))
    obs.half()
    assert obs.max_val.dtype == torch.float32 and obs.max_val.item() == pytest.approx(1.0001, rel=1e-6)
