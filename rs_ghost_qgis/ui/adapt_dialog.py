"""'Adapt to my polygons...': a model of the user's own classes from a polygon layer, from the dialog.

It takes the classify dialog's raster, base model, bands, scaling, offset and product level,
asks for a polygon layer, its class field and where to write the model, runs ``core.adapt``
(seconds: on the main thread, with a progress bar) and hands the new model back to the
classify dialog, whose card then shows the new classes and their cross-validated accuracy.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsMapLayerProxyModel
from qgis.gui import QgsFieldComboBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QApplication,
    QCheckBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from ..core.errors import RsGhostError
from ..core.options import OptionError, face_message, parse_bands, parse_offset, parse_stride
from ..qgis_io.source import QgisLayerSource, check_raster_layer

HELP = (
    "Draw polygons around examples of each of your classes on the raster, with the class in a field. "
    "Chips of the model's tile size whose centre lies in a polygon train a new classifier over the model's "
    "features and the mean and spread of every band of the raster (near infrared helps). Takes seconds; "
    "the accuracy is cross-validated with whole polygons held out."
)


class AdaptDialog(QDialog):
    """Polygon layer, class field and output file; Adapt runs and returns the model to ``owner``."""

    def __init__(self, owner) -> None:
        super().__init__(owner)
        self.owner = owner  # the ClassifyDialog: raster, model and value options come from it
        self.result = None
        self.setWindowTitle("RS Ghost: adapt the model to my polygons")
        layout = QVBoxLayout(self)
        intro = QLabel(HELP)
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.layer_combo = QgsMapLayerComboBox()
        self.layer_combo.setFilters(QgsMapLayerProxyModel.VectorLayer)
        self.field_combo = QgsFieldComboBox()
        self.layer_combo.layerChanged.connect(self.field_combo.setLayer)
        self.field_combo.setLayer(self.layer_combo.currentLayer())
        self.selected_check = QCheckBox("Selected polygons only")
        self.out_file = QgsFileWidget()
        self.out_file.setStorageMode(QgsFileWidget.SaveFile)
        self.out_file.setFilter("ONNX models (*.onnx)")
        form.addRow("Polygon layer", self.layer_combo)
        form.addRow("Class field", self.field_combo)
        form.addRow("", self.selected_check)
        form.addRow("Adapted model", self.out_file)
        layout.addLayout(form)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.message)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        layout.addWidget(self.progress)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.adapt_button = QPushButton("Adapt")
        self.close_button = QPushButton("Close")
        self.adapt_button.clicked.connect(self.run)
        self.close_button.clicked.connect(self.close)
        buttons.addWidget(self.adapt_button)
        buttons.addWidget(self.close_button)
        layout.addLayout(buttons)
        self.resize(620, 320)

    def collect(self):
        """(source, labels, options) from this dialog and the classify dialog; raises RsGhostError with the fix."""
        from ..core.adapt import AdaptOptions
        from ..qgis_io.labels import labels_from_layer

        owner = self.owner
        raster = check_raster_layer(owner.layer_combo.currentLayer())
        field = self.field_combo.currentField()
        if not field:
            raise OptionError("class_field", "Choose the field that holds each polygon's class ({class_field}).")
        out = self.out_file.filePath().strip()
        if not out:
            raise OptionError("polygons", "Choose a file for the adapted model (.onnx).")
        out = out if out.lower().endswith(".onnx") else out + ".onnx"
        labels = labels_from_layer(self.layer_combo.currentLayer(), field, self.selected_check.isChecked())
        options = AdaptOptions(
            out_path=out,
            model_path=owner.model_path() or None,
            stride=parse_stride(owner.stride_spin.value()),
            bands=parse_bands(owner.bands_edit.text()),
            scaling=owner.scaling_combo.currentData(),
            offset=parse_offset(owner.offset_edit.text()),
            product=owner.product_combo.currentData(),
            threads=owner.threads_spin.value() or None,
            overwrite=True,  # the file dialog asked before replacing
        )
        return QgisLayerSource.from_layer(raster), labels, options

    def run(self) -> None:
        """Adapt; on success hand the model to the classify dialog and show the held-out accuracy."""
        from ..core.adapt import adapt

        self.adapt_button.setEnabled(False)
        QApplication.setOverrideCursor(Qt.WaitCursor)
        try:
            source, labels, options = self.collect()
            self.result = adapt(source, labels, options, self._progress)
        except RsGhostError as error:
            self.show_message(face_message(error, "dialog"), error=True)
            return
        finally:
            QApplication.restoreOverrideCursor()
            self.adapt_button.setEnabled(True)
        self.owner.use_model_file(self.result.out_path)
        warnings = "".join(f"<br>warning: {face_message(w, 'dialog')}" for w in self.result.warnings)
        self.show_message(
            f"Wrote {Path(self.result.out_path).name} in {self.result.seconds:.1f} s; it is now the model of the "
            f"classify dialog.<pre>{self.result.summary()}</pre>{warnings}"
        )

    def _progress(self, percent: float) -> None:
        self.progress.setValue(int(percent))
        QApplication.processEvents()

    def show_message(self, text: str, error: bool = False) -> None:
        """A result or an error (in red) above the buttons."""
        colour = "#b00020" if error else "#000000"
        self.message.setText(f'<span style="color:{colour};">{text}</span>')
