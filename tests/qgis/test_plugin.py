"""The plugin loads, adds its GUI and provider, and unload() removes every trace."""

import sys

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication, QEvent
from qgis.PyQt.QtWidgets import QAction, QToolBar

import rs_ghost_qgis
from rs_ghost_qgis.plugin import MENU, TOOLBAR_NAME


def _flush_deletes():
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)


def test_import_is_lazy():
    import subprocess

    code = "import sys, rs_ghost_qgis; print([m for m in ('qgis', 'torch', 'onnxruntime') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_load_and_unload(qgis_app, qgis_iface, qgis_processing):
    registry = QgsApplication.processingRegistry()
    main_window = qgis_iface.mainWindow()
    plugin = rs_ghost_qgis.classFactory(qgis_iface)
    plugin.initGui()
    try:
        assert registry.providerById("rsghost") is not None
        ids = {a.id() for a in registry.providerById("rsghost").algorithms()}
        assert ids == {"rsghost:classify", "rsghost:assess", "rsghost:train", "rsghost:adapt"}
        toolbar = main_window.findChild(QToolBar, TOOLBAR_NAME)
        assert toolbar is not None
        assert [a.objectName() for a in toolbar.actions()] == ["rsGhostClassify"]
        added = [call.args for call in qgis_iface.addPluginToRasterMenu.call_args_list]
        assert [(menu, action.objectName()) for menu, action in added] == [
            (MENU, "rsGhostClassify"),
            (MENU, "rsGhostAssess"),
            (MENU, "rsGhostDependencies"),
            (MENU, "rsGhostHelp"),
        ]
        assert not plugin.actions[0].icon().isNull()
    finally:
        plugin.unload()
    _flush_deletes()
    assert registry.providerById("rsghost") is None
    assert main_window.findChild(QToolBar, TOOLBAR_NAME) is None
    removed = [call.args for call in qgis_iface.removePluginRasterMenu.call_args_list]
    assert removed == added
    assert main_window.findChildren(QAction, "rsGhostClassify") == []
    assert plugin.actions == [] and plugin.toolbar is None and plugin.provider is None


def test_init_processing_alone_registers_provider_once(qgis_app, qgis_iface, qgis_processing):
    registry = QgsApplication.processingRegistry()
    plugin = rs_ghost_qgis.classFactory(qgis_iface)
    plugin.initProcessing()
    plugin.initProcessing()
    try:
        assert [p.id() for p in registry.providers()].count("rsghost") == 1
    finally:
        plugin.unload()
    assert registry.providerById("rsghost") is None


def test_button_explains_missing_onnxruntime(qgis_app, qgis_iface, qgis_processing, monkeypatch):
    from rs_ghost_qgis import deps
    from rs_ghost_qgis.ui import deps_dialog

    missing = deps.DependencyStatus(ok=False, problem="onnxruntime is not installed", install_command=["py", "x"])
    monkeypatch.setattr(deps, "check", lambda folder: missing)
    shown = []
    monkeypatch.setattr(deps_dialog, "show_dependency_dialog", lambda iface, status, folder: shown.append(status))
    plugin = rs_ghost_qgis.classFactory(qgis_iface)
    plugin.initGui()  # must not raise although onnxruntime is "missing"
    try:
        assert "cannot run yet" in plugin.actions[0].toolTip()
        plugin.actions[0].trigger()
        assert shown == [missing]
        assert plugin.dialog is None
    finally:
        plugin.unload()


def test_dependency_dialog_shows_problem_command_and_install(qgis_app, qgis_iface, tmp_path):
    from qgis.PyQt.QtCore import QTimer
    from qgis.PyQt.QtWidgets import QApplication

    from rs_ghost_qgis import deps
    from rs_ghost_qgis.ui.deps_dialog import show_dependency_dialog

    command = ["python3", "-m", "pip", "install", "--no-deps", "--target", str(tmp_path), "onnxruntime>=1.14"]
    status = deps.DependencyStatus(ok=False, problem="onnxruntime is not installed", install_command=command)
    seen = {}

    def inspect():
        box = QApplication.activeModalWidget()
        seen.update(text=box.text(), info=box.informativeText(), buttons=[b.text() for b in box.buttons()])
        box.reject()

    QTimer.singleShot(0, inspect)
    show_dependency_dialog(qgis_iface, status, tmp_path)
    assert seen["text"] == "onnxruntime is not installed"
    assert deps.format_command(command) in seen["info"] and str(tmp_path) in seen["info"]
    assert "Install now" in seen["buttons"] and "Copy command" in seen["buttons"]


def test_missing_dependency_tooltip_says_cannot_run_once(qgis_app, qgis_iface, qgis_processing, monkeypatch):
    from rs_ghost_qgis import deps

    # Worded as deps.check() words it: the problem is already a whole sentence.
    problem = "RS Ghost cannot run in this QGIS yet: onnxruntime is not installed; shapely is not installed."
    missing = deps.DependencyStatus(ok=False, problem=problem, install_command=["py", "x"])
    monkeypatch.setattr(deps, "check", lambda folder: missing)
    plugin = rs_ghost_qgis.classFactory(qgis_iface)
    plugin.initGui()
    try:
        tip = plugin.actions[0].toolTip()
    finally:
        plugin.unload()
    assert tip.lower().count("cannot run") == 1, tip
    assert tip == "RS Ghost cannot run yet: onnxruntime is not installed; shapely is not installed. Click for the fix."


def test_metadata_names_every_runtime_requirement():
    from pathlib import Path

    from rs_ghost_qgis import deps

    metadata = (Path(__file__).resolve().parents[2] / "metadata.txt").read_text(encoding="utf-8")
    about = next(line for line in metadata.splitlines() if line.startswith("about="))
    for module in deps.PIP_MODULES:
        assert module in about, f"metadata.txt's about does not say that {module} is needed"
