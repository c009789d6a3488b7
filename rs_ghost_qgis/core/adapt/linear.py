"""Multinomial logistic regression (softmax) in numpy, and cross-validation by groups.

The adapted model's head (``core/model/head.py``) is fitted here: features standardised on the
training chips, classes weighted equally whatever their chip counts, L2 penalty on the
weights, Nesterov-accelerated gradient descent with the step from the loss's Lipschitz bound.
Cross-validation holds out whole groups (the polygons the chips came from), so chips of one
polygon never test themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.head import standardised_logits

L2 = 1e-2  # penalty on the weights of standardised features, in units of the mean loss
ITERATIONS = 1500
TOLERANCE = 1e-6  # stop when the gradient's largest entry is below this
MIN_SCALE = 1e-6  # features that do not vary on the chips keep this scale


@dataclass(frozen=True)
class Softmax:
    """A fitted softmax classifier: ``standardised_logits(x, mean, scale, weights, bias)``."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # (classes, features)
    bias: np.ndarray  # (classes,)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The most likely class of each row of ``x``."""
        return standardised_logits(x, self.mean, self.scale, self.weights, self.bias).argmax(axis=1)


def fit_softmax(x: np.ndarray, y: np.ndarray, classes: int, l2: float = L2, iterations: int = ITERATIONS) -> Softmax:
    """Fit ``classes`` classes to features ``x`` (n, d) and labels ``y`` (n,) in 0..classes-1.

    Every class weighs the same in the loss (chips weighted by n / (classes * n_class)); a
    class without chips gets a very negative bias.
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = np.maximum(x.std(axis=0), MIN_SCALE)
    z = np.concatenate([(x - mean) / scale, np.ones((len(x), 1))], axis=1)  # last column: the bias
    counts = np.bincount(y, minlength=classes)
    weight = (len(y) / (classes * np.maximum(counts, 1)))[y] / len(y)  # (n,), sums to 1 over present classes
    target = np.eye(classes)[y]
    penalty = np.full(z.shape[1], l2)
    penalty[-1] = 0.0  # the bias is not penalised
    step = 1.0 / (0.5 * float(np.linalg.norm(z * np.sqrt(weight)[:, None], 2)) ** 2 + l2)
    theta = _nesterov(z, target, weight, penalty, step, iterations)
    theta[-1, counts == 0] = -30.0  # never predicted: no chip said what it looks like
    return Softmax(mean, scale, theta[:-1].T.copy(), theta[-1].copy())


def _nesterov(z, target, weight, penalty, step: float, iterations: int) -> np.ndarray:
    """Minimise the weighted cross-entropy + L2 over theta (d + 1, classes)."""
    theta = np.zeros((z.shape[1], target.shape[1]))
    previous = theta
    for k in range(1, iterations + 1):
        look = theta + (k - 1) / (k + 2) * (theta - previous)
        gradient = _gradient(z, target, weight, penalty, look)
        previous, theta = theta, look - step * gradient
        if np.abs(gradient).max() < TOLERANCE:
            break
    return theta


def _gradient(z, target, weight, penalty, theta) -> np.ndarray:
    logits = z @ theta
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return z.T @ ((probabilities - target) * weight[:, None]) + penalty[:, None] * theta


def group_folds(groups: np.ndarray, y: np.ndarray, folds: int) -> np.ndarray:
    """A fold number per sample; all samples of a group share one, and each class's groups are spread over the folds.

    Per class, its groups (largest first) go round the folds, continuing where the last class stopped.
    """
    fold_of_group: dict[int, int] = {}
    turn = 0
    for label in np.unique(y):
        members = np.unique(groups[y == label])
        sizes = [int((groups == g).sum()) for g in members]
        for group in members[np.argsort(sizes, kind="stable")[::-1]]:
            if int(group) not in fold_of_group:
                fold_of_group[int(group)] = turn % folds
                turn += 1
    return np.array([fold_of_group[int(g)] for g in groups])


def cross_validate(x: np.ndarray, y: np.ndarray, groups: np.ndarray, classes: int, folds: int = 5) -> np.ndarray:
    """Held-out predictions for every sample: each fold's groups predicted by a model fitted on the others."""
    folds = max(2, min(folds, len(np.unique(groups))))
    fold = group_folds(groups, y, folds)
    predicted = np.empty(len(y), dtype=np.int64)
    for k in range(folds):
        test = fold == k
        if test.any():
            predicted[test] = fit_softmax(x[~test], y[~test], classes).predict(x[test])
    return predicted
