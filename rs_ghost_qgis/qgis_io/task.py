"""The classification as a QgsTask: QGIS stays responsive, progress and cancel work.

``run()`` (worker thread) only calls the engine with a cloned-provider source and never
raises; ``finished()`` (main thread) adds the styled layers to the project, grouped.
"""

from __future__ import annotations

import traceback

from qgis.core import Qgis, QgsMessageLog, QgsProject, QgsTask
from qgis.PyQt.QtCore import QCoreApplication, pyqtSignal

from .. import LOG_TAG
from ..core.errors import Cancelled, RsGhostError
from ..core.options import face_message
from .results import load_results
from .source import QgisLayerSource


def cancelled_description(raster_name: str) -> str:
    """The task's description once cancelled: what QGIS shows under its own "Task complete" title."""
    return f"Cancelled: RS Ghost stopped classifying {raster_name}; nothing was written"


def withdraw_completion_notice(bar, description: str) -> None:
    """Take QGIS's "Task complete" note of the task ``description`` off the message bar ``bar``.

    QGIS 3.22 announces every task that ran 5 s or more as "Task complete" or "Task failed",
    right after its ``finished()``; it has no word for a cancel. The dialog shows its own
    "Cancelled" note instead.
    """
    title = QCoreApplication.translate("QgisApp", "Task complete")
    for item in bar.items():
        if item.title() == title and item.text() == description:
            bar.popWidget(item)


def _log_warning(text: str) -> None:
    """A radiometry warning in the log as soon as the scaling is chosen (the dialog shows it at the end)."""
    QgsMessageLog.logMessage(face_message(text, "dialog"), LOG_TAG, Qgis.Warning)


class ClassifyTask(QgsTask):
    """Classify one raster source with the engine; add the outputs when done."""

    done = pyqtSignal(object)  # emitted with the task itself once finished() has run

    def __init__(
        self,
        source: QgisLayerSource,
        options,
        model_name: str,
        project: QgsProject | None = None,
        replace: bool = False,
        model=None,
    ) -> None:
        super().__init__(f"RS Ghost: classifying {source.info.name}", QgsTask.CanCancel)
        self.source = source
        self.options = options
        self.model_name = model_name
        self.project = project or QgsProject.instance()
        self.replace = replace  # remove the earlier RS Ghost outputs of the same group when done
        self.model = model  # core.model.runtime.Model of options.model_path when the dialog has it; None loads it
        self.result = None
        self.error = ""
        self.cancelled = False
        self.layers = []

    def run(self) -> bool:
        """Worker thread: run the engine; store the result or the message; never raise."""
        from ..core.classify.pipeline import classify

        try:
            self.result = classify(
                self.source,
                self.options,
                progress=self.setProgress,
                is_canceled=self.isCanceled,
                warn=_log_warning,
                model=self.model,
            )
        except Cancelled as error:
            # QGIS 3.22 announces every task whose run() returns False as "Task failed" (message
            # bar or desktop notification). A cancel the user asked for is no failure: end it as
            # complete, under a description that says what happened.
            self.cancelled, self.error = True, str(error)
            self.setDescription(cancelled_description(self.source.info.name))
            return True
        except RsGhostError as error:
            self.error = face_message(error, "dialog")  # the dialog is the face that runs tasks
            return False
        except Exception:  # a bug: keep QGIS alive, show a short message, log the details
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Critical)
            self.error = "Unexpected error while classifying; the details are in the log (RS Ghost tab)."
            return False
        return True

    def finished(self, result: bool) -> None:
        """Main thread: add the styled, grouped layers and log the summary."""
        if result and self.result is not None:
            self._add_layers()
        elif not self.error:  # cancelled before it started: run() never ran
            self.cancelled, self.error = True, str(Cancelled())
        if self.error:
            QgsMessageLog.logMessage(self.error, LOG_TAG, Qgis.Info if self.cancelled else Qgis.Warning)
        self.done.emit(self)

    def _add_layers(self) -> None:
        stride = self.options.stride or self.result.card.tile_size
        try:
            self.layers = load_results(
                self.result, self.source.info.name, self.model_name, self.project, stride, self.replace
            )
        except RsGhostError as error:
            self.error = str(error)
        else:
            QgsMessageLog.logMessage(self.result.summary_table(), LOG_TAG, Qgis.Info)
