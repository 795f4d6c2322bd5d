"""Rows tied with a query's K-th exact neighbour count as found in calibration (arrwdb.index.calibrate):
which of equal rows a search returns is arbitrary."""

from __future__ import annotations

import numpy as np

from arrwdb.index.calibrate import recall, tied_neighbours


def test_rows_tied_with_the_kth_are_accepted_and_the_own_row_is_not() -> None:
    ids = np.array([[7, 1, 2, 3, 4, -1]])
    scores = np.array([[1.0, 0.9, 0.8, 0.8, 0.5, -np.inf]], dtype=np.float32)
    accepted = tied_neighbours(ids, scores, np.array([7]), k=2)
    assert accepted[0][accepted[0] >= 0].tolist() == [1, 2, 3]  # 3 ties the 2nd (0.8); 4 does not; 7 is the query


def test_a_tied_row_counts_as_a_hit_but_never_more_hits_than_true_neighbours() -> None:
    truth = np.array([[1, 2]])
    accepted = np.array([[1, 2, 3, -1]])
    assert recall(np.array([[1, 3]]), truth) == 0.5  # by ids alone the tied row is a miss
    assert recall(np.array([[1, 3]]), truth, accepted) == 1.0
    assert recall(np.array([[2, 3]]), truth, accepted) == 1.0
    assert recall(np.array([[1, 2, 3]]), truth, accepted) == 1.0  # capped at the two true neighbours
    assert recall(np.array([[1, 9]]), truth, accepted) == 0.5


def test_scores_just_below_the_kth_are_not_ties() -> None:
    ids = np.array([[1, 2, 3]])
    scores = np.array([[0.9, 0.5, 0.4999]], dtype=np.float32)
    accepted = tied_neighbours(ids, scores, np.array([99]), k=2)
    assert accepted[0][accepted[0] >= 0].tolist() == [1, 2]
