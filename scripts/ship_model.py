"""Make a finished int8 model the plugin's bundled default, with its status in words on its card.

Usage: PYTHONPATH=. .venv/bin/python scripts/ship_model.py MODEL.onnx "STATUS"
  e.g. scripts/ship_model.py ../rs_ghost_runs/g002_adamw_s0/int8/eurosat_g_ghost_regnetx_002_int8.onnx \
         "CPU recipe, the project's default model: ..."

The status is what the dialog's model panel shows under the model's name (card field
``training.status``). The model and its card (.md) are written into resources/models, the copy of
the card in the run folder is updated too, and resources/models/default.txt names the model.
Earlier bundled models are removed: the package ships one.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path

import onnx

from rs_ghost_qgis.core import atomic
from rs_ghost_qgis.core.model.card import ModelCard
from training.export import embed_card

MODELS = Path(__file__).resolve().parent.parent / "resources" / "models"


def ship(model: Path, status: str) -> Path:
    """Copy ``model`` with ``status`` on its card into resources/models and make it the default.

    Every file is written under a temporary name and renamed into place, and the earlier bundled
    models are removed only once the new one and default.txt are complete: a failed copy leaves
    the package with its previous model, never with none or half a one.
    """
    graph = onnx.load(str(model))
    card = ModelCard.from_metadata({p.key: p.value for p in graph.metadata_props}, source=str(model))
    card = dataclasses.replace(card, training={**card.training, "status": status})
    embed_card(model, card)
    atomic.write_text(model.with_suffix(".md"), card.to_markdown())
    target = MODELS / model.name
    for source, destination in ((model, target), (model.with_suffix(".md"), target.with_suffix(".md"))):
        with atomic.atomic_path(destination) as tmp:
            shutil.copyfile(source, tmp)
    atomic.write_text(MODELS / "default.txt", model.name + "\n")
    for old in MODELS.glob("*.onnx"):
        if old.name != model.name:
            old.unlink()
            old.with_suffix(".md").unlink(missing_ok=True)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(f"bundled: {ship(Path(sys.argv[1]), sys.argv[2])}")
