"""Runtime dependencies in the user's QGIS Python: check, explain, and (with consent) install.

The plugin must load even when onnxruntime is missing or too old: the check never raises,
and the message names what is missing with the exact command for this platform. The optional
installer puts onnxruntime alone (``--no-deps``) into a folder the plugin owns, so it never
upgrades or replaces QGIS's numpy. This module imports neither QGIS nor onnxruntime at import.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess  # nosec B404  # runs pip with an argument list, never a shell
import sys
from dataclasses import dataclass, field
from pathlib import Path

MIN_ONNXRUNTIME = (1, 14)  # first release that runs opset 17 models (our exporter's opset)
NUMPY2_ONNXRUNTIME = (1, 19)  # first release built for numpy 2
INSTALL_TIMEOUT_S = 900
# Modules the engine imports inside QGIS besides numpy and GDAL's osgeo (which every QGIS has),
# with the oldest version that works; pip puts them in the plugin's folder. Inside QGIS the
# engine reads and writes through QGIS and osgeo, so rasterio (command line only) is not needed.
PIP_MODULES = {"onnxruntime": MIN_ONNXRUNTIME, "shapely": (2, 0), "affine": (2, 0)}
# Linux resolves shared-library symbols globally: QGIS has already loaded its own GEOS, so a
# pip shapely that bundles a newer copy would silently call QGIS's older one ("WKB output
# dimension must be 2 or 3"). Importing it with RTLD_DEEPBIND first keeps the wheel on its own
# library; Windows and macOS bind per library and need nothing.
ISOLATED_IMPORTS = ("shapely",)


class DependencyError(RuntimeError):
    """Installing a dependency failed; the message says why and what to do."""


@dataclass(frozen=True)
class DependencyStatus:
    """What the plugin found in this Python: ``ok`` or a ``problem`` with the fix."""

    ok: bool
    problem: str = ""
    onnxruntime_version: str = ""
    numpy_version: str = ""
    install_command: list[str] = field(default_factory=list)

    def message(self) -> str:
        """A message for the user: the problem, then the commands that fix it."""
        if self.ok:
            return f"onnxruntime {self.onnxruntime_version} and numpy {self.numpy_version} are ready."
        parts = [self.problem]
        if self.install_command:
            parts.append(
                "To fix it, run this command (it installs the missing packages alone into the plugin's own "
                f"folder and leaves numpy untouched), then restart QGIS:\n\n{format_command(self.install_command)}"
            )
        return "\n\n".join(parts)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def deps_folder(settings_dir: str | os.PathLike) -> Path:
    """The plugin's own package folder for this Python version, inside the QGIS profile dir."""
    tag = f"python{sys.version_info.major}{sys.version_info.minor}"
    return Path(settings_dir) / "rs_ghost_qgis" / "deps" / tag


def activate(folder: str | os.PathLike) -> None:
    """Put ``folder`` first on sys.path (when it exists) so a plugin-installed onnxruntime wins."""
    path = str(folder)
    if Path(path).is_dir() and path not in sys.path:
        sys.path.insert(0, path)
        importlib.invalidate_caches()


def load_isolated() -> None:
    """Import the wheels that bundle GEOS so they bind to their own copies (Linux; never raises)."""
    if not sys.platform.startswith("linux") or not hasattr(os, "RTLD_DEEPBIND"):
        return
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
    try:
        for name in ISOLATED_IMPORTS:
            if name not in sys.modules:
                with contextlib.suppress(Exception):  # check() reports missing or broken modules
                    importlib.import_module(name)
    finally:
        sys.setdlopenflags(flags)


def _shapely_problem() -> str:
    """Why shapely cannot serve the engine here (bound to another GEOS), or ""."""
    import shapely

    try:
        shapely.to_wkb(shapely.box(0, 0, 1, 1), flavor="iso")
    except Exception as error:
        return (
            f"shapely {shapely.__version__} is bound to QGIS's own GEOS library ({error}): another plugin imported "
            "it first. Restart QGIS so RS Ghost loads it first, or disable that plugin"
        )
    return ""


def python_executable() -> str:
    """The interpreter QGIS runs on, found under its prefix.

    Inside QGIS ``sys.executable`` is QGIS itself or whatever ``python3`` comes first on PATH
    (an embedded interpreter guesses), so the prefix is searched first.
    """
    prefix = Path(sys.exec_prefix)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (prefix / "python.exe", prefix / "bin" / f"python{version}", prefix / "bin" / "python3"):
        if candidate.is_file():
            return str(candidate)
    if Path(sys.executable).name.lower().startswith("python"):
        return sys.executable
    return shutil.which(f"python{version}") or shutil.which("python3") or "python3"


