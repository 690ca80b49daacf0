"""Results tables: mean ± std over clips or seeds, and the markdown tables every report prints.

Split from evaluation/metrics.py (which computes per-clip numbers) so reports, sweeps and benchmarks can
format results without the metric code. Metric headers carry ↑/↓ from METRIC_DIRECTIONS, the one place
that says which way each metric improves.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["METRIC_DIRECTIONS", "summarize", "to_markdown"]

# True = higher is better (arrow up), False = lower is better (arrow down).
METRIC_DIRECTIONS: dict[str, bool] = {
    "sync_c": True,
    "sync_d": False,
    "h_at_s": True,
    "aa": True,
    "tc": True,
    "csim": True,
    "psnr": True,
    "ssim": True,
    "fvd": False,
    "fid": False,
    "expressiveness": True,
    "abs_offset": False,
}


def _is_number(v) -> bool:
    # bool is an int subclass but a flag, not a score; skip it.
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def summarize(rows: Sequence[Mapping]) -> dict[str, tuple[float, float]]:
    """Mean and (population, ddof=0) std per numeric key over rows (e.g. clips or seeds).

    Keys keep their first-seen order; non-numeric values (lists, strings,
    bools) are skipped; a key missing from some rows is averaged over the rows
    that have it; NaNs are ignored (all-NaN gives NaN).
    Returns {key: (mean, std)}, one row of the table for ``to_markdown``.
    """
    values: dict[str, list[float]] = {}
    for row in rows:
        for key, v in row.items():
            if _is_number(v):
                values.setdefault(key, []).append(float(v))
    out = {}
    for key, vs in values.items():
        arr = np.asarray(vs)
        finite = arr[~np.isnan(arr)]
        out[key] = (float(finite.mean()), float(finite.std())) if finite.size else (math.nan, math.nan)
    return out


def _format_cell(value, digits: int) -> str:
    if value is None:
        return "–"
    if isinstance(value, (tuple, list)):
        mean, std = value
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"{value:.{digits}f}"


def to_markdown(table: Mapping[str, Mapping[str, tuple[float, float]]], digits: int = 3) -> str:
    """Markdown table: one row per run/variant, one column per metric ("mean ± std").

    Metric headers get ↑ (higher is better) or ↓ (lower is better) for the
    metrics in ``METRIC_DIRECTIONS``; unknown metrics get no arrow.  Columns
    are the union of metric keys in first-seen order; missing cells show "–".
    A plain float instead of a (mean, std) pair is printed alone.
    """
    columns: list[str] = []
    for metrics in table.values():
        columns += [k for k in metrics if k not in columns]
    header = ["run"] + [
        f"{c} {'↑' if METRIC_DIRECTIONS[c] else '↓'}" if c in METRIC_DIRECTIONS else c for c in columns
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run, metrics in table.items():
        cells = [str(run).replace("|", "\\|")] + [_format_cell(metrics.get(c), digits) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
