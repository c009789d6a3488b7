"""The dialog's "Adapt to my polygons..." as a QgsTask, like the classification.

Why a task and not the main thread: QGIS 3.22 caches coordinate reference systems for the
whole process, each with a PROJ object that belongs to the thread that built it. When the
main thread used a CRS first built in a task's thread (the model grid's UTM zone, built by an
earlier classify), and that thread then ended, QGIS dropped the CRS's PROJ object but kept
the CRS in its cache for the main thread: every later reprojected read in any other thread
got nothing ("QGIS's reprojection returned no pixels") until QGIS restarted. In a task the
adapt's reprojected reads stay off the main thread, as Processing's adapt always did.
"""

from __future__ import annotations

import traceback

from qgis.core import Qgis, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .. import LOG_TAG
from ..core.errors import Cancelled, RsGhostError
from ..core.options import face_message


class AdaptTask(QgsTask):
    """Adapt a model to labelled polygons in a worker thread; ``done`` is emitted on the main thread."""

    done = pyqtSignal(object)  # the task itself, once finished() has run

    def __init__(self, source, labels, options) -> None:
        super().__init__(f"RS Ghost: adapting the model to {labels.source}", QgsTask.CanCancel)
        self.source = source  # a QgisLayerSource made on the main thread (a cloned provider)
        self.labels = labels  # core.adapt.adapt.Labels, read from the layer on the main thread
        self.options = options  # core.adapt.adapt.AdaptOptions
        self.result = None
        self.error = ""
        self.cancelled = False

    def run(self) -> bool:
        """Worker thread: adapt; keep the result or the message; never raise."""
        from ..core.adapt.adapt import adapt

        try:
            self.result = adapt(self.source, self.labels, self.options, self.setProgress, self.isCanceled)
        except Cancelled as error:
            self.cancelled, self.error = True, str(error)
        except RsGhostError as error:
            self.error = face_message(error, "dialog")
            return False
        except Exception:  # a bug: keep QGIS alive, say where the details are
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Critical)
            self.error = "Unexpected error while adapting; the details are in the log (RS Ghost tab)."
            return False
        return True

    def finished(self, result: bool) -> None:
        """Main thread: tell the dialog."""
        if not result and not self.error:  # cancelled before run() started
            self.cancelled, self.error = True, str(Cancelled())
        self.done.emit(self)
