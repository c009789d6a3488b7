"""The classification dialog: choose raster, model, area and outputs; run with progress and Cancel.

Built in code (no generated files). Everything the user can get wrong is checked in
``collect()``, which raises RsGhostError with a message shown in the dialog; the run itself
is a ClassifyTask, whose errors arrive the same way.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRasterLayer,
    QgsSettings,
)
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import QByteArray, Qt, QTimer
from qgis.PyQt.QtGui import QColor, QIcon, QPixmap
from qgis.PyQt.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.classify import workload
from ..core.classify.evidence import RULE_SUMMARY
from ..core.errors import InputError, ModelError, RsGhostError
from ..core.options import (
    PRODUCTS,
    SCALINGS,
    check_area,
    check_outputs,
    face_message,
    parse_bands,
    parse_offset,
    parse_stride,
)
from ..paths import icon_path, open_help
from ..qgis_io import options as qopts
from ..qgis_io.source import QgisLayerSource, check_raster_layer
from .wheel import ignore_wheel_unless_focused

SETTINGS_PREFIX = "rs_ghost_qgis/dialog/"
# The first opening: wide enough for the model's class table, short enough for a 1366 x 768
# laptop screen (title bar and task bar take some 80 px) with the essentials and Run in view.
DEFAULT_SIZE = (700, 680)
AREAS = [
    ("whole", "Whole layer"),
    ("canvas", "Current map extent"),
    ("mask_all", "All polygons of a mask layer"),
    ("mask_selected", "Selected polygons of a mask layer"),
]
# The dialog's words for core.options.SCALINGS (one label per scaling, in that order).
SCALING_LABELS = {
    "auto": "Automatic (8-bit as is, reflectance by the card, else one range)",
    "none": "None (values already 0–255)",
    "card": "Model card mapping (reflectance × 10,000 or 0–1)",
    "percentile": "Percentile stretch 2–98 %, one range for all bands",
    "percentile-per-band": "Percentile stretch 2–98 % per band (changes colours)",
}
# The dialog's words for core.options.PRODUCTS.
PRODUCT_LABELS = {
    "auto": "Automatic (from the metadata, else the values)",
    "l1c": "Sentinel-2 L1C (top of atmosphere)",
    "l2a": "Sentinel-2 L2A (surface reflectance)",
}


# The engine's scaling note in the dialog's plain words: no GDAL command, no option keys, no "..".
SCALING_WORDS = [
    (re.compile(r" \(gdal_translate [^)]*\)"), ""),
    (re.compile(r"Scaling [\w-]+ as chosen"), "as chosen under Scaling"),
    (re.compile(r" \(card\)"), ", as the model card says"),
    (re.compile(r"(?<=\d)\.\.(?=-?\d)"), "–"),
    (re.compile(r" -> "), " → "),
    (re.compile(r"x 10,000"), "× 10,000"),
]


def dialog_words(message: RsGhostError | str) -> str:
    """An engine error, warning or note as the dialog says it: its own field names."""
    return face_message(message, "dialog")


def scaling_words(note: str) -> str:
    """The engine's scaling note as the dialog says it, e.g. 'reflectance × 10,000 detected: linear, 0–2750 → 1–255
    for all bands, clipped, as the model card says'."""
    text = dialog_words(note)
    for pattern, words in SCALING_WORDS:
        text = pattern.sub(words, text)
    return text


def _where(provider: str) -> str:
    """Where the model ran, in words: 'CPUExecutionProvider' -> 'on the CPU'."""
    name = provider.removesuffix("ExecutionProvider")
    if name == "CPU":
        return "on the CPU"
    return f"on the GPU ({name})" if name in ("CUDA", "TensorRT") else f"with {name}"


@dataclass
class Request:
    """Everything one run needs, checked."""

    layer: object
    options: object  # core.classify.pipeline.ClassifyOptions
    model_name: str
    model: object  # core.model.runtime.Model of options.model_path, loaded for the card and reused by the run


def _modified(path: str | None) -> int | None:
    """When the model file (None: the bundled one) last changed; None when there is none."""
    from ..core.model.runtime import default_model_path

    try:
        return Path(path or default_model_path()).stat().st_mtime_ns
    except (OSError, RsGhostError):
        return None


# The card's accuracy figures in the panel's words; other keys are named after themselves.
METRIC_WORDS = {
    "val_top1": "{} of the images classified right",
    "val_macro_f1": "{} on average over the classes (F1)",
    "robust_val_top1_min": "{} at worst with the brightness, haze or colours shifted",
    "cv_accuracy": "{} of the chips classified right",
    "cv_balanced_accuracy": "{} on average over the classes",
}


