"""Runtime dependencies in the user's QGIS Python: check, explain, and (with consent) install.

The plugin must load even when onnxruntime is missing or too old: the check never raises,
and the message names what is missing with the exact command for this platform. The optional
installer puts onnxruntime alone (``--no-deps``) into a folder the plugin owns, so it never
upgrades or replaces QGIS's numpy. This module imports neither QGIS nor onnxruntime at import.
"""

from __future__ import annotations

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
        """A message for the user: the problem, then the command that fixes it."""
        if self.ok:
            return f"onnxruntime {self.onnxruntime_version} and numpy {self.numpy_version} are ready."
        return (
            f"{self.problem}\n\nTo fix it, run this command (it installs onnxruntime alone into the "
            f"plugin's own folder and leaves numpy untouched), then restart QGIS:\n\n"
            f"{format_command(self.install_command)}"
        )


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


def python_executable() -> str:
    """The interpreter QGIS runs on; inside QGIS ``sys.executable`` is often QGIS itself."""
    if Path(sys.executable).name.lower().startswith("python"):
        return sys.executable
    prefix = Path(sys.exec_prefix)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (prefix / "python.exe", prefix / "bin" / f"python{version}", prefix / "bin" / "python3"):
        if candidate.exists():
            return str(candidate)
    return shutil.which(f"python{version}") or shutil.which("python3") or "python3"


def requirement(numpy_version: str) -> str:
    """The onnxruntime requirement that fits this numpy (numpy 2 needs a numpy-2 build)."""
    low = NUMPY2_ONNXRUNTIME if _version_tuple(numpy_version) >= (2,) else MIN_ONNXRUNTIME
    return "onnxruntime>=" + ".".join(map(str, low))


def install_command(folder: str | os.PathLike, numpy_version: str) -> list[str]:
    """The pip command that installs onnxruntime alone into ``folder``."""
    return [
        python_executable(),
        "-m",
        "pip",
        "install",
        "--upgrade",
        "--no-deps",
        "--target",
        str(folder),
        requirement(numpy_version),
    ]


def format_command(command: list[str]) -> str:
    """The command as one line to paste into a terminal (the OSGeo4W Shell on Windows)."""
    quote = '"{}"' if sys.platform.startswith("win") else "'{}'"
    return " ".join(quote.format(part) if any(c in part for c in " <>") else part for part in command)


def check(folder: str | os.PathLike) -> DependencyStatus:
    """Check numpy and onnxruntime in this Python; never raises."""
    try:
        import numpy

        numpy_version = numpy.__version__
    except Exception as error:  # a broken numpy can raise anything at import
        return DependencyStatus(ok=False, problem=f"numpy cannot be imported in QGIS's Python ({error}).")
    command = install_command(folder, numpy_version)
    try:
        onnxruntime = importlib.import_module("onnxruntime")
        version = str(getattr(onnxruntime, "__version__", "0"))
    except ImportError as error:
        missing = "is not installed" if isinstance(error, ModuleNotFoundError) else f"cannot be imported ({error})"
        return DependencyStatus(
            ok=False,
            problem=f"onnxruntime {missing} in QGIS's Python; the plugin needs it to run models.",
            numpy_version=numpy_version,
            install_command=command,
        )
    except Exception as error:  # e.g. a numpy ABI mismatch raising at import time
        return DependencyStatus(
            ok=False,
            problem=f"onnxruntime cannot be imported in QGIS's Python ({type(error).__name__}: {error}).",
            numpy_version=numpy_version,
            install_command=command,
        )
    needed = NUMPY2_ONNXRUNTIME if _version_tuple(numpy_version) >= (2,) else MIN_ONNXRUNTIME
    if _version_tuple(version) < needed:
        return DependencyStatus(
            ok=False,
            problem=(
                f"onnxruntime {version} is too old: this plugin needs {'.'.join(map(str, needed))} or newer"
                f" (with numpy {numpy_version})."
            ),
            onnxruntime_version=version,
            numpy_version=numpy_version,
            install_command=command,
        )
    return DependencyStatus(ok=True, onnxruntime_version=version, numpy_version=numpy_version)


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
