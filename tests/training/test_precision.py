"""training.precision: bf16 only where the CPU computes it natively, measured faster and agreeing."""

from __future__ import annotations

import pytest
import torch

from training import precision

CPU = torch.device("cpu")


def fake_probe(fp32: tuple[float, float], bf16: tuple[float, float]):
    calls = []

    def probe(dtype):
        calls.append(dtype)
        return bf16 if dtype == torch.bfloat16 else fp32

    return probe, calls


@pytest.fixture
def native(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})


def test_native_bf16_is_read_from_the_cpu_flags():
    assert precision.native_cpu_bf16({"avx512f", "avx512_bf16"})
    assert precision.native_cpu_bf16({"amx_bf16", "amx_tile"})
    assert not precision.native_cpu_bf16({"avx2", "avx512f", "avx512bw"})  # emulated bf16 is slower


def test_auto_without_native_bf16_stays_fp32_without_measuring(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "fma"})
    probe, calls = fake_probe((1.0, 2.3), (0.5, 2.3))
    chosen = precision.choose("auto", CPU, probe)
    assert chosen.name == "fp32" and chosen.dtype is None and "no native bf16" in chosen.reason
    assert calls == []


def test_auto_keeps_bf16_when_it_measures_faster_and_agrees(native):
    probe, calls = fake_probe((2.0, 2.30), (1.0, 2.31))
    chosen = precision.choose("auto", CPU, probe)
    assert chosen.name == "bf16" and chosen.dtype == torch.bfloat16 and "2.00x" in chosen.reason
    assert calls == [None, torch.bfloat16]


def test_auto_falls_back_when_bf16_is_slower(native):
    chosen = precision.choose("auto", CPU, fake_probe((1.0, 2.3), (1.2, 2.3))[0])
    assert chosen.name == "fp32" and "not faster" in chosen.reason


def test_auto_falls_back_when_bf16_computes_a_different_loss(native):
    # A regression like torch issue #183815 (wrong bf16 grouped convolutions) shows as a loss far off.
    chosen = precision.choose("auto", CPU, fake_probe((2.0, 2.30), (1.0, 3.10))[0])
    assert chosen.name == "fp32" and "disagrees" in chosen.reason


def test_explicit_choices_are_obeyed_and_fp16_needs_a_gpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: set())
    assert precision.choose("bf16", CPU).dtype == torch.bfloat16  # asked for: no second-guessing
    assert precision.choose("fp32", CPU).dtype is None
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        precision.choose("fp16", CPU)
    with pytest.raises(ValueError, match="must be one of"):
        precision.choose("fp8", CPU)


def test_the_probe_times_real_steps_with_the_same_dropout_in_each_format():
    network = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    x = torch.randn(16, 8)
    losses = [precision.time_steps(lambda: network(x).square().mean().item(), steps=2)[1] for _ in range(2)]
    assert losses[0] == losses[1]  # same seed for the first step: same masks, comparable losses


def test_hardware_names_the_cpu_and_its_bf16():
    described = precision.hardware()
    if not torch.cuda.is_available():
        assert described.startswith("CPU ") and "threads" in described and "bf16" in described
