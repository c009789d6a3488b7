"""Write a model's measured known limits into its card (no retraining), and its .md card beside it.

Usage: PYTHONPATH=. .venv/bin/python scripts/card_limits.py MODEL.onnx "limit" ["limit" ...]

The limits replace the card's ``known_limits``; ``python -m rs_ghost_qgis info`` and the dialog's
model panel show them. Each limit should be a measurement, with where it was measured (issue 32).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import onnx

from rs_ghost_qgis.core.model.card import ModelCard
from training.export import embed_card


def set_limits(model: Path, limits: list[str]) -> ModelCard:
    """Embed ``limits`` as the card's known_limits in ``model``; rewrite MODEL.md; return the new card."""
    graph = onnx.load(str(model))
    card = ModelCard.from_metadata({p.key: p.value for p in graph.metadata_props}, source=str(model))
    card = dataclasses.replace(card, known_limits=list(limits))
    embed_card(model, card)
    model.with_suffix(".md").write_text(card.to_markdown(), encoding="utf-8")
    return card


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    print("\n".join(set_limits(Path(sys.argv[1]), sys.argv[2:]).known_limits))
