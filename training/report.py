"""Results table in the paper's shape, from the ``metrics.json`` files that ``evaluate`` and
``quantize`` write: model, parameters, MACs, validation top-1 clean and robust (the lowest top-1
under the fixed radiometric shifts of ``training.robustness``), macro F1 and CPU tiles/s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.errors import TrainingError

HEADER = (
    "| model | architecture | parameters | MACs (64 px) | val top-1 | robust val top-1 | macro F1 | CPU tiles/s |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
)


def results_table(folders: list[Path]) -> str:
    """One markdown row per evaluation folder, labelled with the folder's name, in the given order."""
    rows = [_row(folder.name, _read(folder)) for folder in folders]
    return "\n".join([*HEADER, *rows])


def tiles_per_second(metrics: dict[str, Any]) -> float | None:
    """CPU tiles per second at batch 32: ``evaluate``'s timing on every core, else ``quantize``'s fastest."""
    if metrics.get("latency"):
        return 1000 / metrics["latency"]["ms_per_tile_batch32"]
    by_threads = metrics.get("tiles_per_s_batch32") or {}
    return max(by_threads.values()) if by_threads else None


def _row(label: str, metrics: dict[str, Any]) -> str:
    speed = tiles_per_second(metrics)
    cells = [
        label,
        metrics.get("architecture", "?"),
        f"{metrics['parameters'] / 1e6:.1f} M",
        f"{metrics['macs'] / 1e9:.2f} G",
        f"{100 * metrics['top1']:.2f}%",
        f"{100 * metrics['robust_top1_min']:.2f}%" if "robust_top1_min" in metrics else "not measured",
        f"{100 * metrics['macro_f1']:.2f}%",
        f"{speed:.0f}" if speed is not None else "not measured",
    ]
    return "| " + " | ".join(cells) + " |"


def _read(folder: Path) -> dict[str, Any]:
    path = folder / "metrics.json"
    if not path.is_file():
        raise TrainingError(f"{path} does not exist: give folders written by `evaluate` or `quantize`.")
    return json.loads(path.read_text())
