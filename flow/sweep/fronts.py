"""Pareto fronts of a sweep's results and the accuracy they rank by (results table and plots)."""

from __future__ import annotations

import math

from flow.sweep.status import DONE_CODES


def num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def pareto(rows: list[dict], maximize: str, minimize: str) -> list[bool]:
    """Marks the points no other point beats on both (>= and <=, one strictly)."""
    pts = [(num(r.get(maximize)), num(r.get(minimize))) if r['exit_code'] in DONE_CODES else (None, None) for r in rows]
    marks = []
    for a, c in pts:
        if a is None or c is None:
            marks.append(False)
            continue
        marks.append(not any(a2 is not None and c2 is not None and a2 >= a and c2 <= c and (a2 > a or c2 < c) for a2, c2 in pts))
    return marks


def accuracy_key(rows: list[dict]) -> str:
    """The hardware's accuracy where there is one (C simulation on the golden vectors), else the
    reference's on the whole test split (export_reference), on the golden vectors, else QKeras'."""
    for k in ('acc_hw', 'acc_reference_test', 'acc_reference', 'acc_qkeras'):
        if any(num(r.get(k)) is not None for r in rows):
            return k
    return 'acc_hw'
