"""Link the working tree into a QGIS profile as the plugin rs_ghost_qgis (`make install`).

The repository keeps metadata.txt, LICENSE and resources/ next to the package, while QGIS
wants them inside the plugin folder. So the installed folder is a folder of symlinks shaped
like the zip: one link per entry of rs_ghost_qgis/, plus metadata.txt, LICENSE and
resources/. Edits in the working tree are live after a QGIS restart (or Plugin Reloader).
The plugin is also switched on in the profile's QGIS3.ini.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "rs_ghost_qgis"
TOP_ENTRIES = ["metadata.txt", "LICENSE", "resources"]
MARKER = ".rs_ghost_linked"  # says the folder is ours to replace


def default_profiles_dir() -> Path:
    """Where QGIS keeps profiles on this platform."""
    if sys.platform.startswith("win"):
        return Path(os.environ.get("APPDATA", Path.home())) / "QGIS" / "QGIS3" / "profiles"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "QGIS" / "QGIS3" / "profiles"
    return Path.home() / ".local" / "share" / "QGIS" / "QGIS3" / "profiles"


def entries() -> list[tuple[Path, str]]:
    """(source in the working tree, name in the plugin folder) for every link."""
    found = [(path, path.name) for path in sorted((ROOT / PACKAGE).iterdir()) if path.name != "__pycache__"]
    return found + [(ROOT / name, name) for name in TOP_ENTRIES]


def install(plugins_dir: Path, copy: bool = False) -> Path:
    """Create plugins_dir/rs_ghost_qgis as links (or copies) of the working tree; return it."""
    target = plugins_dir / PACKAGE
    if target.is_symlink():
        target.unlink()
    elif target.exists():
        if not (target / MARKER).exists():
            raise SystemExit(f"{target} exists and was not made by this script; remove it first.")
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for source, name in entries():
        destination = target / name
        if copy:
            if source.is_dir():
                shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(source, destination)
        else:
            destination.symlink_to(source, target_is_directory=source.is_dir())
    (target / MARKER).write_text(f"linked from {ROOT}\n", encoding="utf-8")
    return target


def enable(profile_dir: Path) -> Path:
    """Switch the plugin on in the profile's QGIS/QGIS3.ini (read by QGIS at start-up)."""
    from qgis.PyQt.QtCore import QSettings

    ini = profile_dir / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    settings = QSettings(str(ini), QSettings.IniFormat)
    settings.setValue(f"PythonPlugins/{PACKAGE}", True)
    settings.sync()
    return ini


def main(argv: list[str] | None = None) -> int:
    """Install into a profile (default: 'default'), or into --plugins-dir."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default", help="QGIS profile name (default: default)")
    parser.add_argument("--profiles-dir", type=Path, default=default_profiles_dir(), help="QGIS profiles folder")
    parser.add_argument("--plugins-dir", type=Path, help="install here instead (e.g. a QGIS_PLUGINPATH folder)")
    parser.add_argument("--copy", action="store_true", help="copy instead of linking")
    parser.add_argument("--no-enable", action="store_true", help="do not switch the plugin on in QGIS3.ini")
    args = parser.parse_args(argv)
    profile = args.profiles_dir / args.profile
    plugins_dir = args.plugins_dir or profile / "python" / "plugins"
    target = install(plugins_dir, copy=args.copy)
    print(f"installed {target}")
    if not args.no_enable and args.plugins_dir is None:
        print(f"enabled in {enable(profile)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
