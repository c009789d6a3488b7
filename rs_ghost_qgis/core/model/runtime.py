"""The model at run time: an onnxruntime session, its model card, and batched inference."""

from __future__ import annotations

import mmap
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..errors import ModelError
from ..options import OptionText, check_threads
from .card import ModelCard
from .head import Head
from .onnx_meta import read_metadata

_PACKAGE = Path(__file__).resolve().parents[2]  # rs_ghost_qgis/
# The installed plugin carries its model inside the package; a development checkout keeps
# it in the repository's resources/ folder.
MODEL_DIRS = (_PACKAGE / "resources" / "models", _PACKAGE.parent / "resources" / "models")
DEFAULT_NAME_FILE = "default.txt"
FEATURES_OUTPUT = "features"  # the graph output holding the pooled features, when the export added it
# onnxruntime's messages start with a status code and a C++ source location and signature; the
# cause (e.g. "Opset 99 is under development ...") comes after them, often past 200 characters.
_ORT_STATUS = re.compile(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")
_ORT_SOURCE = re.compile(r"\s*(?:/[^\s:]*)?onnxruntime/\S+:\d+\s+(?:[^()]*\((?:[^()]|\([^()]*\))*\)\s*)?")


@dataclass
class Model:
    """A loaded classifier: its card, its session and where it runs."""

    path: Path
    card: ModelCard
    session: ort.InferenceSession
    input_name: str
    outputs_probabilities: bool
    head: Head | None = None  # an adapted model's classifier, applied after the graph
    feature_output: int = 0  # the graph output the head (and ``features``) reads

    @property
    def provider(self) -> str:
        """The execution provider onnxruntime runs the model on, e.g. 'CPUExecutionProvider'."""
        return self.session.get_providers()[0]

    @property
    def band_statistics(self) -> int:
        """How many raster bands the model wants statistics of per tile (0: none, a plain model)."""
        return self.card.statistics_bands

    def predict(self, batch: np.ndarray, statistics: np.ndarray | None = None) -> np.ndarray:
        """Calibrated class probabilities (N, classes) for a normalised float32 batch (N, C, H, W).

        An adapted model also needs ``statistics``, the tiles' band statistics (``head.tile_band_statistics``).
        """
        outputs = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})
        if self.head is None:
            output = np.asarray(outputs[0], dtype=np.float32)
            probabilities = _probabilities(output, self.outputs_probabilities, self.card)
        else:
            if statistics is None:
                raise ModelError(f"{self.path} is an adapted model: it needs the band statistics of each tile.")
            logits = self.head.logits(np.asarray(outputs[self.feature_output]), statistics)
            probabilities = softmax(logits.astype(np.float32) / self.card.temperature)
        _check_finite(probabilities, self.path, f"{len(batch)} tile(s) of this raster")
        return probabilities

    def features(self, batch: np.ndarray) -> np.ndarray:
        """The graph's features (N, D) for a normalised batch: its ``features`` output, else its logits."""
        outputs = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.asarray(outputs[self.feature_output], dtype=np.float64).reshape(len(batch), -1)


def runtime_reason(error: BaseException) -> str:
    """onnxruntime's reason for ``error`` in full, without its status code and C++ source location."""
    text = " ".join(str(error).split())
    text = _ORT_SOURCE.sub(" ", _ORT_STATUS.sub("", text)).strip()
    return text or type(error).__name__


def _probabilities(output: np.ndarray, outputs_probabilities: bool, card: ModelCard) -> np.ndarray:
    """The network's output as calibrated probabilities (softmax of logits / temperature)."""
    return output if outputs_probabilities else softmax(output / card.temperature)


