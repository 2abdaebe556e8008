"""PNG plots of a run: per-task training losses, effective loss weights, validation metrics per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_history(history: list[dict[str, Any]], folder: Path) -> list[Path]:
    """Writes ``losses.png``, ``weights.png`` and ``validation.png`` (those with data) into ``folder``."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    groups = {"losses.png": ("loss/", "training loss per task"),
              "weights.png": ("weight/", "effective loss weight per task"),
              "validation.png": ("validation/", "validation metrics")}
    epochs = [row["epoch"] for row in history]
    for filename, (prefix, title) in groups.items():
        names = sorted({k for row in history for k in row if k.startswith(prefix)})
        if not names:
            continue
        columns = min(3, len(names))
        rows = (len(names) + columns - 1) // columns
        figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.8 * rows), squeeze=False)
        for axis, name in zip(axes.flat, names, strict=False):
            axis.plot(epochs, [row.get(name, float("nan")) for row in history], marker="o")
            axis.set_title(name.removeprefix(prefix), fontsize=9)
            axis.set_xlabel("epoch", fontsize=8)
            axis.grid(alpha=0.3)
        for axis in list(axes.flat)[len(names):]:
            axis.axis("off")
        figure.suptitle(title)
        figure.tight_layout()
        path = folder / filename
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append(path)
    return written


def plot_metrics(metrics: dict[str, float], path: Path, title: str = "test metrics") -> Path:
    """A horizontal bar chart of metric values (a quick read of an evaluation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, v in metrics.items() if isinstance(v, float) and v == v]
    figure, axis = plt.subplots(figsize=(7, 0.3 * len(names) + 1))
    axis.barh(names[::-1], [metrics[n] for n in names[::-1]])
    for y, name in enumerate(names[::-1]):
        axis.text(metrics[name], y, f" {metrics[name]:.3f}", va="center", fontsize=7)
    axis.set_title(title)
    axis.tick_params(labelsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
