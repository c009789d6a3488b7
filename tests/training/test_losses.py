"""Losses: DKD's decomposition of KD, agreement with an independent reference, stability."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.losses import ce_loss, dkd_loss, kd_loss, make_criterion, warmup_factor


def kl_times_t2(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-sample KL(softmax(zT/T) || softmax(zS/T)) * T², written with probabilities."""
    p_student = torch.softmax(student.double() / temperature, dim=1)
    p_teacher = torch.softmax(teacher.double() / temperature, dim=1)
    return (p_teacher * (p_teacher.log() - p_student.log())).sum(dim=1) * temperature**2


def reference_dkd(student, teacher, target, alpha, beta, temperature):
    """DKD written differently: the target class is indexed out instead of masked, in float64."""
    tckd, nckd = [], []
    for s, t, y in zip(student.double(), teacher.double(), target.tolist(), strict=True):
        p_s, p_t = torch.softmax(s / temperature, 0), torch.softmax(t / temperature, 0)
        b_s = torch.stack([p_s[y], 1 - p_s[y]])
        b_t = torch.stack([p_t[y], 1 - p_t[y]])
        tckd.append((b_t * (b_t / b_s).log()).sum())
        others = [c for c in range(len(s)) if c != y]
        q_s = torch.softmax(s[others] / temperature, 0)
        q_t = torch.softmax(t[others] / temperature, 0)
        nckd.append((q_t * (q_t / q_s).log()).sum())
    return (alpha * torch.stack(tckd).mean() + beta * torch.stack(nckd).mean()) * temperature**2


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 8.0])
def test_kd_splits_into_tckd_and_weighted_nckd(temperature):
    generator = torch.Generator().manual_seed(int(temperature))
    student = torch.randn(6, 5, generator=generator) * 3
    teacher = torch.randn(6, 5, generator=generator) * 3
    target = torch.randint(0, 5, (6,), generator=generator)
    for i in range(6):
        s, t, y = student[i : i + 1], teacher[i : i + 1], target[i : i + 1]
        tckd = dkd_loss(s, t, y, alpha=1.0, beta=0.0, temperature=temperature)
        nckd = dkd_loss(s, t, y, alpha=0.0, beta=1.0, temperature=temperature)
        teacher_target_probability = torch.softmax(t / temperature, dim=1)[0, y[0]]
        decomposed = tckd + (1 - teacher_target_probability) * nckd
        assert decomposed.item() == pytest.approx(kl_times_t2(s, t, temperature).item(), rel=1e-4, abs=1e-6)
        assert kd_loss(s, t, temperature).item() == pytest.approx(kl_times_t2(s, t, temperature).item(), rel=1e-4)


@pytest.mark.parametrize(("alpha", "beta", "temperature"), [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0), (2.0, 0.5, 3.0)])
def test_dkd_agrees_with_an_indexing_reference(alpha, beta, temperature):
    generator = torch.Generator().manual_seed(7)
    student = torch.randn(16, 10, generator=generator) * 4
    teacher = torch.randn(16, 10, generator=generator) * 4
    target = torch.randint(0, 10, (16,), generator=generator)
    expected = reference_dkd(student, teacher, target, alpha, beta, temperature)
    actual = dkd_loss(student, teacher, target, alpha, beta, temperature)
    assert actual.dtype == torch.float32
    assert actual.item() == pytest.approx(expected.item(), abs=1e-5, rel=1e-5)


def test_dkd_of_a_perfect_copy_is_zero():
    logits = torch.randn(4, 6)
    assert dkd_loss(logits, logits.clone(), torch.tensor([0, 1, 2, 5]), 1.0, 8.0, 4.0).item() == pytest.approx(
        0, abs=1e-6
    )


@pytest.mark.parametrize("loss", ["kd", "dkd"])
def test_gradients_reach_the_student_only(loss):
    student = torch.randn(4, 5, requires_grad=True)
    teacher = torch.randn(4, 5, requires_grad=True)
    target = torch.tensor([0, 1, 2, 3])
    value = kd_loss(student, teacher, 4.0) if loss == "kd" else dkd_loss(student, teacher, target, 1.0, 8.0, 4.0)
    value.backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