def card_summary_html(card, columns: int = 3) -> str:
    """Classes with colour swatches, tile footprint, GSD and accuracy in plain words, for the dialog.

    The trainer's notes (``training.status``) speak the trainer's language: they go in the
    panel's tooltip (``card_notes``), and the panel says only whether the model is interim.
    """
    cells = [
        f'<td><span style="background:{color};">&nbsp;&nbsp;&nbsp;&nbsp;</span>&nbsp;{name}&nbsp;&nbsp;</td>'
        for name, color in zip(card.class_names, card.class_colors)
    ]
    rows = "".join("<tr>" + "".join(cells[i : i + columns]) + "</tr>" for i in range(0, len(cells), columns))
    facts = [
        f"<b>{card.architecture}</b>, {card.num_classes} classes, bands {', '.join(card.bands)}",
        f"<b>What it does:</b> {html.escape(card_purpose(card))}",
        f"tile {card.tile_size} px × {card.gsd_m:g} m = {card.tile_size_m:g} m on the ground (GSD {card.gsd_m:g} m)",
    ]
    accuracy = _accuracy(card.metrics)
    if accuracy:
        basis = card.evaluated_on()
        facts.append(f"accuracy, measured on the {basis}: {accuracy}" if basis else f"accuracy: {accuracy}")
    facts.append(_status_html(card))
    if card.known_limits:
        limits = "".join(f"<li>{html.escape(limit)}</li>" for limit in card.known_limits)
        facts.append(f"<b>Known limits</b>, measured:<ul style='margin:0;'>{limits}</ul>")
    facts.append(f"Water needs water pixels: {RULE_SUMMARY} (switch: Advanced).")
    return "<br>".join(facts) + f"<table>{rows}</table>"


def card_purpose(card) -> str:
    """What the model is for and how it learnt, in plain words, from its card (never claims a teacher
    the card does not name: 'distilled' only when the card's distillation is KD or DKD)."""
    data = card.training.get("data") or {}
    source = data.get("source", "") if isinstance(data, dict) else str(data)
    purpose = (
        f"puts each {card.tile_size_m:g} m square of the raster into one of the {card.num_classes} classes below"
        + (f", as it learnt from the labelled images of {source}" if source else "")
        + "."
    )
    if card.training.get("polygons"):  # an adapted model: its classes are the user's
        return purpose + f" Adapted to the polygons of {card.training['polygons']}."
    return purpose + " " + _how_it_learnt(card)


def _how_it_learnt(card) -> str:
    distill = card.training.get("distillation") or {}
    method = str(distill.get("method", "none") if isinstance(distill, dict) else distill).lower()
    if method in ("kd", "dkd"):
        teacher = (card.training.get("teacher") or {}).get("architecture", "a larger model")
        size = card.teacher_size_text()
        return f"It learnt partly from {teacher}, a larger model (distilled, {method.upper()})" + (
            f": {size}." if size else "."
        )
    return "It learnt from the labels alone (no larger model taught it)."


def card_notes(card) -> str:
    """The panel's tooltip in plain words: how the model was made and how sure its figures are; the
    trainer's own notes follow, marked as such."""
    lines = [card_purpose(card)]
    epochs = card.training.get("epochs")
    if epochs:
        lines.append(f"It went over its training images {epochs} times.")
    basis = card.evaluated_on()
    if basis:
        lines.append(f"Its accuracy was measured on the {basis}, images it did not learn from.")
    if card.interim:
        lines.append("It is an interim model: a better one is expected.")
    if card.status:
        lines.append(f"\nThe trainer's own notes (technical):\n{card.status}")
    return "\n".join(lines)


def _status_html(card) -> str:
    """Whether the model is interim (in the warning colour, so its accuracy is read with care)."""
    if not card.status:
        return "status: not stated in the model card"
    if card.interim:
        return (
            '<span style="color:#b35900;"><b>Interim model.</b> Its accuracy is not final; '
            "the trainer's notes are in the tooltip.</span>"
        )
    return "The trainer's notes on this model are in the tooltip."


def _accuracy(metrics: dict) -> str:
    """The card's accuracy figures in words ('' when it has none)."""
    found = []
    for key, value in metrics.items():
        name = key.lower()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if any(word in name for word in ("acc", "top1", "f1", "kappa")):
            shown = f"{value:.1%}" if 0 <= value <= 1 and "kappa" not in name else f"{value:.3g}"
            found.append(METRIC_WORDS.get(name, f"{_metric_label(name)} {{}}").format(shown))
    return ", ".join(found)


def _metric_label(name: str) -> str:
    """A figure the panel has no words for, named after its key: 'test_top1' -> 'test top-1 accuracy'."""
    label = name.replace("val_", "validation ").replace("top1", "top-1 accuracy").replace("f1", "F1")
    return label.replace("_", " ")


def canvas_error(error: InputError, raster_name: str) -> InputError:
    """An area refused when it came from the map view: the user typed no coordinates, so the fix is
    to move the map (a world view in EPSG:4326 reaches past the poles), not to check coordinates."""
    if "The bounding box" not in str(error):  # refused for another reason (a web layer's size): as it is
        return error
    reason = str(error).split(";")[0].replace("The bounding box", "The current map extent")
    return InputError(
        f"{reason}. Zoom or pan the map onto {raster_name} (right-click the layer > Zoom to Layer), "
        "or choose Area: Whole layer."
    )


