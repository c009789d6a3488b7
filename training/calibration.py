"""Confidence that means what it says: temperature scaling and its expected calibration error.

A network trained to near-zero loss is over-confident: its top softmax probability exceeds its
accuracy. Dividing the logits by one temperature T > 1, fitted by minimising the negative log
likelihood on the validation split (Guo et al., 2017), fixes that without changing a single
prediction. The engine applies the card's ``temperature`` before the softmax.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

BINS = 15


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 that minimises the cross-entropy of ``softmax(logits / T)`` against ``labels``."""
    logits, labels = logits.double(), labels.long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # T = exp(log_t) stays positive
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 50.0))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict:
    """ECE: the support-weighted gap between confidence and accuracy over equal-width bins.

    Returns the ECE and, per bin, its mean confidence, accuracy and count (the reliability diagram).
    """
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for number in range(bins):
        chosen = which == number
        count = int(chosen.sum())
        if count:
            mean_confidence, accuracy = float(confidence[chosen].mean()), float(correct[chosen].mean())
            ece += count / len(labels) * abs(mean_confidence - accuracy)
            rows.append(
                {"low": float(edges[number]), "confidence": mean_confidence, "accuracy": accuracy, "count": count}
            )
    return {"ece": float(ece), "bins": rows}


def calibrate(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Fit the temperature and report the ECE before and after, with both reliability tables."""
    temperature = fit_temperature(logits, labels)
    truth = labels.numpy()
    before = expected_calibration_error(F.softmax(logits.double(), dim=1).numpy(), truth)
    after = expected_calibration_error(F.softmax(logits.double() / temperature, dim=1).numpy(), truth)
    return {
        "temperature": temperature,
        "ece_before": before["ece"],
        "ece_after": after["ece"],
        "reliability_before": before["bins"],
        "reliability_after": after["bins"],
    }
