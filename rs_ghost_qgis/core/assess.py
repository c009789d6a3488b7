"""Accuracy assessment maths: confusion matrix, overall accuracy, kappa, per-class F1.

QGIS-free (numpy only), so the Processing algorithm, the command line, the training side's
evaluation (``training/evaluate.py``) and tests share it. Rows of the matrix are the reference
classes, columns the predicted ones.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class Assessment:
    """A confusion matrix over ``labels`` and the metrics derived from it."""

    labels: list[str]
    matrix: np.ndarray  # (n, n): matrix[reference, predicted], counts or weights

    @property
    def total(self) -> float:
        """Number (or weight) of samples."""
        return float(self.matrix.sum())

    @property
    def overall_accuracy(self) -> float:
        """Share of samples on the diagonal (0 without samples)."""
        return float(np.trace(self.matrix) / self.total) if self.total else 0.0

    @property
    def kappa(self) -> float:
        """Cohen's kappa: agreement beyond what the class frequencies give by chance."""
        total = self.total
        expected = float((self.matrix.sum(axis=1) * self.matrix.sum(axis=0)).sum() / total**2)
        if expected >= 1.0:  # one class only: agreement is perfect or kappa is undefined
            return 1.0 if self.overall_accuracy == 1.0 else 0.0
        return (self.overall_accuracy - expected) / (1.0 - expected)

    @property
    def support(self) -> np.ndarray:
        """Reference samples per class."""
        return self.matrix.sum(axis=1)

    @property
    def precision(self) -> np.ndarray:
        """Per class: correct / predicted as the class (user's accuracy); 0 when never predicted."""
        return _safe_divide(np.diag(self.matrix), self.matrix.sum(axis=0))

    @property
    def recall(self) -> np.ndarray:
        """Per class: correct / reference of the class (producer's accuracy); 0 when absent."""
        return _safe_divide(np.diag(self.matrix), self.matrix.sum(axis=1))

    @property
    def f1(self) -> np.ndarray:
        """Per class: harmonic mean of precision and recall; 0 when both are 0."""
        return _safe_divide(2 * self.precision * self.recall, self.precision + self.recall)

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the classes the reference holds: an absent class would drag it towards zero."""
        present = self.support > 0
        return float(self.f1[present].mean()) if present.any() else 0.0

    def per_class(self) -> dict[str, dict[str, float]]:
        """Per class: precision, recall, F1 and support (an int when the matrix counts), JSON-ready."""
        return {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": s.item()}
            for label, p, r, f, s in zip(self.labels, self.precision, self.recall, self.f1, self.support)
        }

    def to_csv(self) -> str:
        """Three tables separated by blank lines: summary, per class, confusion matrix."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows(
            [["metric", "value"], ["samples", _number(self.total)]]
            + [["overall_accuracy", f"{self.overall_accuracy:.4f}"], ["kappa", f"{self.kappa:.4f}"], []]
        )
        writer.writerow(["class", "precision", "recall", "f1", "support"])
        for row in self._class_rows():
            writer.writerow(row)
        writer.writerow([])
        writer.writerow(["reference \\ predicted", *self.labels])
        for label, counts in zip(self.labels, self.matrix):
            writer.writerow([label, *(_number(value) for value in counts)])
        return out.getvalue()

    def to_html(self, title: str = "RS Ghost accuracy assessment", notes: Sequence[str] = ()) -> str:
        """A self-contained HTML report."""
        esc = html.escape
        header = "".join(f"<th>{esc(label)}</th>" for label in self.labels)
        matrix_rows = "".join(
            f"<tr><th>{esc(label)}</th>"
            + "".join(f'<td class="{"diag" if i == j else ""}">{_number(value)}</td>' for j, value in enumerate(counts))
            + "</tr>"
            for i, (label, counts) in enumerate(zip(self.labels, self.matrix))
        )
        class_rows = "".join(
            "<tr>" + "".join(f"<td>{esc(str(cell))}</td>" for cell in row) + "</tr>" for row in self._class_rows()
        )
        note_items = "".join(f"<li>{esc(note)}</li>" for note in notes)
        return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #999;padding:3px 8px;text-align:right}}th{{background:#eee}}