class ClassifyDialog(QDialog):
    """Non-modal dialog; one run at a time."""

    def __init__(self, iface, parent=None) -> None:
        super().__init__(parent)
        self.iface = iface
        self.task = None
        self.card = None
        self._model = None  # core.model.runtime.Model: loaded once, for the card and the run
        self._model_key: tuple = ()
        self.adapt_dialog = None  # "Adapt to my polygons...", while open
        # Bands, Scaling, Offset, Product level and Stride belong to one raster: kept per layer id
        # for this session only, so the next raster (and the next QGIS session) starts from
        # Automatic and the tile size.
        self._per_layer: dict[str, tuple[str, str, str, str, int]] = {}
        self._layer_id = ""
        self.setWindowTitle("RS Ghost: classify raster tiles")
        self.setWindowIcon(QIcon(str(icon_path())))
        self._build()
        ignore_wheel_unless_focused(self)
        self._restore()
        self._model_changed()
        self._restore_geometry()

    # --- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        # The settings scroll when the window is short (a laptop screen, a docked panel) instead
        # of squeezing their wrapped hints; progress, results and buttons always stay in view.
        settings = QWidget()
        layout = QVBoxLayout(settings)
        layout.setContentsMargins(0, 0, 0, 0)
        form = QFormLayout()
        self.layer_combo = QgsMapLayerComboBox()
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        form.addRow("Raster layer", self.layer_combo)
        layout.addLayout(form)

        model_box = QGroupBox("Model")
        model_layout = QVBoxLayout(model_box)
        row = QHBoxLayout()
        self.bundled_radio = QRadioButton("Bundled model")
        self.file_radio = QRadioButton("ONNX file")
        group = QButtonGroup(self)
        group.addButton(self.bundled_radio)
        group.addButton(self.file_radio)
        self.model_file = QgsFileWidget()
        self.model_file.setFilter("ONNX models (*.onnx)")
        row.addWidget(self.bundled_radio)
        row.addWidget(self.file_radio)
        row.addWidget(self.model_file, 1)
        model_layout.addLayout(row)
        self.model_info = QLabel()
        self.model_info.setTextFormat(Qt.RichText)
        self.model_info.setWordWrap(True)
        model_layout.addWidget(self.model_info)
        self.adapt_button = QPushButton("Adapt to my polygons...")
        self.adapt_button.setToolTip(
            "A model of your own classes in seconds: labelled polygons on this raster train a new classifier "
            "over this model's features and every band of the raster."
        )
        self.adapt_button.clicked.connect(self.open_adapt)
        adapt_row = QHBoxLayout()
        adapt_row.addWidget(self.adapt_button)
        adapt_row.addStretch(1)
        model_layout.addLayout(adapt_row)
        self.bundled_radio.toggled.connect(self._model_changed)
        self.model_file.fileChanged.connect(self._model_changed)

        area_box = QGroupBox("Area and tiling")
        area_form = QFormLayout(area_box)
        self.area_combo = QComboBox()
        for key, label in AREAS:
            self.area_combo.addItem(label, key)
        self.mask_combo = QgsMapLayerComboBox()
        self.mask_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        # Empty while the area is not a mask: a disabled box must not show a layer (such as the
        # last run's tiles, which QGIS would otherwise pick as the first polygon layer).
        self.mask_combo.setAllowEmptyLayer(True)
        self.area_combo.currentIndexChanged.connect(self._area_changed)
        area_form.addRow("Area", self.area_combo)
        area_form.addRow("Mask layer", self.mask_combo)
        layout.addWidget(area_box)

        input_box = QGroupBox("Input values")
        input_form = QFormLayout(input_box)
        self.bands_edit = QLineEdit()
        self.bands_edit.setToolTip("Raster band per model channel, e.g. 3,2,1. Empty: automatic.")
        self.bands_hint = QLabel()
        self.bands_hint.setWordWrap(True)
        input_form.addRow("Bands", self.bands_edit)
        input_form.addRow("", self.bands_hint)
        # Outside the collapsed group: a scaling that does not fit must be seen.
        self.scaling_warning = QLabel()
        self.scaling_warning.setWordWrap(True)
        self.scaling_warning.setStyleSheet("color:#b00020;")
        self.scaling_warning.setVisible(False)
        input_form.addRow("", self.scaling_warning)
        layout.addWidget(input_box)

        layout.addWidget(self._build_outputs())
        # The model's card (classes, accuracy, status) is long: below what every run needs to set,
        # so that Area, Bands, Outputs and Folder fit a laptop screen without scrolling.
        layout.addWidget(model_box)
        layout.addWidget(self._build_advanced())
        layout.addStretch(1)  # extra height goes here, not between the groups
        self._build_bottom(settings)

    def _build_advanced(self) -> QgsCollapsibleGroupBox:
        """Stride, Scaling, Offset, Product level, Threads, the water rule and doubt: collapsed at first, then as
        the user left it."""
        advanced = QgsCollapsibleGroupBox("Advanced: stride, scaling, offset, product level, threads, water rule")
        advanced.setObjectName("advanced")  # the key its collapsed state is saved under
        advanced.setSettingGroup(SETTINGS_PREFIX.rstrip("/"))
        advanced.setSaveCollapsedState(True)
        advanced.setCollapsed(True)
        self.advanced_box = advanced
        advanced_form = QFormLayout(advanced)
        self.stride_spin = QSpinBox()
        self.stride_spin.setRange(0, 4096)
        self.stride_spin.setSpecialValueText("tile size (no overlap)")
        self.stride_spin.setSuffix(" px")
        self.stride_spin.setToolTip(
            "Step between tiles in model pixels. Smaller than the tile size gives overlapping tiles, "
            "a finer and smoother map, and more work."
        )
        self.stride_metres = QLabel()  # the stride on the ground: model pixels mean little to a map reader
        stride_row = QHBoxLayout()
        stride_row.setContentsMargins(0, 0, 0, 0)
        stride_row.addWidget(self.stride_spin)
        stride_row.addWidget(self.stride_metres, 1)
        self.stride_spin.valueChanged.connect(self._update_stride_metres)
        advanced_form.addRow("Stride", stride_row)
        self.scaling_combo = QComboBox()
        for key in SCALINGS:
            self.scaling_combo.addItem(SCALING_LABELS[key], key)
        advanced_form.addRow("Scaling", self.scaling_combo)
        self.offset_edit = QLineEdit()
        self.offset_edit.setPlaceholderText("from the raster's metadata (else 0)")
        self.offset_edit.setToolTip(
            "Raw value removed before the model card's mapping: 1000 for Sentinel-2 products of processing "
            "baseline 04.00 and later. Empty: BOA_ADD_OFFSET / RADIO_ADD_OFFSET in the metadata decide."
        )
        advanced_form.addRow("Offset", self.offset_edit)
        self.product_combo = QComboBox()
        for key in PRODUCTS:
            self.product_combo.addItem(PRODUCT_LABELS[key], key)
        self.product_combo.setToolTip(
            "L2A lacks the haze of the L1C images the model learned from; the model maps it with its own L2A "
            "curves. Automatic reads the product level from the metadata or file name, else from the darkest "
            "blue values."
        )
        advanced_form.addRow("Product level", self.product_combo)
        self.scaling_hint = QLabel()
        self.scaling_hint.setWordWrap(True)
        advanced_form.addRow("", self.scaling_hint)
        self.threads_spin = QSpinBox()
        self.threads_spin.setRange(0, 256)
        self.threads_spin.setSpecialValueText("all cores")
        advanced_form.addRow("Threads", self.threads_spin)
        self._build_evidence(advanced_form)
        return advanced

    def _build_evidence(self, form: QFormLayout) -> None:
        """The water rule's switch and band, and the confidence below which tiles are doubtful."""
        self.water_rule_check = QCheckBox("Water needs water pixels (near infrared)")
        self.water_rule_check.setChecked(True)
        self.water_rule_check.setToolTip(f"On top of the network, {RULE_SUMMARY}. Off: the network's classes alone.")
        form.addRow("", self.water_rule_check)
        self.nir_spin = QSpinBox()
        self.nir_spin.setRange(0, 4096)
        self.nir_spin.setSpecialValueText("automatic")
        self.nir_spin.setToolTip(
            "The raster band holding near infrared, e.g. 4 for Sentinel-2 B8 after B4, B3, B2. Automatic: the band "
            "whose description or wavelength says so."
        )
        form.addRow("NIR band", self.nir_spin)
        self.doubt_spin = QSpinBox()
        self.doubt_spin.setRange(0, 100)
        self.doubt_spin.setSuffix(" %")
        self.doubt_spin.setSpecialValueText("model card's")
        self.doubt_spin.setToolTip(
            "Tiles whose class is less likely than this are hatched as doubtful. Model card's: its threshold, "
            "else 50 %."
        )
        form.addRow("Doubtful below", self.doubt_spin)

    def _build_outputs(self) -> QGroupBox:
        output_box = QGroupBox("Outputs")
        output_form = QFormLayout(output_box)
        kinds = QHBoxLayout()
        kinds.setContentsMargins(0, 0, 0, 0)
        self.polygons_check = QCheckBox("Polygon layer (class, confidence)")
        self.raster_check = QCheckBox("Class raster")
        kinds.addWidget(self.polygons_check)
        kinds.addWidget(self.raster_check)
        holder = QWidget()
        holder.setLayout(kinds)
        output_form.addRow("Write", holder)
        self.folder_widget = QgsFileWidget()
        self.folder_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.folder_widget.lineEdit().setPlaceholderText("[temporary files]")
        output_form.addRow("Folder", self.folder_widget)
        self.replace_check = QCheckBox("Replace the previous run's layers (same raster and model)")
        self.replace_check.setToolTip(
            "On: a new run removes the earlier RS Ghost layers of its group from the project (their files "
            "stay on disk). Off: the new layers go on top, next to the earlier ones, for comparison."
        )
        output_form.addRow("", self.replace_check)
        return output_box

    def _build_bottom(self, settings: QWidget) -> None:
        """The scrolling settings, then message, progress, area table and buttons, always in view."""
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setWidget(settings)
        # Only vertical scrolling: the window is as wide as the settings need.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(settings.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)

        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.message)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        layout.addWidget(self.progress)
        self.summary = QTableWidget(0, 4)
        self.summary.verticalHeader().setVisible(False)
        # The table takes its height from the settings above (they scroll), never from the window:
        # a finished run must not resize the dialog or move Run.
        self.summary.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Maximum)
        self.summary.setMinimumHeight(0)
        self.summary.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.summary.setVisible(False)
        layout.addWidget(self.summary)

        buttons = QHBoxLayout()
        self.help_button = QPushButton("Help")
        self.help_button.setToolTip("The user guide, shipped with the plugin (opens in your browser, offline)")
        self.help_button.clicked.connect(open_help)
        buttons.addWidget(self.help_button)
        buttons.addStretch(1)
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.close_button = QPushButton("Close")
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)
        for button in (self.run_button, self.cancel_button, self.close_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)
        # Connected last: these update widgets built above.
        self.layer_combo.layerChanged.connect(self._layer_changed)
        self.scaling_combo.currentIndexChanged.connect(self._update_scaling_warning)
        self.product_combo.currentIndexChanged.connect(self._update_scaling_warning)
        self.bands_edit.editingFinished.connect(self._update_scaling_warning)
        self.offset_edit.editingFinished.connect(self._update_scaling_warning)

    # --- settings -----------------------------------------------------------------------------
    def _restore(self) -> None:
        settings = QgsSettings()
        get = lambda key, default: settings.value(SETTINGS_PREFIX + key, default)  # noqa: E731
        has_bundled = qopts.bundled_model_or_none() is not None
        use_file = get("model_mode", "bundled") == "file" or not has_bundled
        self.file_radio.setChecked(use_file)
        self.bundled_radio.setChecked(not use_file)
        self.model_file.setFilePath(get("model_path", ""))
        self.area_combo.setCurrentIndex(max(0, self.area_combo.findData(get("area", "whole"))))
        self.threads_spin.setValue(int(get("threads", 0)))
        self.polygons_check.setChecked(str(get("polygons", "true")).lower() == "true")
        self.raster_check.setChecked(str(get("raster", "true")).lower() == "true")
        self.folder_widget.setFilePath(get("folder", ""))
        self.replace_check.setChecked(str(get("replace", "false")).lower() == "true")
        self._layer_id = self._current_layer_id()
        self._area_changed()

    def _restore_geometry(self) -> None:
        """The size and place the dialog had last time; DEFAULT_SIZE the first time."""
        saved = QgsSettings().value(SETTINGS_PREFIX + "geometry", None)
        if not (isinstance(saved, QByteArray) and self.restoreGeometry(saved)):
            self.resize(*DEFAULT_SIZE)

    def hideEvent(self, event) -> None:  # noqa: N802 (Qt API)
        """Remember the geometry whenever the dialog is closed or hidden."""
        QgsSettings().setValue(SETTINGS_PREFIX + "geometry", self.saveGeometry())
        self.advanced_box.saveState()
        super().hideEvent(event)

    def save_settings(self) -> None:
        """Remember the choices for the next time (QgsSettings, plugin prefix)."""
        settings = QgsSettings()
        values = {
            "model_mode": "file" if self.file_radio.isChecked() else "bundled",
            "model_path": self.model_file.filePath(),
            "area": self.area_combo.currentData(),
            "threads": self.threads_spin.value(),
            "polygons": str(self.polygons_check.isChecked()).lower(),
            "raster": str(self.raster_check.isChecked()).lower(),
            "folder": self.folder_widget.filePath(),
            "replace": str(self.replace_check.isChecked()).lower(),
        }
        for key, value in values.items():
            settings.setValue(SETTINGS_PREFIX + key, value)
        for key in ("scaling", "stride"):  # older versions remembered them across rasters
            settings.remove(SETTINGS_PREFIX + key)

    # --- reactions ----------------------------------------------------------------------------
    def select_layer(self, layer) -> None:
        """Preselect ``layer`` when it is a raster layer (the current layer in QGIS)."""
        if isinstance(layer, QgsRasterLayer):
            self.layer_combo.setLayer(layer)
        self._update_bands_hint()
        self._update_scaling_warning()

    def model_path(self) -> str | None:
        """The chosen model file, or None for the bundled model."""
        if not self.file_radio.isChecked():
            return None
        return self.model_file.filePath() or ""

    def open_adapt(self) -> None:
        """The 'Adapt to my polygons...' dialog, over this one (it uses this dialog's raster and model)."""
        from .adapt_dialog import AdaptDialog

        if self.adapt_dialog is None:  # one, kept: a running adapt stays in view and can be cancelled
            self.adapt_dialog = AdaptDialog(self)
        self.adapt_dialog.update_step()
        self.adapt_dialog.show()
        self.adapt_dialog.raise_()

    def use_model_file(self, path: str) -> None:
        """Make ``path`` the chosen model (an adapted one): its card, classes and accuracy show below."""
        self.file_radio.setChecked(True)
        self.model_file.setFilePath(str(path))
        self._model_changed()

    def load_model(self, path: str | None):
        """The model of ``path`` (None: bundled) for the chosen Threads; raises ModelError with the fix.

        Loaded once for the card and reused by the run; loaded again only when the file or
        Threads changed since.
        """
        from ..core.model.runtime import load_model

        threads = self.threads_spin.value() or None
        key = (path, _modified(path), threads)
        if self._model is None or key != self._model_key:
            self._model = None
            self._model = load_model(path or None, threads)
            self._model_key = key
        return self._model

    def _model_changed(self, *_args) -> None:
        self.model_file.setEnabled(self.file_radio.isChecked())
        path = self.model_path()
        if path == "":
            self.card = None
            self.model_info.setText("Choose an ONNX model file exported with an RS Ghost model card.")
        else:
            try:
                self.card = self.load_model(path).card
            except RsGhostError as error:
                self.card = None
                self.model_info.setText(f'<span style="color:#b00020;">{error}</span>')
            else:
                self.model_info.setText(card_summary_html(self.card))
        self.model_info.setToolTip(card_notes(self.card) if self.card is not None else "")
        self._update_stride_metres()
        # Rich text with a table: make the layout give the label all the height it needs.
        self.model_info.setMinimumHeight(self.model_info.heightForWidth(max(self.model_info.width(), 560)))
        self._update_bands_hint()
        self._update_scaling_warning()

    def _update_stride_metres(self, *_args) -> None:
        """The stride on the ground, e.g. '= 160 m (tiles overlap)'; '' without a model."""
        if self.card is None:
            self.stride_metres.setText("")
            return
        stride = self.stride_spin.value() or self.card.tile_size
        overlap = "tiles overlap" if stride < self.card.tile_size else "no overlap"
        self.stride_metres.setText(f"= {stride * self.card.gsd_m:g} m on the ground ({overlap})")
        if self.adapt_dialog is not None:
            self.adapt_dialog.update_step()

    def _area_changed(self, *_args) -> None:
        uses_mask = self.area_combo.currentData() in ("mask_all", "mask_selected")
        self.mask_combo.setEnabled(uses_mask)
        if not uses_mask:
            self.mask_combo.setLayer(None)
        elif self.mask_combo.currentLayer() is None and self.mask_combo.count() > 1:
            self.mask_combo.setCurrentIndex(1)  # the first polygon layer (0 is the empty entry)

    def _current_layer_id(self) -> str:
        layer = self.layer_combo.currentLayer()
        return layer.id() if layer is not None else ""

    def _layer_changed(self, *_args) -> None:
        """Keep Bands, Scaling, Offset, Product level and Stride with the raster they were chosen for.

        A new raster starts automatic, at the tile size.
        """
        if self._layer_id:
            chosen = (
                self.bands_edit.text(),
                self.scaling_combo.currentData(),
                self.offset_edit.text(),
                self.product_combo.currentData(),
                self.stride_spin.value(),
            )
            self._per_layer[self._layer_id] = chosen
        self._layer_id = self._current_layer_id()
        bands, scaling, offset, product, stride = self._per_layer.get(self._layer_id, ("", "auto", "", "auto", 0))
        self.bands_edit.setText(bands)
        self.offset_edit.setText(offset)
        self.stride_spin.setValue(stride)
        self.scaling_combo.blockSignals(True)  # one warning update below, not two
        self.scaling_combo.setCurrentIndex(max(0, self.scaling_combo.findData(scaling)))
        self.scaling_combo.blockSignals(False)
        self.product_combo.blockSignals(True)
        self.product_combo.setCurrentIndex(max(0, self.product_combo.findData(product)))
        self.product_combo.blockSignals(False)
        self._update_bands_hint()
        self._update_scaling_warning()

    def _update_bands_hint(self, *_args) -> None:
        layer = self.layer_combo.currentLayer()
        if layer is None or self.card is None:
            self.bands_hint.setText("")
            return
        from ..core.radiometry.bands import choose_bands

        try:
            source = QgisLayerSource.from_layer(layer)
            descriptions = ", ".join(f"{i}: {d or '?'}" for i, d in enumerate(source.info.band_descriptions, start=1))
            bands, note = choose_bands(source, self.card, None)
        except RsGhostError as error:
            self.bands_hint.setText(dialog_words(error))
            return
        self.bands_edit.setPlaceholderText("auto: " + ",".join(map(str, bands)))
        self.bands_hint.setText(f"Raster bands {descriptions}. Automatic: {dialog_words(note)}")

    def current_scaling(self) -> tuple[str, str]:
        """What the chosen Scaling does to the layer and why, and why it does not fit ('' when it fits).

        Both are '' when it cannot be told (no layer or model, wrong fields, a web layer).
        """
        layer = self.layer_combo.currentLayer()
        # Files and VRTs only: for a web layer the sample would be a download on every change.
        if layer is None or self.card is None or layer.providerType() != "gdal":
            return "", ""
        try:
            source = QgisLayerSource.from_layer(layer)
            bands = parse_bands(self.bands_edit.text())
            offset = parse_offset(self.offset_edit.text())
        except RsGhostError:
            return "", ""  # the band hint, or Run, says what is wrong
        plan = qopts.plan_or_none(
            source, self.card, bands, self.scaling_combo.currentData(), offset, self.product_combo.currentData()
        )
        if plan is None:
            return "", ""
        hint = "\n".join([scaling_words(plan.scaling_note), *map(dialog_words, plan.warnings)])
        return hint, qopts.scaling_warning(source, plan, self.scaling_combo.currentText())

    def _update_scaling_warning(self, *_args) -> None:
        hint, text = self.current_scaling()
        self.scaling_hint.setText(hint)
        self.scaling_warning.setText(text)
        self.scaling_warning.setVisible(bool(text))

    def confirm_scaling(self, warning: str) -> bool:
        """Ask whether to run although the scaling does not fit; True to run."""
        answer = QMessageBox.question(
            self, "RS Ghost", f"{warning}\n\nRun anyway?", QMessageBox.Yes | QMessageBox.No, QMessageBox.No
        )
        return answer == QMessageBox.Yes

    def confirm_warnings(self, warnings: list[str]) -> bool:
        """Ask whether to run despite what the tiling found (coarse pixels, a repaired mask); True to run."""
        text = "\n\n".join(warnings)
        answer = QMessageBox.question(
            self, "RS Ghost", f"{text}\n\nRun anyway?", QMessageBox.Yes | QMessageBox.No, QMessageBox.No
        )
        return answer == QMessageBox.Yes

    def confirm_workload(self, size) -> bool:
        """Ask before a long run (above workload.CONFIRM_SECONDS); True to run."""
        answer = QMessageBox.question(
            self,
            "RS Ghost",
            f"This run is big: {size.describe()}.\n\nRun anyway?",
            QMessageBox.Yes | QMessageBox.No,
            QMessageBox.No,
        )
        return answer == QMessageBox.Yes

    # --- the run ------------------------------------------------------------------------------
    def collect(self) -> Request:
        """Check the choices and build the engine options; raises RsGhostError with the fix."""
        from ..core.classify.pipeline import ClassifyOptions
        from ..core.options import Area
        from ..core.radiometry.bands import choose_bands

        layer = check_raster_layer(self.layer_combo.currentLayer())
        path = self.model_path()
        if path == "":
            raise ModelError("Choose an ONNX model file, or the bundled model.")
        model = self.load_model(path)  # a missing model or card says so here, before any work
        source = QgisLayerSource.from_layer(layer)
        area_key = self.area_combo.currentData()
        area = Area()
        if area_key == "canvas":
            canvas = self.iface.mapCanvas()
            area = qopts.area_from_extent(canvas.extent(), canvas.mapSettings().destinationCrs())
        elif area_key in ("mask_all", "mask_selected"):
            area = qopts.area_from_layer(self.mask_combo.currentLayer(), area_key == "mask_selected")
        try:
            check_area(area, source.info)
        except InputError as error:
            raise canvas_error(error, layer.name()) if area_key == "canvas" else error from None
        polygons, raster = self.polygons_check.isChecked(), self.raster_check.isChecked()
        check_outputs(polygons, raster)
        name = qopts.model_name(path)
        out_vector, out_raster = qopts.output_paths(self.folder_widget.filePath(), layer.name(), name, polygons, raster)
        options = ClassifyOptions(
            model_path=path,
            area=area,
            stride=parse_stride(self.stride_spin.value()),
            bands=parse_bands(self.bands_edit.text()),
            scaling=self.scaling_combo.currentData(),
            offset=parse_offset(self.offset_edit.text()),
            product=self.product_combo.currentData(),
            threads=self.threads_spin.value() or None,
            water_rule=self.water_rule_check.isChecked(),
            nir_band=self.nir_spin.value() or None,
            min_confidence=self.doubt_spin.value() / 100 if self.doubt_spin.value() else None,
            out_vector=out_vector,
            out_raster=out_raster,
        )
        choose_bands(source, model.card, options.bands)  # wrong bands: say so now
        self.card = model.card
        return Request(layer=layer, options=options, model_name=name, model=model)

    def start(self) -> None:
        """Check the inputs and start the task; problems are shown here, never as a traceback."""
        if self.task is not None:
            return
        self.summary.setVisible(False)
        try:
            request = self.collect()
            source = QgisLayerSource.from_layer(request.layer)
        except RsGhostError as error:
            self.show_message(dialog_words(error), error=True)
            return
        try:
            size = workload.plan(source.info, self.card, request.options.area, request.options.stride)
        except RsGhostError as error:  # an area refused before any work (a web layer's world view)
            if self.area_combo.currentData() == "canvas" and isinstance(error, InputError):
                error = canvas_error(error, request.layer.name())
            self.show_message(dialog_words(error), error=True)
            return
        if size.seconds > workload.CONFIRM_SECONDS and not self.confirm_workload(size):
            self.show_message(
                "Not started: zoom in, choose a smaller area or a larger Stride, or Run again and confirm."
            )
            return
        from ..core.classify.grid import build_grid

        # Said now, not after a long run: pixels much coarser than the model's, a mask repaired.
        grid_warnings = build_grid(source.info, self.card, request.options.area, request.options.stride).warnings
        if grid_warnings and not self.confirm_warnings([dialog_words(text) for text in grid_warnings]):
            self.show_message("Not started: fix what the warning says, or Run again and confirm.")
            return
        self._update_scaling_warning()
        warning = self.scaling_warning.text()
        if warning and not self.confirm_scaling(warning):
            self.show_message("Not started: choose another Scaling, or Run again and confirm.")
            return
        from ..qgis_io.task import ClassifyTask

        self.save_settings()
        project = QgsProject.instance()
        self.task = ClassifyTask(
            source, request.options, request.model_name, project, self.replace_check.isChecked(), request.model
        )
        self.task.progressChanged.connect(lambda value: self.progress.setValue(int(value)))
        self.task.done.connect(self._finished)
        self.show_message(f"Classifying {request.layer.name()}: {size.describe()}…")
        self.progress.setValue(0)
        self._set_running(True)
        QgsApplication.taskManager().addTask(self.task)

    def cancel(self) -> None:
        """Ask the running task to stop; it removes what it started writing."""
        if self.task is not None:
            self.show_message("Cancelling…")
            self.task.cancel()

    def shutdown(self) -> None:
        """Cancel the running tasks, classify and adapt (plugin unload)."""
        self.cancel()
        if self.adapt_dialog is not None:
            self.adapt_dialog.cancel()

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def _finished(self, task) -> None:
        self.task = None
        self._set_running(False)
        if task.result is not None and not task.error:
            self.progress.setValue(100)
            result = task.result
            lines = [
                f"Done: {result.tiles_classified} of {result.tiles_total} tiles classified in {result.seconds:.1f} s "
                f"{_where(result.provider)}; {result.skipped_line()}.",
                f"Bands: {dialog_words(result.bands_note)}.",
                f"Scaling: {scaling_words(result.scaling_used)}.",
                *[line[0].upper() + line[1:] + "." for line in result.evidence.lines()],
                *map(dialog_words, result.warnings),
            ]
            self.show_message("\n".join(lines))
            self._show_summary(result)
            self.iface.messageBar().pushMessage(
                "RS Ghost", f"{task.source.info.name}: {result.tiles_classified} tiles classified.", Qgis.Success, 5
            )
        elif task.cancelled:
            self.progress.setValue(0)
            self.show_message(task.error)
            bar, description = self.iface.messageBar(), task.description()
            bar.pushMessage(
                "Cancelled", f"Classifying {task.source.info.name} was cancelled; nothing was written.", Qgis.Info, 5
            )
            from ..qgis_io.task import withdraw_completion_notice

            # QGIS's own "Task complete" note follows once this returns: withdraw it then.
            QTimer.singleShot(0, lambda: withdraw_completion_notice(bar, description))
        else:
            self.progress.setValue(0)
            self.show_message(task.error, error=True)

    def _show_summary(self, result) -> None:
        rows = [row for row in result.areas if row.found]
        # Overlapping tiles: the hectares count the averaged map's cells, so show those too.
        headers = ["Class", "Tiles", "Cells", "Hectares", "Percent"] if result.overlapping else None
        headers = headers or ["Class", "Tiles", "Hectares", "Percent"]
        self.summary.setColumnCount(len(headers))
        self.summary.setHorizontalHeaderLabels(headers)
        self.summary.setRowCount(len(rows))
        for i, row in enumerate(rows):
            swatch = QPixmap(12, 12)
            swatch.fill(QColor(row.color))
            cells = [
                QTableWidgetItem(QIcon(swatch), row.class_name),
                QTableWidgetItem(f"{row.tiles:,}"),
                *([QTableWidgetItem(f"{row.cells:,}")] if result.overlapping else []),
                QTableWidgetItem(f"{row.hectares:,.1f}"),
                QTableWidgetItem(f"{row.percent:.1f} %"),
            ]
            for j, cell in enumerate(cells):
                cell.setFlags(cell.flags() & ~Qt.ItemIsEditable)
                if j:
                    cell.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.summary.setItem(i, j, cell)
        self.summary.resizeColumnsToContents()
        self.summary.horizontalHeader().setStretchLastSection(True)
        header = self.summary.horizontalHeader().height()
        # At most its rows' height; less when the window is short (the table scrolls). No
        # adjustSize(): the dialog keeps the geometry the user gave it.
        self.summary.setMaximumHeight(header + sum(self.summary.rowHeight(i) for i in range(len(rows))) + 4)
        self.summary.setVisible(True)

    def show_message(self, text: str, error: bool = False) -> None:
        """Show a status or error line in the dialog."""
        self.message.setStyleSheet("color:#b00020;" if error else "")
        self.message.setText(text)