def _check_finite(probabilities: np.ndarray, path: Path, inputs: str) -> None:
    """ModelError when any probability is NaN or inf: argmax would silently call such a tile class 0."""
    bad = ~np.isfinite(probabilities).all(axis=1)
    if bad.any():
        raise ModelError(
            f"{path} outputs NaN or infinite values for {int(bad.sum())} of {inputs}, so those tiles have no "
            "class; the model is broken (e.g. diverged training or a faulty export): retrain or re-export it."
        )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits; a row with NaN or +inf logits comes out NaN."""
    # Quietly: a broken model's NaN is reported once, as a ModelError, not as numpy warnings.
    with np.errstate(invalid="ignore"):
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return exp / exp.sum(axis=1, keepdims=True)


def default_model_path(search_dirs: tuple[Path, ...] | None = None) -> Path:
    """The bundled model: the file named in default.txt, else the first .onnx found.

    ``search_dirs`` defaults to MODEL_DIRS (read at call time). Raises ModelError when no
    model is bundled.
    """
    search_dirs = MODEL_DIRS if search_dirs is None else search_dirs
    for folder in search_dirs:
        named = folder / DEFAULT_NAME_FILE
        if named.is_file():
            candidate = folder / named.read_text(encoding="utf-8").strip()
            if candidate.is_file():
                return candidate
        models = sorted(folder.glob("*.onnx"))
        if models:
            return models[0]
    places = " or ".join(str(d) for d in search_dirs)
    raise ModelError(
        OptionText(
            "The bundled model is not there yet (no .onnx file in {places}). Train and export it with "
            "`make train`, or choose a model file ({model}).",
            places=places,
        )
    )


def load_model(path: str | os.PathLike | None = None, threads: int | None = None) -> Model:
    """Open an ONNX scene classifier and check it against its model card.

    ``path`` None loads the bundled model; ``threads`` None lets onnxruntime use every core.
    """
    path = Path(path) if path is not None else default_model_path()
    if path.is_dir():
        raise ModelError(f"Model {path} is a folder; give the .onnx file in it, or omit it to use the bundled model.")
    if not path.is_file():
        raise ModelError(f"Model file {path} does not exist; check the path or omit it to use the bundled model.")
    if not os.access(path, os.R_OK):
        raise ModelError(f"Model file {path} cannot be read; check its permissions.")
    session = create_session(path, threads)
    card = read_card(path)
    input_name = _check_input(session, card, path)
    head = Head.from_card(card.head) if card.head else None
    feature_output = _feature_output(session, head, path)
    if head is not None:
        _check_head_output(session, card, path, input_name, head, feature_output)
        return Model(path, card, session, input_name, False, head, feature_output)
    outputs_probabilities = _check_output(session, card, path, input_name)
    return Model(path, card, session, input_name, outputs_probabilities, None, feature_output)


def read_card(path: Path) -> ModelCard:
    """The model card in the ONNX file's metadata_props, read without onnxruntime.

    The file is mapped, not read: the walk over its top-level fields skips the graph, so only
    the pages holding the metadata are touched, however large the weights.
    """
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return ModelCard.from_metadata(read_metadata(data), source=str(path))


class ModelLoad:
    """``load_model`` on a worker thread, while the caller plans its work with the model's card.

    Building the onnxruntime session takes tens of milliseconds on one core; a run reads the
    card from the file (``card``) and samples the raster meanwhile. ``model`` waits for the load
    and raises what ``load_model`` raised: a broken model is reported in the same words either way.
    """

    def __init__(self, path: str | os.PathLike | None, threads: int | None) -> None:
        self.path = Path(path) if path is not None else default_model_path()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="rs_ghost_load")
        self._loading = self._worker.submit(load_model, self.path, threads)
        self._worker.shutdown(wait=False)  # the thread ends with the load

    def card(self) -> ModelCard:
        """The model card, read from the file; where that fails, the loaded model's, or the load's error."""
        try:
            return read_card(self.path)
        except Exception:  # a missing, unreadable or broken file: load_model's checks name the problem
            return self.model().card

    def model(self) -> Model:
        """The loaded model (waiting for it); raises the load's error."""
        try:
            return self._loading.result()
        finally:
            # Its thread outlives the result by a moment: joined, so that nothing of a run is left running.
            self._worker.shutdown(wait=True)


def feature_source(session: ort.InferenceSession) -> tuple[str, int]:
    """Which graph output holds the features: ('features', its index), else ('logits', 0)."""
    names = [output.name for output in session.get_outputs()]
    return (FEATURES_OUTPUT, names.index(FEATURES_OUTPUT)) if FEATURES_OUTPUT in names else ("logits", 0)


