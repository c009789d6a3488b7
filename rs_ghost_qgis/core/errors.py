"""User-facing errors: each message names the problem and the fix.

Every face (dialog, Processing, command line) catches ``RsGhostError`` and shows its message
as it is; anything else is a bug and may show a traceback.
"""


class RsGhostError(Exception):
    """A problem the user can fix; ``str(error)`` is the whole message."""


class ModelError(RsGhostError):
    """The model file or its model card is missing, unreadable or inconsistent."""


class InputError(RsGhostError):
    """The input raster, extent, mask or band mapping cannot be used."""


class OutputError(RsGhostError):
    """An output cannot be written."""


class Cancelled(RsGhostError):
    """The user cancelled the run; no output was left behind."""

    def __init__(self) -> None:
        super().__init__("Cancelled by the user; no output was written.")
