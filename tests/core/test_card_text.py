"""What a model card says about its teacher: the method, the teacher's accuracy and its size as ratios."""

from __future__ import annotations

import dataclasses

from tests.tiny_model import tiny_card

TEACHER = {"architecture": "vgg16_bn", "val_top1": 0.9812, "parameters": 134_301_514, "macs": 1_275_000_000}


def distilled(**teacher):
    """The tiny card as a DKD student of ``teacher`` (sizes of the bundled student: 1.46 M, 42.8 M MACs)."""
    training = {"distillation": {"method": "dkd", "alpha": 1.0, "beta": 2.0}, "teacher": teacher}
    return dataclasses.replace(tiny_card(), parameters=1_460_130, macs=42_800_000, training=training)


def test_the_distillation_row_names_the_teacher_its_accuracy_and_both_size_ratios():
    row = next(line for line in distilled(**TEACHER).to_markdown().splitlines() if line.startswith("| distillation"))
    assert "DKD (alpha 1, beta 2) from a vgg16_bn of 98.12 % validation top-1" in row
    # 134,301,514 / 1,460,130 = 91.98; 1,275 M / 42.8 M = 29.79
    assert "134.3 M parameters (92.0x this model's)" in row
    assert "1,275.0 M MACs per tile (29.8x this model's)" in row


def test_sizes_the_card_lacks_are_left_out_not_guessed():
    assert distilled(architecture="vgg16_bn").teacher_size_text() == ""
    only_parameters = distilled(architecture="vgg16_bn", parameters=134_301_514)
    assert only_parameters.teacher_size_text() == "134.3 M parameters (92.0x this model's)"
    assert tiny_card().teacher_size_text() == ""
