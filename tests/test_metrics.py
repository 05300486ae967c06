"""Metrics against values computed by hand."""

import pytest

from reid.evaluation.metrics import classification_metrics


def test_metrics_equal_hand_computed_values():
    truth = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "b", "a"]
    m = classification_metrics(truth, pred)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # kappa: p_o = 4/6; p_e = sum over classes of P(true=k)P(pred=k) = (3*3 + 2*3 + 1*0) / 36
    p_o, p_e = 4 / 6, (9 + 6 + 0) / 36
    assert m["kappa"] == pytest.approx((p_o - p_e) / (1 - p_e))
    # per class: a: P=2/3 R=2/3; b: P=2/3 R=1; c: P=0 R=0
    assert m["macro_precision"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert m["macro_recall"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    f1_b = 2 * (2 / 3) * 1 / (2 / 3 + 1)
    assert m["macro_f1"] == pytest.approx((2 / 3 + f1_b + 0) / 3)
    assert m["confusion"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["labels"] == ["a", "b", "c"]
    assert [r["support"] for r in m["per_class"]] == [3, 2, 1]


def test_perfect_and_unknown_individual():
    m = classification_metrics(["x", "y"], ["x", "y"])
    assert m["accuracy"] == 1 and m["kappa"] == 1 and m["macro_f1"] == 1
    # a test photo of an individual the model never learned is an error, not dropped
    m = classification_metrics(["x", "new"], ["x", "x"], labels=["x", "new"])
    assert m["num_images"] == 2 and m["accuracy"] == 0.5


def test_kappa_of_a_perfect_single_class_prediction_is_one():
    assert classification_metrics(["a", "a"], ["a", "a"])["kappa"] == 1.0
