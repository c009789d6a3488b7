"""The classification as a QgsTask: QGIS stays responsive, progress and cancel work.

``run()`` (worker thread) only calls the engine with a cloned-provider source and never
raises; ``finished()`` (main thread) adds the styled layers to the project, grouped.
"""

from __future__ import annotations

import traceback

from qgis.core import Qgis, QgsMessageLog, QgsProject, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from ..core.errors import Cancelled, RsGhostError
from .results import load_results
from .source import QgisLayerSource

LOG_TAG = "RS Ghost"


class ClassifyTask(QgsTask):
    """Classify one raster source with the engine; add the outputs when done."""

    done = pyqtSignal(object)  # emitted with the task itself once finished() has run

    def __init__(self, source: QgisLayerSource, options, model_name: str, project: QgsProject | None = None) -> None:
        super().__init__(f"RS Ghost: classifying {source.info.name}", QgsTask.CanCancel)
        self.source = source
        self.options = options
        self.model_name = model_name
        self.project = project or QgsProject.instance()
        self.result = None
        self.error = ""
        self.layers = []

    def run(self) -> bool:
        """Worker thread: run the engine; store the result or the message; never raise."""
        from ..core.pipeline import classify

        try:
            self.result = classify(self.source, self.options, progress=self.setProgress, is_canceled=self.isCanceled)
        except Cancelled as error:
            self.error = str(error)
            return False
        except RsGhostError as error:
            self.error = str(error)
            return False
        except Exception:  # a bug: keep QGIS alive, show a short message, log the details
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Critical)
            self.error = "Unexpected error while classifying; the details are in the log (RS Ghost tab)."
            return False
        return True

    def finished(self, result: bool) -> None:
        """Main thread: add the styled, grouped layers and log the summary."""
        if result and self.result is not None:
            try:
                self.layers = load_results(self.result, self.source.info.name, self.model_name, self.project)
            except RsGhostError as error:
                self.error = str(error)
            else:
                QgsMessageLog.logMessage(self.result.summary_table(), LOG_TAG, Qgis.Info)
        elif not self.error:
            self.error = str(Cancelled())
        if self.error:
            QgsMessageLog.logMessage(self.error, LOG_TAG, Qgis.Warning)
        self.done.emit(self)
