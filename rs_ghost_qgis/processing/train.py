"""``rsghost:train``: run ``python -m training run`` in a subprocess with torch.

QGIS's own Python rarely has torch, and training must not block or crash QGIS, so it runs in
a separate interpreter (no shell) and streams its output into the feedback log.
"""

from __future__ import annotations

import os
import queue
import shlex
import subprocess  # nosec B404  # argument lists only, never a shell
import threading
import time
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingUtils,
)

from ..deps import python_executable
from ..paths import PACKAGE_DIR

PROBE_TIMEOUT_S = 120
# What to run: the toolbox's words and the training command. Both are `python -m training run`,
# which trains, evaluates and exports an ONNX model with its card (`train` would leave only
# checkpoints, and would log a model trained alone as the "teacher").
COMMANDS = [
    ("One model, trained alone; exported to ONNX", ["run", "--distill", "none"]),
    ("Teacher, then a student distilled from it; exported to ONNX (hours on a CPU)", ["run"]),
]
FALLBACK_ARCHITECTURE = "g_ghost_regnetx_040"  # the training command's own default, when no model is bundled


def bundled_architecture() -> str:
    """The bundled model's architecture, read from its card (no onnxruntime needed); else the training default."""
    from ..core.model.card import ModelCard
    from ..core.model.onnx_meta import read_metadata
    from ..qgis_io.options import bundled_model_or_none

    path = bundled_model_or_none()
    try:
        return ModelCard.from_metadata(read_metadata(path.read_bytes())).architecture if path else FALLBACK_ARCHITECTURE
    except Exception:  # an unreadable card: the run will not use it; train what training trains by default
        return FALLBACK_ARCHITECTURE


def models_folder() -> Path:
    """Where trained models go by default: inside the QGIS profile, which outlives the session."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "rs_ghost_qgis" / "trained"


def output_folder(chosen: str) -> tuple[Path, str]:
    """The run's folder and what the log says of it. Nothing chosen, or QGIS's temporary folder (deleted
    when QGIS exits, with hours of training in it), becomes a new folder under ``models_folder()``."""
    temporary = Path(QgsProcessingUtils.tempFolder()).resolve()
    if chosen and temporary not in Path(chosen).resolve().parents:
        return Path(chosen), f"The model, its card, checkpoints and logs go to {chosen}."
    folder = models_folder() / time.strftime("run-%Y%m%d-%H%M%S")
    return folder, (
        f"The model, its card, checkpoints and logs go to {folder}, in your QGIS profile: it stays after QGIS "
        "exits (QGIS's temporary folder would not). Choose an Output folder to put them elsewhere."
    )


def find_project(given: str) -> Path | None:
    """The folder that holds the ``training`` package: ``given`` or the plugin's repository."""
    for folder in [Path(given)] if given else [PACKAGE_DIR.parent]:
        if (folder / "training" / "__init__.py").is_file():
            return folder
    return None


def candidate_pythons(given: str, project: Path | None) -> list[str]:
    """Interpreters to try for torch: the chosen one, $RS_GHOST_TRAIN_PYTHON, the repo venv, QGIS's."""
    if given:
        return [given]
    found = [os.environ.get("RS_GHOST_TRAIN_PYTHON", "")]
    if project is not None:
        found += [str(project / ".venv" / "bin" / "python"), str(project / ".venv" / "Scripts" / "python.exe")]
    found.append(python_executable())
    return [p for p in dict.fromkeys(found) if p and Path(p).exists()]