td.diag{{background:#d9f0d3;font-weight:bold}}</style></head><body>
<h1>{esc(title)}</h1>
<table><tr><th>samples</th><td>{_number(self.total)}</td></tr>
<tr><th>overall accuracy</th><td>{self.overall_accuracy:.4f}</td></tr>
<tr><th>kappa</th><td>{self.kappa:.4f}</td></tr></table>
<h2>Per class</h2>
<table><tr><th>class</th><th>precision (user's)</th><th>recall (producer's)</th><th>F1</th><th>support</th></tr>
{class_rows}</table>
<h2>Confusion matrix (rows: reference, columns: predicted)</h2>
<table><tr><th></th>{header}</tr>{matrix_rows}</table>
<ul>{note_items}</ul>
</body></html>
"""

    def _class_rows(self) -> list[list[str]]:
        return [
            [label, f"{p:.4f}", f"{r:.4f}", f"{f:.4f}", _number(s)]
            for label, p, r, f, s in zip(self.labels, self.precision, self.recall, self.f1, self.support)
        ]


def _safe_divide(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    top = np.asarray(top, dtype=float)
    bottom = np.asarray(bottom, dtype=float)
    return np.divide(top, bottom, out=np.zeros_like(top), where=bottom > 0)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4f}"


def harmonise(reference: Sequence[str], known: Sequence[str]) -> list[str]:
    """Spell reference class names like the model does when they differ only in case or spaces."""
    canonical = {_key(name): name for name in known}
    return [canonical.get(_key(name), name) for name in reference]


def check_classes(reference: Sequence[str], model_classes: Sequence[str]) -> None:
    """Refuse reference classes the model does not have: they could only ever count as errors.

    Compared like ``harmonise`` does (case, spaces and underscores do not matter).
    """
    known = {_key(name) for name in model_classes}
    unknown = sorted({name for name in reference if _key(name) not in known})
    if unknown:
        raise InputError(
            f"The reference holds classes the model does not have: {', '.join(unknown)}. The model's classes are "
            f"{', '.join(model_classes)}. Recode the reference field to these names (case and spaces do not "
            "matter) or drop those polygons; otherwise every such tile counts as an error."
        )


def _key(name: str) -> str:
    return "".join(name.split()).replace("_", "").casefold()


def assess(
    reference: Sequence[str],
    predicted: Sequence[str],
    labels: Sequence[str] | None = None,
    weights: Sequence[float] | None = None,
) -> Assessment:
    """Build the assessment from paired reference and predicted class names.

    ``labels`` fixes the order (default: predicted labels first as they appear, then any
    reference-only ones); ``weights`` (e.g. hectares) replaces counting each pair as 1.
    """
    if len(reference) != len(predicted):
        raise InputError(f"{len(reference)} reference labels but {len(predicted)} predicted ones.")
    if not reference:
        raise InputError(
            "No classified tile overlaps the reference polygons enough to compare; check that both layers "
            "cover the same area and that the reference layer has a class field."
        )
    if labels is None:
        labels = list(dict.fromkeys([*predicted, *reference]))
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({name for name in [*reference, *predicted] if name not in index})
    if unknown:
        raise InputError(f"Classes not in the label list: {', '.join(unknown)}.")
    weight = np.ones(len(reference)) if weights is None else np.asarray(weights, dtype=float)
    matrix = confusion_matrix([index[r] for r in reference], [index[p] for p in predicted], len(labels), weight)
    return Assessment(labels=list(labels), matrix=matrix.astype(float))


def confusion_matrix(
    reference: Sequence[int] | np.ndarray,
    predicted: Sequence[int] | np.ndarray,
    num_classes: int,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """matrix[reference, predicted] from class indices: integer counts, or the summed ``weights``."""
    reference = np.asarray(reference, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    cells = np.bincount(reference * num_classes + predicted, weights=weights, minlength=num_classes**2)
    return cells.reshape(num_classes, num_classes)
