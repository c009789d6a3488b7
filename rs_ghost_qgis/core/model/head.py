"""The classifier head of an adapted model, applied in numpy after the ONNX graph.

An adapted model (``core/adapt/adapt.py``) keeps the base model's graph and puts a new linear
classifier in its card (``ModelCard.head``). Per tile its features are the graph's output
named ``features`` (the pooled vector before the base classifier) or, for a graph without
one, its first output (the base model's logits), followed by the mean and standard deviation
of every raster band over the tile's valid pixels (``tile_band_statistics``), in reflectance
units where the run detected reflectance (``raw * gain - offset`` of the radiometry plan).
The head standardises them (``(x - mean) / scale``) and returns ``weights @ x + bias``: one
logit per class of the card.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ModelError

FEATURE_SOURCES = ("features", "logits")


@dataclass(frozen=True)
class Head:
    """A softmax classifier over graph features and per-tile band statistics (see the module docstring)."""

    source: str  # "features": the graph output of that name; "logits": its first output
    feature_dims: int  # values per tile from the graph
    raster_bands: int  # bands of the raster the model was adapted on: 2 statistics each
    mean: np.ndarray  # (D,) feature means of the training chips
    scale: np.ndarray  # (D,) feature standard deviations (floored), D = feature_dims + 2 * raster_bands
    weights: np.ndarray  # (classes, D)
    bias: np.ndarray  # (classes,)

    @classmethod
    def from_card(cls, head: dict) -> Head:
        """The head stored in a card (validated there)."""
        return cls(
            source=head["source"],
            feature_dims=int(head["feature_dims"]),
            raster_bands=int(head["raster_bands"]),
            mean=np.asarray(head["mean"], dtype=np.float64),
            scale=np.asarray(head["scale"], dtype=np.float64),
            weights=np.asarray(head["weights"], dtype=np.float64),
            bias=np.asarray(head["bias"], dtype=np.float64),
        )

    def to_card(self) -> dict:
        """The head as a card field (JSON-ready, floats rounded to 7 significant digits)."""
        return {
            "source": self.source,
            "feature_dims": self.feature_dims,
            "raster_bands": self.raster_bands,
            "mean": _floats(self.mean),
            "scale": _floats(self.scale),
            "weights": [_floats(row) for row in self.weights],
            "bias": _floats(self.bias),
        }

    def logits(self, features: np.ndarray, statistics: np.ndarray) -> np.ndarray:
        """(N, classes) logits for graph features (N, feature_dims) and band statistics (N, 2 * raster_bands)."""
        return standardised_logits(self.join(features, statistics), self.mean, self.scale, self.weights, self.bias)

    def join(self, features: np.ndarray, statistics: np.ndarray) -> np.ndarray:
        """The head's input: graph features followed by band statistics, checked for size."""
        features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
        if features.shape[1] != self.feature_dims or statistics.shape[1] != 2 * self.raster_bands:
            raise ModelError(
                f"The adapted model's head takes {self.feature_dims} graph features and statistics of "
                f"{self.raster_bands} bands per tile, but got {features.shape[1]} and {statistics.shape[1] // 2}; "
                "the graph and the card disagree: adapt the model again."
            )
        return np.concatenate([features, np.asarray(statistics, dtype=np.float64)], axis=1)


def standardised_logits(
    x: np.ndarray, mean: np.ndarray, scale: np.ndarray, weights: np.ndarray, bias: np.ndarray
) -> np.ndarray:
    """``((x - mean) / scale) @ weights.T + bias``: the head's one formula, for fitting and running."""
    return ((x - mean) / scale) @ weights.T + bias


def tile_band_statistics(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per tile, the mean and standard deviation of each band over its valid pixels: (k, 2 * bands).

    ``values`` (k, bands, H, W), ``valid`` (k, H, W). A tile without valid pixels uses all of them
    (it is not classified anyway). The order is all means, then all standard deviations.
    """
    values = np.asarray(values, dtype=np.float64)
    weight = np.asarray(valid, dtype=np.float64)
    empty = weight.sum(axis=(1, 2)) == 0
    weight[empty] = 1.0
    weight = weight[:, None, :, :] / weight.sum(axis=(1, 2))[:, None, None, None]
    mean = (values * weight).sum(axis=(2, 3))
    variance = (np.square(values - mean[:, :, None, None]) * weight).sum(axis=(2, 3))
    return np.concatenate([mean, np.sqrt(np.maximum(variance, 0.0))], axis=1)


def check_head(head: dict, num_classes: int) -> None:
    """ModelError naming what is wrong with a card's ``head`` field."""
    try:
        dims = int(head["feature_dims"]) + 2 * int(head["raster_bands"])
        weights = np.asarray(head["weights"], dtype=np.float64)
        vectors = {key: np.asarray(head[key], dtype=np.float64) for key in ("mean", "scale", "bias")}
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(
            "head must hold source, feature_dims, raster_bands, mean, scale, weights and bias (numbers); "
            f"{error!s} is missing or wrong."
        ) from None
    if head["source"] not in FEATURE_SOURCES:
        raise ModelError(f"head source must be one of {', '.join(FEATURE_SOURCES)}, not {head['source']!r}.")
    if int(head["feature_dims"]) < 1 or int(head["raster_bands"]) < 0:
        raise ModelError("head feature_dims must be at least 1 and raster_bands 0 or more.")
    if weights.shape != (num_classes, dims):
        raise ModelError(
            f"head weights must be {num_classes} rows (one per class) of {dims} numbers, not shape "
            f"{list(weights.shape)}."
        )
    for key, want in (("mean", dims), ("scale", dims), ("bias", num_classes)):
        if vectors[key].shape != (want,):
            raise ModelError(f"head {key} must hold {want} numbers, not {vectors[key].size}.")
    if not all(np.isfinite(v).all() for v in (weights, *vectors.values())) or (vectors["scale"] <= 0).any():
        raise ModelError("head numbers must be finite, and every scale positive.")


def _floats(values: np.ndarray) -> list[float]:
    return [float(f"{v:.7g}") for v in np.asarray(values, dtype=np.float64).ravel()]