@pytest.mark.parametrize("scale", [1e4, -1e4])
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_losses_stay_finite_for_extreme_logits(scale, temperature):
    # A near-certain teacher (p_t rounds to 1 in fp32) and a student certain of a wrong class.
    teacher = torch.zeros(3, 4)
    teacher[torch.arange(3), torch.tensor([0, 1, 2])] = scale
    student = torch.zeros(3, 4)
    student[torch.arange(3), torch.tensor([3, 3, 0])] = -scale
    student[0, 1] = scale
    student = student.half().requires_grad_()  # fp16 input: the loss must compute in fp32
    target = torch.tensor([0, 1, 2])
    for value in (
        dkd_loss(student, teacher, target, 1.0, 8.0, temperature),
        kd_loss(student, teacher, temperature),
        make_criterion("dkd")(student, teacher, target, epoch=30),
    ):
        assert torch.isfinite(value)
        (grad,) = torch.autograd.grad(value, student)
        assert torch.isfinite(grad).all()


def test_dkd_is_large_when_the_student_contradicts_a_certain_teacher():
    teacher = torch.tensor([[1e4, 0.0, 0.0]])
    student = torch.tensor([[0.0, 1e4, 0.0]])
    assert dkd_loss(student, teacher, torch.tensor([0]), 1.0, 0.0, 1.0).item() > 1e3


def test_two_classes_have_no_non_target_term():
    student, teacher = torch.randn(5, 2), torch.randn(5, 2)
    target = torch.randint(0, 2, (5,))
    assert dkd_loss(student, teacher, target, 0.0, 1.0, 4.0).item() == 0.0


def test_kd_loss_on_a_small_example():
    student = torch.tensor([[1.0, 2.0, 3.0]])
    teacher = torch.tensor([[3.0, 1.0, 0.0]])
    p_s = torch.softmax(student / 2, dim=1)
    p_t = torch.softmax(teacher / 2, dim=1)
    expected = float((p_t * (p_t / p_s).log()).sum() * 4)
    assert kd_loss(student, teacher, 2.0).item() == pytest.approx(expected, rel=1e-6)
    assert expected > 0.5  # the example is far from a trivial zero


def test_criteria_combine_the_terms():
    generator = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(8, 6, generator=generator), torch.randn(8, 6, generator=generator)
    target = torch.randint(0, 6, (8,), generator=generator)
    ce = F.cross_entropy(student, target)
    assert make_criterion("none")(student, None, target, epoch=0) == pytest.approx(ce.item())
    assert ce_loss(student, target).item() == pytest.approx(ce.item())
    kd = make_criterion("kd")(student, teacher, target, epoch=0)
    assert kd.item() == pytest.approx(0.1 * ce.item() + 0.9 * kd_loss(student, teacher, 4.0).item(), rel=1e-6)
    dkd = make_criterion("dkd", warmup_epochs=10)
    distillation = dkd_loss(student, teacher, target, 1.0, 8.0, 4.0).item()
    assert dkd(student, teacher, target, epoch=5).item() == pytest.approx(ce.item() + 0.5 * distillation, rel=1e-6)
    assert dkd(student, teacher, target, epoch=0).item() == pytest.approx(ce.item(), rel=1e-6)
    custom = make_criterion("dkd", beta=2.0, temperature=2.0, warmup_epochs=0)
    expected = ce.item() + dkd_loss(student, teacher, target, 1.0, 2.0, 2.0).item()
    assert custom(student, teacher, target, epoch=0).item() == pytest.approx(expected, rel=1e-6)


def test_criterion_mistakes_are_reported():
    with pytest.raises(ValueError, match="dkd"):
        make_criterion("fitnet")
    with pytest.raises(ValueError, match="beta"):
        make_criterion("kd", beta=2.0)
    with pytest.raises(ValueError, match="teacher"):
        make_criterion("dkd")(torch.randn(2, 3), None, torch.tensor([0, 1]), epoch=1)


def test_warmup_factor_ramps_linearly_then_caps():
    assert warmup_factor(0, 20) == 0.0
    assert warmup_factor(5, 20) == 0.25
    assert warmup_factor(10.5, 21) == 0.5
    assert warmup_factor(20, 20) == 1.0
    assert warmup_factor(35, 20) == 1.0
    assert warmup_factor(3, 0) == 1.0
