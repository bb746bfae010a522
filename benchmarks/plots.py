"""PNG plots of the two distributions the targets are about: event-to-dispatch latency and timer
lateness. Drawn with matplotlib's Agg backend, so no display is needed."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def latency_plot(samples: list[float], path: Path, title: str) -> Path:
    """Histogram of the samples, with p50 and p99 marked."""
    ordered = sorted(samples)
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.hist(ordered, bins=50, color="#4C72B0")
    for q, style in ((0.5, "--"), (0.99, ":")):
        value = ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0
        axes.axvline(value, color="black", linestyle=style, label=f"p{int(q * 100)} {value:.2f} s")
    axes.set_xlabel("seconds")
    axes.set_ylabel("count")
    axes.set_title(f"{title} (n={len(ordered)})")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def percentile_plot(percentiles: list[float], path: Path, title: str) -> Path:
    """A distribution given as its 101 percentiles, drawn as a cumulative curve."""
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(percentiles, range(len(percentiles)), color="#DD8452")
    if len(percentiles) == 101:
        for q, style in ((50, "--"), (99, ":")):
            axes.axvline(
                percentiles[q], color="black", linestyle=style, label=f"p{q} {percentiles[q]:.2f} s"
            )
        axes.legend()
    axes.set_xlabel("seconds")
    axes.set_ylabel("percentile")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
