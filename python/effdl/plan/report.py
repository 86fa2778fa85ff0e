"""The plan as a text table (what ``effdl plan`` prints)."""

from __future__ import annotations

from effdl.plan.io import Plan


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in
                                  enumerate(zip(cells, widths, strict=True))) + " |"

    sep = "|" + "|".join("-" * (w + 2) if i < 2 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def format_plan(plan: Plan) -> str:
    """One row per layer: input shape, dense ms, each candidate's speedup over dense
    and SQNR (``1.85x/38dB``), the choice; then the predicted whole-model figures."""
    kinds = list(dict.fromkeys(k for lay in plan.layers for k in lay.candidates))
    headers = ["layer", "type", "input", "dense ms", *kinds, "choice"]
    rows = []
    for lay in plan.layers:
        cells = []
        for k in kinds:
            c = lay.candidates.get(k)
            if c is None:
                cells.append("")
            elif not c.usable():
                cells.append("failed")
            else:
                cells.append(f"{lay.dense_ms / c.latency_ms:.2f}x/{c.sqnr_db:.0f}dB")
        shape = "x".join(str(s) for s in lay.input_shape)
        rows.append([lay.name, lay.type, shape, f"{lay.dense_ms:.4f}", *cells, lay.choice or "dense"])
    conv = sum(lay.choice is not None for lay in plan.layers)
    err = "any" if plan.max_error_db is None else f">= {plan.max_error_db:g} dB"
    tail = (
        f"target {plan.target}, SQNR {err}, margin {plan.margin:g}: {conv} of {len(plan.layers)} layers converted\n"
        f"dense: layers {plan.layers_dense_ms():.3f} ms + rest {plan.remainder_ms():.3f} ms "
        f"(whole model measured {plan.model_ms:.3f} ms); "
        f"planned: {plan.predicted_ms():.3f} ms, predicted speedup {plan.predicted_speedup():.2f}x; "
        f"layer bytes {plan.bytes(False) / 1e6:.2f} MB -> {plan.bytes(True) / 1e6:.2f} MB"
    )
    return _table(headers, rows) + "\n" + tail + "\n(cells: speedup over dense / output SQNR)"
