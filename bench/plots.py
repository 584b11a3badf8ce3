"""The report's figures (PNG, matplotlib): latency percentile curves, latency
against offered rate, and where the time of an order goes."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import (  # noqa: E402
    FixedLocator,
    FuncFormatter,
    LogLocator,
    NullFormatter,
)

STAGE_COLOURS = ("#8da0cb", "#fc8d62", "#66c2a5", "#e78ac3", "#a6d854")


def _nines(p: float) -> float:
    """A percentile's place on an HDR axis: 1 / (1 - p), so each nine is one decade."""
    return 1 / (1 - min(p, 99.9999) / 100)


def _log_log():
    figure, axes = plt.subplots(figsize=(8, 4.8))
    axes.set_xscale("log")  # before any locator or formatter: setting a scale resets them
    axes.set_yscale("log")
    return figure, axes


def _save(figure, axes, path: Path, title: str, grid: bool = True, **legend):
    axes.set_title(title, fontsize=10)
    if grid:
        axes.grid(True, which="both", alpha=0.3)
    axes.legend(**{"fontsize": 8, **legend})
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def percentile_curves(rows: dict[str, dict], titles: dict[str, str], path: Path, note: str):
    figure, axes = _log_log()
    for name, row in rows.items():
        points = [(p, us) for p, us in row["curve"] if p > 0]
        axes.plot([_nines(p) for p, _ in points], [us for _, us in points], marker=".",
                  label=titles[name], linestyle="--" if "echo" in name else "-")  # fmt: skip
    ticks = [50, 90, 99, 99.9, 99.99, 99.999]
    axes.xaxis.set_major_locator(FixedLocator([_nines(p) for p in ticks]))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{100 - 100 / x:g}%"))
    axes.xaxis.set_minor_locator(FixedLocator([]))
    axes.set_xlabel("percentile")
    axes.set_ylabel("round trip (µs)")
    _save(figure, axes, path, f"Round trips by percentile\n{note}")


def rate_sweep(sweep: dict[str, dict], titles: dict[str, str], bound_us: float, path: Path,
               note: str):  # fmt: skip
    figure, axes = _log_log()
    for name, run in sweep.items():
        steps = run["steps"]
        line = axes.plot([s["offered_rate"] for s in steps], [s["p99_us"] for s in steps],
                         marker="o", label=f"{titles[name]} p99")  # fmt: skip
        axes.plot([s["offered_rate"] for s in steps], [s["p50_us"] for s in steps],
                  linestyle=":", color=line[0].get_color())  # fmt: skip
    axes.axhline(bound_us, color="grey", linewidth=0.8)
    axes.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("offered rate (requests/s)")
    axes.set_ylabel("round trip (µs): p99 solid, p50 dotted")
    _save(figure, axes, path, f"Latency against offered rate (grey: the p99 bound)\n{note}")


def stages(rows: dict[str, dict], titles: dict[str, str], labels: dict[str, str], path: Path,
           note: str):  # fmt: skip
    names = [name for name, row in rows.items() if "stages" in row]
    figure, axes = plt.subplots(figsize=(8, 1.6 + 0.5 * len(names)))
    left = [0.0] * len(names)
    for colour, (stage, label) in zip(STAGE_COLOURS, labels.items(), strict=False):
        widths = [rows[name]["stages"][stage]["mean_us"] for name in names]
        axes.barh([titles[n] for n in names], widths, left=left, color=colour, label=label)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    axes.invert_yaxis()
    axes.set_xlabel("mean µs per order")
    _save(figure, axes, path, f"Where the time of an order goes\n{note}", grid=False,
          fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3)  # fmt: skip
