"""The training side's errors: one tree under the plugin's RsGhostError.

Every one is a problem the user can act on, so ``python -m training`` prints its message as
one ``error: ...`` line, without a traceback: exit code 2 for a TrainingError, 1 for an
ExportError (the exporter, not the request, failed).
"""

from __future__ import annotations

from pathlib import Path

from rs_ghost_qgis.core.errors import RsGhostError


class TrainingError(RsGhostError):
    """A training, evaluation or export request that cannot be carried out as given."""


class DataError(TrainingError):
    """A user mistake in the data; the message names the problem and the fix."""


class ExportError(TrainingError):
    """The exported graph does not reproduce the torch model; nothing was written."""


def cannot_write(path: Path, error: OSError) -> TrainingError:
    """The one message for an output that could not be written (read-only folder, full disk)."""
    return TrainingError(
        f"cannot write {path}: {error.strerror or error}. Choose an --out in a folder you can write to, "
        "or free disk space."
    )
