import csv
import io

import numpy as np
import pytest

from rs_ghost_qgis.core.assess import Assessment, assess, confusion_matrix, harmonise
from rs_ghost_qgis.core.errors import InputError


def test_matrix_accuracy_kappa_f1_match_hand_computation():
    reference = ["A"] * 5 + ["B"] * 5
    predicted = ["A", "A", "A", "A", "B", "B", "B", "B", "A", "A"]
    result = assess(reference, predicted)
    assert result.labels == ["A", "B"]
    np.testing.assert_array_equal(result.matrix, [[4, 1], [2, 3]])
    assert result.overall_accuracy == pytest.approx(0.7)
    # expected agreement: (5*6 + 5*4) / 100 = 0.5 -> kappa = (0.7 - 0.5) / 0.5
    assert result.kappa == pytest.approx(0.4)
    np.testing.assert_allclose(result.precision, [4 / 6, 3 / 4])
    np.testing.assert_allclose(result.recall, [4 / 5, 3 / 5])
    np.testing.assert_allclose(result.f1, [2 * (4 / 6) * 0.8 / (4 / 6 + 0.8), 2 * 0.75 * 0.6 / 1.35])


def test_perfect_and_single_class_and_absent_class():
    perfect = assess(["A", "B", "C"], ["A", "B", "C"])
    assert perfect.overall_accuracy == 1.0 and perfect.kappa == pytest.approx(1.0)
    assert assess(["A", "A"], ["A", "A"]).kappa == 1.0
    # "C" is never predicted: precision 0 without a division warning, recall 0.
    with np.errstate(all="raise"):
        result = assess(["A", "C"], ["A", "A"], labels=["A", "B", "C"])
    assert result.precision.tolist() == [0.5, 0.0, 0.0]
    assert result.recall.tolist() == [1.0, 0.0, 0.0]
    assert result.f1[1] == 0.0


def test_weights_replace_counts():
    result = assess(["A", "B"], ["A", "A"], weights=[3.0, 1.0])
    assert result.total == 4.0
    assert result.overall_accuracy == pytest.approx(0.75)


def test_errors_are_user_messages():
    with pytest.raises(InputError, match="overlaps"):
        assess([], [])
    with pytest.raises(InputError, match="2 reference labels but 1"):
        assess(["A", "B"], ["A"])
    with pytest.raises(InputError, match="Z"):
        assess(["Z"], ["A"], labels=["A"])


def test_harmonise_matches_case_and_spaces():
    assert harmonise(["forest", "Sea lake", "Other"], ["Forest", "SeaLake"]) == ["Forest", "SeaLake", "Other"]


def test_csv_and_html_reports():
    result = assess(["A", "B", "B"], ["A", "B", "A"])
    rows = list(csv.reader(io.StringIO(result.to_csv())))
    assert rows[0] == ["metric", "value"]
    assert ["overall_accuracy", "0.6667"] in rows
    assert ["reference \\ predicted", "A", "B"] in rows
    assert ["B", "1", "1"] in rows
    page = assess(["<x>"], ["<x>"]).to_html(notes=["n"])
    assert "&lt;x&gt;" in page and "<x>" not in page.split("<body>")[1]
    assert "kappa" in page


def test_confusion_matrix_per_class_and_macro_f1_from_class_indices():
    # The training side's evaluation scores models with these (training/evaluate.py).
    labels = np.array([0, 0, 0, 1, 1, 2])
    predictions = np.array([0, 0, 1, 1, 1, 0])
    matrix = confusion_matrix(labels, predictions, 3)
    assert matrix.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    report = Assessment(["a", "b", "c"], matrix)
    per_class = report.per_class()
    assert per_class["a"] == {"precision": 2 / 3, "recall": 2 / 3, "f1": pytest.approx(2 / 3), "support": 3}
    assert per_class["b"]["precision"] == pytest.approx(2 / 3) and per_class["b"]["recall"] == 1
    assert per_class["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert type(per_class["a"]["support"]) is int  # JSON and per_class.csv show counts as integers
    assert report.macro_f1 == pytest.approx((2 / 3 + 0.8 + 0) / 3)
    assert report.overall_accuracy == pytest.approx(4 / 6)


def test_macro_f1_ignores_classes_absent_from_the_reference():
    report = Assessment(["a", "b"], confusion_matrix([0, 0], [0, 1], 2))
    assert report.macro_f1 == pytest.approx(report.f1[0])
    assert Assessment(["a"], np.zeros((1, 1))).overall_accuracy == 0.0
