"""Glue between QGIS faces (task, Processing) and the engine: options in, styled layers out."""

from __future__ import annotations

from pathlib import Path


def bundled_model_or_none() -> Path | None:
    """The bundled default model if it is installed, else None (never raises)."""
    try:
        from ..core.runtime import default_model_path

        path = Path(default_model_path())
    except Exception:  # the engine may be missing a dependency; the run will say which
        return None
    return path if path.is_file() else None