def _feature_output(session: ort.InferenceSession, head: Head | None, path: Path) -> int:
    """The index of the output the head reads; ModelError when its card wants features the graph lacks."""
    source, index = feature_source(session)
    if head is not None and head.source != source:
        raise ModelError(
            f"{path}'s card has a head over the graph's '{head.source}' output, which the graph does not have; "
            "adapt the model again from its base model."
        )
    return index


def _check_head_output(
    session: ort.InferenceSession, card: ModelCard, path: Path, input_name: str, head: Head, index: int
) -> None:
    """Run one blank tile through graph and head: the features must fit the head and the result be finite."""
    probe = np.zeros((1, len(card.bands), card.input_size, card.input_size), dtype=np.float32)
    try:
        output = np.asarray(session.run(None, {input_name: probe})[index])
    except Exception as error:  # onnxruntime raises several private exception types
        raise ModelError(f"{path} fails on a {probe.shape} input: {runtime_reason(error)}") from None
    logits = head.logits(output.reshape(1, -1), np.zeros((1, 2 * head.raster_bands)))
    _check_finite(softmax(logits.astype(np.float32)), path, "1 blank test tile")


def create_session(path: Path | bytes, threads: int | None) -> ort.InferenceSession:
    """An onnxruntime CPU session with our settings, for a file or a model's bytes; ModelError if not ONNX.

    A negative ``threads`` is an OptionError here, whichever face or command asked (info, adapt, classify).
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(check_threads(threads) or 0)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Idle worker threads would spin between batches, stealing the core that reads the
    # next strip of tiles.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        model = path if isinstance(path, bytes) else str(path)
        return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises several private exception types
        where = "The model" if isinstance(path, bytes) else path
        raise ModelError(
            f"{where} is not a valid ONNX model ({runtime_reason(error)}). Re-export it with "
            "`python -m training export` or download it again."
        ) from None


def _check_input(session: ort.InferenceSession, card: ModelCard, path: Path) -> str:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelError(f"{path} has {len(inputs)} inputs; a scene classifier takes one N x C x H x W image batch.")
    shape, kind = inputs[0].shape, inputs[0].type
    if kind != "tensor(float)":
        raise ModelError(f"{path} takes {kind}; this plugin feeds float32. Export the model with float32 input.")
    if len(shape) != 4:
        raise ModelError(f"{path} takes input of shape {shape}, not N x C x H x W; export it channels-first (NCHW).")
    expected = [len(card.bands), card.input_size, card.input_size]
    for axis, (have, want) in enumerate(zip(shape[1:], expected), start=1):
        if isinstance(have, int) and have != want:
            raise ModelError(
                f"{path} takes input of shape {shape} but its model card says {expected[0]} bands of "
                f"{card.input_size} x {card.input_size} px (axis {axis}: {have} != {want}); fix the card or re-export."
            )
    return inputs[0].name


def _check_output(session: ort.InferenceSession, card: ModelCard, path: Path, input_name: str) -> bool:
    """Run one blank tile: the output must be (1, classes) and finite. Returns whether it is already softmaxed."""
    probe = np.zeros((1, len(card.bands), card.input_size, card.input_size), dtype=np.float32)
    try:
        output = session.run(None, {input_name: probe})[0]
    except Exception as error:  # onnxruntime raises several private exception types
        raise ModelError(f"{path} fails on a {probe.shape} input: {runtime_reason(error)}") from None
    output = np.asarray(output)
    if output.ndim != 2 or output.shape[1] != card.num_classes:
        raise ModelError(
            f"{path} outputs shape {list(output.shape)} but its model card lists {card.num_classes} classes; "
            "the card and the network disagree. Re-export the model with the right class list."
        )
    # Some exporters append a softmax; applying a second one would flatten the probabilities.
    outputs_probabilities = bool(np.all(output >= 0) and np.allclose(output.sum(axis=1), 1.0, atol=1e-4))
    _check_finite(_probabilities(output.astype(np.float32), outputs_probabilities, card), path, "1 blank test tile")
    return outputs_probabilities
