"""Where the plugin's resources live, in the repository and in an installed plugin folder.

The repository keeps ``resources/`` and ``metadata.txt`` next to the package; the installed
plugin (zip or ``make install``) has them inside the package folder. Both layouts work.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def plugin_file(relative: str) -> Path:
    """The path of ``relative`` (e.g. ``resources/icon.svg``) in whichever layout this is."""
    for base in (PACKAGE_DIR, PACKAGE_DIR.parent):
        candidate = base / relative
        if candidate.exists():
            return candidate
    return PACKAGE_DIR / relative


def icon_path() -> Path:
    """The plugin's icon (SVG)."""
    return plugin_file("resources/icon.svg")


def help_path() -> Path:
    """The plugin's user guide, shipped inside the package so that it opens offline."""
    return PACKAGE_DIR / "help" / "index.html"


def open_help() -> bool:
    """Open the user guide in the system's browser; False when it could not be opened."""
    from qgis.PyQt.QtCore import QUrl
    from qgis.PyQt.QtGui import QDesktopServices

    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(help_path())))


def plugin_version() -> str:
    """The version written in metadata.txt, or "unknown"."""
    metadata = plugin_file("metadata.txt")
    if metadata.exists():
        for line in metadata.read_text(encoding="utf-8").splitlines():
            if line.startswith("version="):
                return line.split("=", 1)[1].strip()
    return "unknown"