def requirement(module: str, numpy_version: str) -> str:
    """The pip requirement for ``module`` that fits this numpy (numpy 2 needs a numpy-2 onnxruntime)."""
    low = PIP_MODULES[module]
    if module == "onnxruntime" and _version_tuple(numpy_version) >= (2,):
        low = NUMPY2_ONNXRUNTIME
    return f"{module}>=" + ".".join(map(str, low))


def install_command(folder: str | os.PathLike, numpy_version: str, modules=("onnxruntime",)) -> list[str]:
    """The pip command that installs ``modules`` alone (no dependencies) into ``folder``."""
    requirements = [requirement(module, numpy_version) for module in modules]
    return [
        python_executable(),
        "-m",
        "pip",
        "install",
        "--upgrade",
        "--no-deps",
        "--target",
        str(folder),
    ] + requirements


def format_command(command: list[str]) -> str:
    """The command as one line to paste into a terminal (the OSGeo4W Shell on Windows)."""
    quote = '"{}"' if sys.platform.startswith("win") else "'{}'"
    return " ".join(quote.format(part) if any(c in part for c in " <>") else part for part in command)


def _module_problem(name: str, minimum: tuple[int, ...]) -> tuple[str, str]:
    """(problem, version) for one module; problem is "" when it imports and is new enough."""
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError:
        return f"{name} is not installed", ""
    except Exception as error:  # ImportError, or e.g. a numpy ABI mismatch raising at import time
        return f"{name} cannot be imported ({type(error).__name__}: {error})", ""
    version = str(getattr(module, "__version__", "0"))
    if _version_tuple(version) < minimum:
        return f"{name} {version} is too old (needs {'.'.join(map(str, minimum))} or newer)", version
    return "", version


def check(folder: str | os.PathLike) -> DependencyStatus:
    """Check what the engine needs in this Python; never raises."""
    try:
        import numpy

        numpy_version = numpy.__version__
    except Exception as error:  # a broken numpy can raise anything at import
        return DependencyStatus(ok=False, problem=f"numpy cannot be imported in QGIS's Python ({error}).")
    wanted = dict(PIP_MODULES)
    if _version_tuple(numpy_version) >= (2,):
        wanted["onnxruntime"] = NUMPY2_ONNXRUNTIME
    problems, to_pip, versions = [], [], {}
    for name, minimum in wanted.items():
        problem, versions[name] = _module_problem(name, minimum)
        if problem:
            problems.append(problem)
            to_pip.append(name)
    if not problems:
        problems += [p for p in (_shapely_problem(), _engine_problem()) if p]
    if problems:
        return DependencyStatus(
            ok=False,
            problem="RS Ghost cannot run in this QGIS yet: " + "; ".join(problems) + ".",
            onnxruntime_version=versions.get("onnxruntime", ""),
            numpy_version=numpy_version,
            install_command=install_command(folder, numpy_version, to_pip) if to_pip else [],
        )
    return DependencyStatus(ok=True, onnxruntime_version=versions["onnxruntime"], numpy_version=numpy_version)


def _engine_problem() -> str:
    """Why the engine does not import here (e.g. a Python too old for it), or ""."""
    try:
        importlib.import_module(f"{__package__}.core.classify.pipeline")
    except Exception as error:
        version = ".".join(map(str, sys.version_info[:3]))
        return f"the plugin's engine does not import in Python {version} ({type(error).__name__}: {error})"
    return ""


def install(status: DependencyStatus, folder: str | os.PathLike) -> str:
    """Run the status's install command (after the user agreed); return pip's output.

    Raises DependencyError with pip's own words when it fails. The new onnxruntime is used
    after QGIS restarts (a module already imported cannot be swapped in a running Python).
    """
    if not status.install_command:
        raise DependencyError("Nothing to install: " + (status.problem or "the dependencies are ready."))
    Path(folder).mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(  # nosec B603  # fixed argument list, no shell, user consented
            status.install_command,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise DependencyError(
            f"Could not run pip ({error}). Run the command yourself:\n{format_command(status.install_command)}"
        ) from None
    output = (done.stdout or "") + (done.stderr or "")
    if done.returncode != 0:
        hint = ""
        if "No module named pip" in output:
            hint = "\npip is missing in QGIS's Python; on Debian/Ubuntu: sudo apt install python3-pip"
        raise DependencyError(f"pip failed (exit {done.returncode}):\n{output.strip()[-2000:]}{hint}")
    activate(folder)
    return output
