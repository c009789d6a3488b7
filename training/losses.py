"""Classification and distillation losses: CE, classic KD (Hinton) and decoupled KD (Zhao et al.).

All losses are computed in fp32 and in log space, so they stay finite for logits up to ±1e4
(a teacher trained on the same images is often almost certain). The teacher's logits are
detached: gradients reach the student only. See docs/METHOD.md, section 3 (Losses).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

DEFAULTS = {
    # label_smoothing applies to the cross-entropy term of every kind (0: plain one-hot targets).
    "none": {"label_smoothing": 0.0},
    # mdistiller's defaults for classic KD and for DKD on CIFAR (warm-up in epochs).
    "kd": {"ce_weight": 0.1, "kd_weight": 0.9, "temperature": 4.0, "label_smoothing": 0.0},
    "dkd": {
        "ce_weight": 1.0,
        "alpha": 1.0,
        "beta": 8.0,
        "temperature": 4.0,
        "warmup_epochs": 20.0,
        "label_smoothing": 0.0,
    },
}
KINDS = tuple(DEFAULTS)


def ce_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of ``logits`` (N, C) against class indices ``target`` (N,), batch mean.

    ``label_smoothing`` moves that share of each target's probability evenly onto all classes.
    """
    return F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)


def kd_loss(logits_student: torch.Tensor, logits_teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's KD: KL(softmax(zT/T) || softmax(zS/T)) * T², batch mean."""
    log_student = F.log_softmax(logits_student.float() / temperature, dim=1)
    log_teacher = F.log_softmax(logits_teacher.detach().float() / temperature, dim=1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * temperature**2


def _target_split(log_probs: torch.Tensor, is_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # log p_t and log(1 - p_t); the latter as a logsumexp over the non-target log-probabilities,
    # which stays finite (and accurate) when p_t rounds to 1.
    log_target = log_probs.masked_fill(~is_target, float("-inf")).logsumexp(dim=1)
    log_rest = log_probs.masked_fill(is_target, float("-inf")).logsumexp(dim=1)
    return log_target, log_rest


def dkd_loss(
    logits_student: torch.Tensor,
    logits_teacher: torch.Tensor,
    target: torch.Tensor,
    alpha: float,
    beta: float,
    temperature: float,
) -> torch.Tensor:
    """Decoupled KD: (alpha * TCKD + beta * NCKD) * T², batch mean, without the warm-up factor."""
    tckd, nckd = dkd_terms(logits_student, logits_teacher, target, temperature)
    return alpha * tckd + beta * nckd


def dkd_terms(
    logits_student: torch.Tensor, logits_teacher: torch.Tensor, target: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """DKD's two terms, each x T² and unweighted: (TCKD, NCKD).

    TCKD is the KL divergence of the binary (target, rest) probabilities; NCKD the KL divergence
    of the softmax over the non-target classes only.
    """
    if logits_student.shape[1] < 2:
        raise ValueError("DKD needs at least 2 classes")
    log_student = F.log_softmax(logits_student.float() / temperature, dim=1)
    log_teacher = F.log_softmax(logits_teacher.detach().float() / temperature, dim=1)
    is_target = F.one_hot(target, log_student.shape[1]).bool()
    student_target, student_rest = _target_split(log_student, is_target)
    teacher_target, teacher_rest = _target_split(log_teacher, is_target)
    batch = log_student.shape[0]

    binary_student = torch.stack([student_target, student_rest], dim=1)
    binary_teacher = torch.stack([teacher_target, teacher_rest], dim=1)
    tckd = F.kl_div(binary_student, binary_teacher, reduction="sum", log_target=True) / batch

    # Non-target distribution q = p / (1 - p_t); the target entry is set to 0 in both, so its
    # KL term is exp(0) * (0 - 0) = 0 and it receives no gradient.
    non_target_student = (log_student - student_rest[:, None]).masked_fill(is_target, 0.0)
    non_target_teacher = (log_teacher - teacher_rest[:, None]).masked_fill(is_target, 0.0)
    nckd = F.kl_div(non_target_student, non_target_teacher, reduction="sum", log_target=True) / batch

    return tckd * temperature**2, nckd * temperature**2


def warmup_factor(epoch: float, warmup_epochs: float) -> float:
    """Linear warm-up of the distillation term: min(epoch / warmup_epochs, 1) (1 without warm-up)."""
    if warmup_epochs <= 0:
        return 1.0
    return min(max(epoch, 0.0) / warmup_epochs, 1.0)


def _no_distillation(logits_student, logits_teacher, target, epoch, *, label_smoothing):
    return {"ce": ce_loss(logits_student, target, label_smoothing)}


def _kd_parts(logits_student, logits_teacher, target, epoch, *, ce_weight, kd_weight, temperature, label_smoothing):
    return {
        "ce": ce_weight * ce_loss(logits_student, target, label_smoothing),
        "kd": kd_weight * kd_loss(logits_student, logits_teacher, temperature),
    }


def _dkd_parts(
    logits_student,
    logits_teacher,
    target,
    epoch,
    *,
    ce_weight,
    alpha,
    beta,
    temperature,
    warmup_epochs,
    label_smoothing,
):
    tckd, nckd = dkd_terms(logits_student, logits_teacher, target, temperature)
    ramp = warmup_factor(epoch, warmup_epochs)
    return {
        "ce": ce_weight * ce_loss(logits_student, target, label_smoothing),
        "tckd": ramp * alpha * tckd,
        "nckd": ramp * beta * nckd,
    }


# Each kind's loss as its weighted terms (their sum is the loss), so logs show which term dominates.
_PARTS: dict[str, Callable[..., dict[str, torch.Tensor]]] = {
    "none": _no_distillation,
    "kd": _kd_parts,
    "dkd": _dkd_parts,
}


@dataclass(frozen=True)
class DistillationLoss:
    """Total training loss of one method; call with (student logits, teacher logits or None, target, epoch)."""

    kind: str
    hyperparameters: dict[str, float] = field(default_factory=dict)

    @property
    def needs_teacher(self) -> bool:
        """Whether teacher logits must be passed."""
        return self.kind != "none"

    def __call__(
        self, logits_student: torch.Tensor, logits_teacher: torch.Tensor | None, target: torch.Tensor, epoch: float
    ) -> torch.Tensor:
        """Scalar loss; ``epoch`` (fractional allowed) drives the DKD warm-up."""
        return sum(self.parts(logits_student, logits_teacher, target, epoch).values())

    def parts(
        self, logits_student: torch.Tensor, logits_teacher: torch.Tensor | None, target: torch.Tensor, epoch: float
    ) -> dict[str, torch.Tensor]:
        """The loss's weighted terms by name (ce; kd; tckd and nckd), which add up to the loss."""
        if self.needs_teacher and logits_teacher is None:
            raise ValueError(f"the {self.kind!r} loss needs teacher logits, got None")
        return _PARTS[self.kind](logits_student, logits_teacher, target, epoch, **self.hyperparameters)


def make_criterion(kind: str, **hyperparameters: float) -> DistillationLoss:
    """The loss of ``kind`` ("none", "kd" or "dkd") with DEFAULTS overridden by ``hyperparameters``."""
    if kind not in DEFAULTS:
        raise ValueError(f"unknown distillation kind {kind!r}; choose one of: {', '.join(KINDS)}")
    unknown = sorted(set(hyperparameters) - set(DEFAULTS[kind]))
    if unknown:
        accepted = ", ".join(DEFAULTS[kind]) or "none"
        raise ValueError(f"unknown hyperparameter(s) {', '.join(unknown)} for {kind!r}; accepted: {accepted}")
    return DistillationLoss(kind, {**DEFAULTS[kind], **hyperparameters})
