"""The closing table of a launch: the evaluated metric per variant and training budget.

Read from each run's evals.jsonl only (records are the source of truth). Seeds of one variant
are pooled: mean ± sample standard deviation over the seeds that reached that budget. Where the
records carry it, the metric's real-versus-real floor is given beside it.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence

from harness.launch.display import format_table
from harness.records import RunPaths, read_evals


def _mean_std(values: Sequence[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {statistics.stdev(values):.2g}"


def metric_tables(runs: Iterable[tuple[str, RunPaths]]) -> list[str]:
    """One table per (metric, sampler, NFE): a row per variant, a column per budget (kimg).

    `runs` pairs each run's variant name with its paths. A cell reads `mean ± std (n)`.
    """
    # (metric, sampler, nfe) -> variant -> nimg -> values over seeds
    cells: dict[tuple, dict[str, dict[int, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    floors: dict[tuple, list[float]] = defaultdict(list)  # real-vs-real value of the metric
    variants: list[str] = []
    for variant, paths in runs:
        if variant not in variants:
            variants.append(variant)
        for record in read_evals(paths):
            key = (record["metric"], record.get("sampler", ""), record.get("nfe", ""))
            cells[key][variant][int(record["nimg"])].append(float(record["value"]))
            if record.get("floor") is not None:
                floors[key].append(float(record["floor"]))
    tables = []
    for (metric, sampler, nfe), by_variant in cells.items():
        budgets = sorted({nimg for per_nimg in by_variant.values() for nimg in per_nimg})
        headers = ["variant"] + [f"{nimg / 1e3:g} kimg" for nimg in budgets]
        rows = []
        for variant in variants:
            per_nimg = by_variant.get(variant, {})
            rows.append([variant] + [
                f"{_mean_std(per_nimg[n])} ({len(per_nimg[n])})" if n in per_nimg else ""
                for n in budgets])
        title = f"{metric} (sampler {sampler}, NFE {nfe}; mean ± std over seeds (n)"
        if floors[(metric, sampler, nfe)]:
            title += f"; real-vs-real floor {statistics.fmean(floors[(metric, sampler, nfe)]):.4g}"
        title += ")"
        tables.append(title + "\n" + format_table(headers, rows))
    return tables
