"""Helpers for the QGIS tests: run a task to its end with the event loop turning."""

from __future__ import annotations

import gc

import pytest
from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QEventLoop, QTimer


def run_task(task, timeout_s: float = 60.0, on_start=None):
    """Add ``task`` to the task manager and wait until its ``done`` signal (finished() ran)."""
    loop = QEventLoop()
    finished = []
    task.done.connect(lambda t: (finished.append(t), loop.quit()))
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    QgsApplication.taskManager().addTask(task)
    if on_start is not None:
        on_start(task)
    if not finished:
        loop.exec_()
    assert finished, f"task did not finish within {timeout_s} s"
    return task


@pytest.fixture()
def project(qgis_new_project):
    """A clean project; its layers are removed after the test (no layer outlives the app)."""
    yield qgis_new_project
    qgis_new_project.removeAllMapLayers()
    qgis_new_project.layerTreeRoot().removeAllChildren()


@pytest.fixture()
def provider(qgis_processing):
    """This plugin's Processing provider, registered for one test."""
    from rs_ghost_qgis.processing.provider import RsGhostProvider

    registry = QgsApplication.processingRegistry()
    provider = RsGhostProvider()
    registry.addProvider(provider)
    yield provider
    # A failed run's exception (pytest keeps it) holds frames with the algorithm and its context:
    # freed after the provider, at exit, they freed QGIS objects twice (a crash after the last test).
    gc.collect()
    registry.removeProvider(provider)
