"""Efficient architectures and the counters that measure them."""

from effdl.models.counting import count_flops, count_params

__all__ = ["count_flops", "count_params"]
