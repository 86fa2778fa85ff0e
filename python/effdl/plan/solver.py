"""Choosing per layer: the fastest (``latency``) or smallest (``size``) candidate that
meets the error bound — and never one that makes the layer slower."""

from __future__ import annotations

from effdl.plan.io import Plan

TARGETS = ("latency", "size")
DEFAULT_MARGIN = 0.05  # a candidate must beat dense by 5 %: below that, timing noise decides


def choose(plan: Plan, target: str = "latency", max_error_db: float | None = None,
           margin: float = DEFAULT_MARGIN) -> Plan:
    """Set every layer's ``choice`` in place and return ``plan``.

    ``max_error_db``: the lowest acceptable output SQNR of a layer in dB (None: any).
    ``target="latency"``: the fastest candidate whose latency is at most
    ``dense / (1 + margin)``. ``target="size"``: the candidate with the fewest bytes
    among those at most ``dense / (1 + margin)`` *or* no slower than dense at all
    (``latency <= dense``): for size a tie in time is good enough, a loss is not.
    In both, a layer where no candidate qualifies stays dense, with the reason.
    """
    if target not in TARGETS:
        raise ValueError(f"choose: target must be one of {TARGETS}, got {target!r}")
    if not margin >= 0:
        raise ValueError(f"choose: margin must be >= 0, got {margin!r}")
    if max_error_db is not None and not isinstance(max_error_db, (int, float)):
        raise ValueError(f"choose: max_error_db must be a number of dB or None, got {max_error_db!r}")
    for lay in plan.layers:
        lay.choice, lay.reason = None, ""
        ok, why_not = [], []
        for kind, c in lay.candidates.items():
            if not c.usable():
                why_not.append(f"{kind} failed")
                continue
            speedup = lay.dense_ms / c.latency_ms
            if max_error_db is not None and c.sqnr_db < max_error_db:
                why_not.append(f"{kind} {c.sqnr_db:.1f} dB < {max_error_db:g} dB")
            elif target == "latency" and speedup < 1 + margin:
                why_not.append(f"{kind} {speedup:.2f}x")
            elif target == "size" and speedup < 1.0:
                why_not.append(f"{kind} {speedup:.2f}x")
            else:
                ok.append(kind)
        if not ok:
            lay.reason = "dense: " + ("; ".join(why_not) if why_not else "no candidate")
            continue
        if target == "latency":
            lay.choice = min(ok, key=lambda k: lay.candidates[k].latency_ms)
        else:
            lay.choice = min(ok, key=lambda k: (lay.candidates[k].bytes, lay.candidates[k].latency_ms))
        c = lay.candidates[lay.choice]
        lay.reason = f"{lay.dense_ms / c.latency_ms:.2f}x, {c.sqnr_db:.1f} dB, {c.bytes / max(1, lay.dense_bytes):.2f}x bytes"
    plan.target, plan.max_error_db, plan.margin = target, max_error_db, margin
    return plan
