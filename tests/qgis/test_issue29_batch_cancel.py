"""Issue 29: cancelling a Processing batch of rsghost:classify leaves no task running.

QGIS 3.22's batch dialog shows its rows as one "Batch Processing - ..." progress task, which
ends when its feedback is freed. An exception raised by a Python algorithm is never freed by
QGIS, and its traceback's frames lead to that feedback: a cancel that raised kept the task at
24 % for good, and QGIS could not quit.
"""

from __future__ import annotations

import numpy as np
from qgis.core import QgsApplication
from qgis.PyQt.QtTest import QTest

from tests.qgis.rasters import two_halves, write_geotiff


def test_cancelled_batch_leaves_no_task(qgis_app, qgis_iface, provider, project, tmp_path, tiny_model):
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog

    raster = write_geotiff(tmp_path / "big.tif", np.tile(two_halves(), (1, 8, 8)))
    rows = [
        {"INPUT": str(raster), "MODEL": str(tiny_model), "OUTPUT_VECTOR": str(tmp_path / f"tiles{i}.gpkg")}
        for i in range(3)
    ]
    dialog = BatchAlgorithmDialog(QgsApplication.processingRegistry().createAlgorithmById("rsghost:classify"))
    table = dialog.mainWidget()
    table.batchRowCount = lambda: len(rows)  # the rows as the batch table would give them
    table.parametersForRow = lambda row, destinationProject=None, warnOnInvalid=True: (rows[row], True)
    make_feedback = dialog.createFeedback

    def feedback_with_a_user():  # who clicks Cancel once the first row is at 24 %
        feedback = make_feedback()
        feedback.progressChanged.connect(lambda value: value >= 24 and dialog.cancelButton().click())
        return feedback

    dialog.createFeedback = feedback_with_a_user
    dialog.runAlgorithm()
    QTest.qWait(1500)  # the task manager hears of a finished task through the event loop
    try:
        assert [task.description() for task in QgsApplication.taskManager().activeTasks()] == []
        assert not any((tmp_path / f"tiles{i}.gpkg").exists() for i in range(3))
    finally:
        dialog.close()
        dialog.deleteLater()
