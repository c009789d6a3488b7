"""'Adapt to my polygons...': a model of the user's own classes from a polygon layer, from the dialog.

It takes the classify dialog's raster, base model, bands, scaling, offset, product level and
stride, asks for a polygon layer, its class field and where to write the model, runs
``core.adapt`` as a QgsTask (``qgis_io.adapt_task`` says why never on the main thread) and
hands the new model back to the classify dialog, whose card then shows the new classes and
their cross-validated accuracy.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication, QgsMapLayerProxyModel, QgsVectorLayer
from qgis.gui import QgsFieldComboBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, QVariant
from qgis.PyQt.QtWidgets import (
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
from .wheel import ignore_wheel_unless_focused

HELP = (
    "Draw polygons around examples of each of your classes on the raster, with the class in a field. "
    "Chips of the model's tile size whose centre lies in a polygon train a new classifier over the model's "
    "features and the mean and spread of every band of the raster (near infrared helps). Takes seconds; "
    "the accuracy is cross-validated with whole polygons held out, so each class needs two polygons or more."
)
# A field with this many distinct values or more is not offered first as the class field.
MAX_DEFAULT_CLASSES = 30


def field_values(layer: QgsVectorLayer, name: str) -> tuple[int, int]:
    """(distinct non-empty values of field ``name``, features that have one)."""
    index = layer.fields().indexOf(name)
    filled = [f[index] for f in layer.getFeatures() if not _empty(f[index])]
    return len({str(value) for value in filled}), len(filled)


def is_identifier(layer: QgsVectorLayer, name: str) -> bool:
    """Whether field ``name`` holds a different value on every polygon (3 or more): an id, not a class."""
    if layer.fields().indexOf(name) in layer.primaryKeyAttributes():
        return True
    distinct, filled = field_values(layer, name)
    return filled >= 3 and distinct == filled


def suggest_class_field(layer: QgsVectorLayer | None) -> str:
    """The field most likely to hold the class: text before numbers, fewest distinct values (2 or more);
    never a field with a different value on every polygon (fid, id). '' when none fits."""
    if not isinstance(layer, QgsVectorLayer):
        return ""
    ranked = []
    for field in layer.fields():
        name = field.name()
        if is_identifier(layer, name):
            continue
        distinct, _filled = field_values(layer, name)
        if 2 <= distinct <= MAX_DEFAULT_CLASSES:
            ranked.append((field.type() != QVariant.String, distinct, name))
    return min(ranked)[2] if ranked else ""


def _empty(value) -> bool:
    return value is None or bool(getattr(value, "isNull", lambda: False)()) or not str(value).strip()


class AdaptDialog(QDialog):
    """Polygon layer, class field and output file; Adapt runs a task and returns the model to ``owner``."""

    def __init__(self, owner) -> None:
        super().__init__(owner)
        self.owner = owner  # the ClassifyDialog: raster, model and value options come from it
        self.result = None
        self.task = None
        self.setWindowTitle("RS Ghost: adapt the model to my polygons")
        layout = QVBoxLayout(self)
        intro = QLabel(HELP)
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.layer_combo = QgsMapLayerComboBox()
        self.layer_combo.setFilters(QgsMapLayerProxyModel.VectorLayer)
        self.field_combo = QgsFieldComboBox()
        self.field_hint = QLabel()
        self.field_hint.setWordWrap(True)
        self.field_hint.setStyleSheet("color:#b35900;")
        self.selected_check = QCheckBox("Selected polygons only")
        self.step_label = QLabel()
        self.step_label.setWordWrap(True)
        self.out_file = QgsFileWidget()
        self.out_file.setStorageMode(QgsFileWidget.SaveFile)
        self.out_file.setFilter("ONNX models (*.onnx)")
        form.addRow("Polygon layer", self.layer_combo)
        form.addRow("Class field", self.field_combo)
        form.addRow("", self.field_hint)
        form.addRow("", self.selected_check)
        form.addRow("Chip step", self.step_label)
        form.addRow("Adapted model", self.out_file)
        layout.addLayout(form)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.message)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        layout.addWidget(self.progress)
        layout.addLayout(self._buttons())
        ignore_wheel_unless_focused(self)
        self.layer_combo.layerChanged.connect(self._layer_changed)
        self.field_combo.fieldChanged.connect(self._update_field_hint)
        self._layer_changed(self.layer_combo.currentLayer())
        self.update_step()
        self.resize(640, 360)

    def _buttons(self) -> QHBoxLayout:
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.adapt_button = QPushButton("Adapt")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.close_button = QPushButton("Close")
        self.adapt_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)
        for button in (self.adapt_button, self.cancel_button, self.close_button):
            buttons.addWidget(button)
        return buttons

    def _layer_changed(self, layer) -> None:
        """A new polygon layer: its likeliest class field (never its id), and what that field holds."""
        self.field_combo.setLayer(layer)
        self.field_combo.setField(suggest_class_field(layer))
        self._update_field_hint()

    def _update_field_hint(self, *_args) -> None:
        layer, name = self.layer_combo.currentLayer(), self.field_combo.currentField()
        text = ""
        if isinstance(layer, QgsVectorLayer) and name and is_identifier(layer, name):
            text = (
                f"'{name}' has a different value on every polygon: it identifies polygons and does not name classes. "
                "Choose the field that holds each polygon's class."
            )
        self.field_hint.setText(text)
        self.field_hint.setVisible(bool(text))

    def update_step(self) -> None:
        """The chip step in the Stride box's words: its value, or a quarter of the tile when it says 'tile size'."""
        card, stride = self.owner.card, self.owner.stride_spin.value()
        if card is None:
            self.step_label.setText("")
            return
        step = stride or max(1, card.tile_size // 4)
        origin = (
            "the Stride of the classify dialog (Advanced)"
            if stride
            else "a quarter of the tile, while the classify dialog's Stride says 'tile size'"
        )
        self.step_label.setText(f"a chip every {step} px = {step * card.gsd_m:g} m on the ground: {origin}")

    def collect(self):
        """(source, labels, options) from this dialog and the classify dialog; raises RsGhostError with the fix."""
        from ..core.adapt.adapt import AdaptOptions
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
        """Start adapting in a task; the end (model, accuracy, or why not) is shown by ``_finished``."""
        from ..qgis_io.adapt_task import AdaptTask

        if self.task is not None:
            return
        self.result = None
        try:
            source, labels, options = self.collect()
        except RsGhostError as error:
            self.show_message(face_message(error, "dialog"), error=True)
            return
        self.task = AdaptTask(source, labels, options)
        self.task.progressChanged.connect(lambda value: self.progress.setValue(int(value)))
        self.task.done.connect(self._finished)
        self.progress.setValue(0)
        self.show_message(f"Adapting to {labels.source}…")
        self._set_running(True)
        QgsApplication.taskManager().addTask(self.task)

    def cancel(self) -> None:
        """Stop a running adapt; no model is written."""
        if self.task is not None:
            self.show_message("Cancelling…")
            self.task.cancel()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        """Closing the window stops a running adapt."""
        self.cancel()
        super().closeEvent(event)

    def _set_running(self, running: bool) -> None:
        self.adapt_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def _finished(self, task) -> None:
        self.task = None
        self._set_running(False)
        if task.result is None:
            self.progress.setValue(0)  # a refusal or a cancel: no bar left standing at 90 %
            self.show_message(task.error, error=not task.cancelled)
            return
        self.result = task.result
        self.progress.setValue(100)
        self.owner.use_model_file(self.result.out_path)
        note = self.result.unmeasured_note()  # one rule with the other faces: core/adapt/adapt.py
        notes = [face_message(w, "dialog") for w in self.result.warnings] + ([note] if note else [])
        warnings = "".join(f"<br>warning: {text}" for text in notes)
        self.show_message(
            f"Wrote {Path(self.result.out_path).name} in {self.result.seconds:.1f} s; it is now the model of the "
            f"classify dialog.<pre>{self.result.summary()}</pre>{warnings}"
        )

    def show_message(self, text: str, error: bool = False) -> None:
        """A result or an error (in red) above the buttons."""
        colour = "#b00020" if error else "#000000"
        self.message.setText(f'<span style="color:{colour};">{text}</span>')
