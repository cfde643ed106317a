"""A plot of one schedule (or of the audio envelopes) in the terminal, with plotext."""

from __future__ import annotations

from textual_plotext import PlotextPlot


class SchedulePlot(PlotextPlot):
    series: list[float] = []  # what is plotted, for tests and screen readers

    def show(self, values, keys: list[float], title: str) -> None:
        self.series = [float(v) for v in values]
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        plt.plot(list(range(len(values))), self.series, marker="braille")
        for key in keys:
            if 0 <= key < len(values):
                plt.vline(key, "orange")
        plt.xlabel("frame")
        self.refresh()
