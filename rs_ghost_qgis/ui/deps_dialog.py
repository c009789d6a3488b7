"""The dependency message box: what is missing, the exact command, and an install on consent."""

from __future__ import annotations

from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsTask
from qgis.PyQt.QtWidgets import QApplication, QMessageBox

from .. import LOG_TAG, deps


class InstallTask(QgsTask):
    """Runs pip in the background so QGIS stays responsive; reports in the message bar."""

    def __init__(self, iface, status: deps.DependencyStatus, folder: Path) -> None:
        super().__init__("RS Ghost: installing packages", QgsTask.CanCancel)
        self.iface = iface
        self.status = status
        self.folder = folder
        self.output = ""
        self.error = ""

    def run(self) -> bool:
        """Run pip; never raises."""
        try:
            self.output = deps.install(self.status, self.folder)
        except deps.DependencyError as error:
            self.error = str(error)
            return False
        return True

    def finished(self, result: bool) -> None:
        """Tell the user how it went (main thread)."""
        if result:
            QgsMessageLog.logMessage(self.output, LOG_TAG, Qgis.Info)
            self.iface.messageBar().pushMessage(
                "RS Ghost", "Packages installed. Restart QGIS to use them.", Qgis.Success, 0
            )
        else:
            QgsMessageLog.logMessage(self.error, LOG_TAG, Qgis.Critical)
            self.iface.messageBar().pushMessage(
                "RS Ghost", "Installing the packages failed; see the log (RS Ghost tab).", Qgis.Critical, 0
            )


def show_dependency_dialog(iface, status: deps.DependencyStatus, folder: Path) -> None:
    """Explain the dependency status; offer to install when something is missing."""
    box = QMessageBox(iface.mainWindow())
    box.setWindowTitle("RS Ghost: dependencies")
    if status.ok:
        box.setIcon(QMessageBox.Information)
        box.setText(status.message())
        box.exec_()
        return
    box.setIcon(QMessageBox.Warning)
    box.setText(status.problem)
    steps = []
    if status.install_command:
        steps.append(
            "RS Ghost can install the missing packages alone into its own folder, without touching numpy "
            f"or QGIS:\n{folder}\n\nOr run this command yourself, then restart QGIS:\n\n"
            f"{deps.format_command(status.install_command)}"
        )
    box.setInformativeText("\n\n".join(steps))
    install = copy = None
    if status.install_command:
        install = box.addButton("Install now", QMessageBox.AcceptRole)
        copy = box.addButton("Copy command", QMessageBox.ActionRole)
    box.addButton(QMessageBox.Close)
    box.exec_()
    if copy is not None and box.clickedButton() is copy:
        QApplication.clipboard().setText(deps.format_command(status.install_command))
    elif install is not None and box.clickedButton() is install:
        task = InstallTask(iface, status, folder)
        QgsApplication.taskManager().addTask(task)
        # Keep a reference: the task manager does not own the Python wrapper.
        show_dependency_dialog.task = task
