"""A plotext chart of named series for the dashboard, with round tick values."""

from __future__ import annotations

import math

from textual_plotext import PlotextPlot

from tsdiff_cli.monitor.series import best_index, downsample, goal_for
from tsdiff_cli.monitor.summary import number

POINTS_PER_COLUMN = 2  # braille markers draw two points a character cell


class Chart(PlotextPlot):
    """A plotext chart of named series, redrawn from the series on every render (plotext's
    build is not repeatable: its log scale rewrites the stored data), at the chart's width.
    ``plotted`` keeps what was last drawn: name → (xs, ys); ``marked`` the best points."""

    def __init__(self, title: str, xlabel: str, **kwargs):
        super().__init__(**kwargs)
        self.chart_title, self.x_label = title, xlabel
        self.series: dict = {}
        self.log_scale, self.mark_best = True, False
        self.plotted: dict[str, tuple[list[float], list[float]]] = {}
        self.marked: dict[str, tuple[float, float]] = {}

    def show(self, series: dict, log: bool, best: bool = False) -> None:
        """Chart these series (name → Series); mark each one's best value when ``best``."""
        self.series, self.log_scale, self.mark_best = series, log, best
        self.refresh()

    def render(self):
        self._replot()
        return super().render()

    def _replot(self) -> None:
        plt, log = self.plt, self.log_scale
        plt.clear_figure()  # a fresh figure: render sets its size and theme
        self.plotted, self.marked = {}, {}
        width = max(20, self.size.width or 80) * POINTS_PER_COLUMN
        for name, s in self.series.items():
            xs, ys = downsample(s, max_points=width, log=log)
            if not xs:
                continue
            self.plotted[name] = (xs, ys)
            plt.plot(xs, ys, label=name, marker="braille")
            i = best_index(s, goal_for(name)) if self.mark_best else None
            if i is not None and (s.y[i] > 0 or not log):
                self.marked[name] = (s.x[i], s.y[i])
                plt.scatter([s.x[i]], [s.y[i]], marker="●", label=f"best {name} {number(s.y[i])} @ {s.x[i]:g}")
        scale = "log" if log else "linear"
        if self.plotted:  # plotext cannot draw an empty log axis
            plt.yscale(scale)
        ticks = log_ticks([y for _, ys in self.plotted.values() for y in ys]) if log else []
        if ticks:
            plt.yticks(ticks, [f"{t:g}" for t in ticks])
        xs = [x for x_values, _ in self.plotted.values() for x in x_values]
        ticks = round_ticks(min(xs), max(xs)) if xs else []
        if ticks:
            plt.xticks(ticks, [f"{t:g}" for t in ticks])
        empty = "" if self.plotted else " — nothing logged yet"
        plt.title(f"{self.chart_title} ({scale}){empty}")
        plt.xlabel(self.x_label)


def log_ticks(values: list[float]) -> list[float]:
    """Round values for a log axis: the powers of ten inside the range when there are at least
    two, else 1, 2 and 5 times a power of ten; [] (plotext's own ticks) when fewer than two fit."""
    if not values:
        return []
    low, high = min(values), max(values)
    powers = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    for steps in ((1,), (1, 2, 5), (1, 1.5, 2, 3, 5, 7)):
        ticks = [m * 10.0 ** k for k in powers for m in steps if low <= m * 10.0 ** k <= high]
        if len(ticks) >= 2:
            return ticks
    return []


def round_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round numbers (1, 2 or 5 × a power of ten apart) between low and high."""
    if not high > low:
        return []
    raw = (high - low) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step)
    return [k * step for k in range(first, int(math.floor(high / step)) + 1)]
