"""One rule for a figure in a markdown table, shared by every report (paper grid, folds, benchmarks)."""

from __future__ import annotations

MISSING = "—"  # a cell with no value: not run, not measured, or not a number


def cell(value: float | None, digits: int | None = None) -> str:
    """MISSING for None / NaN; else `digits` decimals, or with digits=None thousands separators from 100 up and three
    significant digits below (12,345 · 123 · 12.3 · 0.0123)."""
    if value is None or value != value:
        return MISSING
    if digits is not None:
        return f"{value:.{digits}f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"
