"""Training curves and confusion matrices as PNG files (matplotlib, headless Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on training machines; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from rs_ghost_qgis.core import atomic  # noqa: E402

_TRAIN_TOTALS = {"train_loss", "train_acc"}


def plot_curves(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Loss (with each loss term) and accuracy per epoch, train and validation side by side."""
    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    # The training loss includes the distillation terms; validation is plain cross-entropy.
    for split, style, what in (("train", "-o", "objective"), ("val", "-s", "cross-entropy")):
        loss_axis.plot(epochs, [row[f"{split}_loss"] for row in history], style, label=f"{split} ({what})")
        accuracy_axis.plot(epochs, [100 * row[f"{split}_acc"] for row in history], style, label=split)
    # Each term of a distillation objective (CE, KD or TCKD and NCKD), so that a term swamping the
    # cross-entropy shows at once; a plain run's one term is its objective, drawn already.
    terms = sorted({key for row in history for key in row if key.startswith("train_")} - _TRAIN_TOTALS)
    for term in terms if len(terms) > 1 else ():
        values = [row.get(term, float("nan")) for row in history]
        loss_axis.plot(epochs, values, "--", label=f"train {term.removeprefix('train_')} term")
    loss_axis.set(xlabel="epoch", ylabel="loss", title="loss")
    accuracy_axis.set(xlabel="epoch", ylabel="top-1 (%)", title="accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_confusion(matrix: np.ndarray, class_names: list[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (true class per row) with the counts written in."""
    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    side = max(4.0, 0.45 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(side + 1, side))
    image = axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the true class")
    ticks = range(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=60, ha="right", fontsize=8)
    axis.set_yticks(ticks, class_names, fontsize=8)
    axis.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    if len(class_names) <= 30:  # counts stay legible up to AID's 30 classes
        for (row, column), count in np.ndenumerate(matrix):
            if count:
                color = "white" if share[row, column] > 0.5 else "black"
                axis.text(column, row, str(count), ha="center", va="center", fontsize=7, color=color)
    return _save(figure, path)


def plot_reliability(report: dict, path: str | Path) -> Path:
    """Reliability diagram: accuracy against confidence per bin, before and after scaling."""
    figure, axis = plt.subplots(figsize=(5.5, 5))
    axis.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    for key, style, name in (("before", "-o", "T = 1"), ("after", "-s", f"T = {report['temperature']:.2f}")):
        rows = report[f"reliability_{key}"]
        axis.plot(
            [r["confidence"] for r in rows],
            [r["accuracy"] for r in rows],
            style,
            label=f"{name}: ECE {100 * report[f'ece_{key}']:.2f}%",
        )
    axis.set(
        xlabel="confidence (top softmax probability)",
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title="reliability on the validation split",
    )
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left")
    return _save(figure, path)


def _save(figure: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    with atomic.atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100, format=path.suffix.lstrip(".") or "png")
    plt.close(figure)
    return path