def torch_python(candidates: list[str], project: Path) -> tuple[str | None, list[str]]:
    """The first interpreter that imports torch and ``training``; else None and why each failed."""
    reasons = []
    for python in candidates:
        try:
            probe = subprocess.run(  # nosec B603  # fixed argument list, no shell
                [python, "-c", "import torch, training; print(torch.__version__)"],
                cwd=project,
                capture_output=True,
                text=True,
                timeout=PROBE_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            reasons.append(f"{python}: {error}")
            continue
        if probe.returncode == 0:
            return python, reasons
        last = (probe.stderr.strip().splitlines() or ["failed"])[-1]
        reasons.append(f"{python}: {last}")
    return None, reasons


class TrainAlgorithm(QgsProcessingAlgorithm):
    """Train one model (or a teacher and a distilled student) and export it as an ONNX model with its card."""

    COMMAND = "COMMAND"
    ARCHITECTURE = "ARCHITECTURE"
    DATA = "DATA"
    EPOCHS = "EPOCHS"
    ARGS = "ARGS"
    PYTHON = "PYTHON"
    PROJECT = "PROJECT"
    OUTPUT = "OUTPUT"

    def name(self) -> str:
        """Algorithm id within the provider."""
        return "train"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        """Name in the toolbox."""
        return "Train a model (needs torch)"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        """Help shown next to the parameters."""
        return (
            "Trains a model from the RS Ghost repository in a separate Python that has torch (QGIS's own "
            "Python usually does not): either one model of the architecture given, trained alone "
            "(`python -m training run --distill none`), or a VGG-16 teacher and then a student of that "
            "architecture distilled from it (`python -m training run`). Either way the model is evaluated "
            "and exported as an ONNX file with its model card, which Classify accepts as MODEL; the "
            "output folder also receives the checkpoints, logs and curves (left empty, or QGIS's temporary "
            "folder, which QGIS deletes on exit: a new folder in your QGIS profile that stays). The "
            "architecture defaults to the bundled model's. The Python is the one you "
            "choose, else $RS_GHOST_TRAIN_PYTHON, else the repository's .venv, else QGIS's. Training can "
            "take hours on a CPU."
        )

    def createInstance(self):  # noqa: N802 (QGIS API)
        """A fresh copy for each run."""
        return TrainAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API)
        """Declare the parameters and outputs."""
        self.addParameter(
            QgsProcessingParameterFile(
                self.DATA, "Training data folder (EuroSAT layout)", QgsProcessingParameterFile.Folder
            )
        )
        choices = [words for words, _ in COMMANDS]
        self.addParameter(QgsProcessingParameterEnum(self.COMMAND, "What to train", choices, False, 0))
        self.addParameter(
            QgsProcessingParameterString(
                self.ARCHITECTURE, "Architecture (default: the bundled model's)", bundled_architecture()
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.EPOCHS, "Epochs (0 = the training default)", QgsProcessingParameterNumber.Integer, 0, True, 0
            )
        )
        self.addParameter(QgsProcessingParameterString(self.ARGS, "Extra arguments", "", False, True))
        self.addParameter(
            QgsProcessingParameterFile(
                self.PYTHON, "Python with torch", QgsProcessingParameterFile.File, "", None, True, "All files (*)"
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.PROJECT,
                "RS Ghost repository (holds training/)",
                QgsProcessingParameterFile.Folder,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFolderDestination(
                self.OUTPUT, "Output folder (empty: a new folder in your QGIS profile)", None, True
            )
        )
        self.addOutput(QgsProcessingOutputFile("MODEL", "Exported model"))

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API)
        """EPOCHS first: text that is no whole number is refused by name, not trained for the default."""
        try:
            self._epochs(parameters, context)
        except QgsProcessingException as error:
            return False, str(error)
        return super().checkParameterValues(parameters, context)

    def _epochs(self, parameters, context) -> int | None:
        """The EPOCHS parameter (None or 0: the training default); QgsProcessingException for 'abc' or 2.5."""
        from ..core.errors import RsGhostError
        from ..qgis_io.options import number_value

        try:
            return number_value(self, parameters, self.EPOCHS, context, integer=True)
        except RsGhostError as error:
            raise QgsProcessingException(str(error)) from None

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        """Find a Python with torch, run the training, stream its log, honour cancel."""
        epochs = self._epochs(parameters, context)  # before anything is made (a caller may skip the check)
        project = find_project(self.parameterAsFile(parameters, self.PROJECT, context))
        if project is None:
            raise QgsProcessingException(
                "The training code is not here (no training/ package in the chosen folder, and the plugin zip "
                "ships only the classifier). Clone the RS Ghost repository and choose its folder as "
                "'RS Ghost repository'."
            )
        python, reasons = torch_python(
            candidate_pythons(self.parameterAsFile(parameters, self.PYTHON, context), project), project
        )
        if python is None:
            raise QgsProcessingException(
                "No Python with torch was found:\n  "
                + "\n  ".join(reasons or ["no candidate interpreter exists"])
                + f"\nInstall it with `bash scripts/setup.sh` in {project} (CPU torch, pinned), or choose a "
                "Python that has torch under 'Python with torch'."
            )
        folder, where = output_folder(self.parameterAsString(parameters, self.OUTPUT, context))
        out = str(folder)
        what = COMMANDS[self.parameterAsEnum(parameters, self.COMMAND, context)][1]
        architecture = self.parameterAsString(parameters, self.ARCHITECTURE, context) or bundled_architecture()
        command = [python, "-m", "training", *what, "--data", self.parameterAsFile(parameters, self.DATA, context)]
        command += ["--student", architecture, "--out", out]
        if epochs:
            command += ["--epochs", str(epochs)]
        command += shlex.split(self.parameterAsString(parameters, self.ARGS, context) or "")
        feedback.pushInfo(where)
        feedback.pushCommandInfo(" ".join(shlex.quote(part) for part in command))
        code = _run_streaming(command, project, feedback)
        if feedback.isCanceled():
            raise QgsProcessingException("Training cancelled by the user.")
        if code != 0:
            raise QgsProcessingException(f"Training failed (exit {code}); its log is above.")
        models = sorted(Path(out).rglob("*.onnx"), key=lambda p: p.stat().st_mtime)
        if models:
            feedback.pushInfo(f"Exported model: {models[-1]} (its card beside it); Classify takes it as MODEL. {where}")
        else:
            feedback.reportError(f"Training ended, but no ONNX model was exported into {out}; its log is above.")
        return {self.OUTPUT: out, "MODEL": str(models[-1]) if models else ""}


def _run_streaming(command: list[str], cwd: Path, feedback) -> int:
    """Run ``command``, pass its lines to ``feedback``, terminate it on cancel; its exit code."""
    # The with block waits for the process and closes its pipe, also on cancel and on errors:
    # an unclosed pipe is a ResourceWarning and a file descriptor lost per run.
    with subprocess.Popen(  # nosec B603  # argument list, no shell
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        lines: queue.Queue[str | None] = queue.Queue()
        pump = threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True)
        pump.start()
        code = _follow(process, lines, feedback)
        pump.join(timeout=5)  # the pipe ends with the process; let the reader finish before closing it
    return code


def _pump(stream, lines: queue.Queue) -> None:
    """Reader thread: the process's lines into ``lines``, then None."""
    try:
        for line in stream:
            lines.put(line.rstrip())
    except (OSError, ValueError):  # the pipe was closed under us after a cancel
        pass
    lines.put(None)


def _follow(process: subprocess.Popen, lines: queue.Queue, feedback) -> int:
    """Forward ``lines`` to ``feedback`` until the process ends or the user cancels; the exit code."""
    while True:
        if feedback.isCanceled():
            process.terminate()
            process.wait(timeout=30)
            return process.returncode
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            return process.wait()
        feedback.pushConsoleInfo(line)
