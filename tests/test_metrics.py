"""Metrics on rankings whose values are known by hand, including pessimistic ties."""
from __future__ import annotations

import numpy as np
import pytest

from lookalike.eval.metrics import average_precision, ranked_relevance, summarise


def test_average_precision_by_hand():
    rel = np.array([True, False, True, False])
    assert average_precision(rel, 2) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert average_precision(rel, 3) == pytest.approx((1 + 2 / 3) / 3)  # one relevant never retrieved


def test_junk_removed_and_ties_pessimistic():
    ids = ["q", "a", "b", "c"]
    scores = np.array([1.0, 0.5, 0.5, 0.2])
    rel = ranked_relevance(scores, ids, relevant={"b"}, junk={"q"})
    assert rel.tolist() == [False, True, False]  # b ties with a: a (non-relevant) goes first
    m = summarise([rel], [1])
    assert m["mAP"] == pytest.approx(0.5) and m["P@1"] == 0.0 and m["R@5"] == 1.0
