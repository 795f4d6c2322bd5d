"""GPU tests: CUDA against the CPU reference on seeded data.  Every test here is marked ``gpu`` and is
skipped when torch sees no CUDA device (the only reason a test of this suite may be skipped)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

CUDA_MARKS = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/gpu/" in item.nodeid.replace("\\", "/"):
            for mark in CUDA_MARKS:
                item.add_marker(mark)


def same_up_to_ties(
    found: tuple[np.ndarray, np.ndarray],
    expected: tuple[np.ndarray, np.ndarray],
    *,
    rtol: float = 1e-4,
    atol: float = 1e-4,
    tie_atol: float = 1e-5,
    tie_rtol: float = 1e-5,
    max_tied: float = 0.05,
) -> None:
    """Scores close to the reference's; where ids differ, the two sides' scores tie within ``tie_atol``
    plus ``tie_rtol`` of the score (tied rows in another order), on at most ``max_tied`` of the slots.
    The relative part is fp32's own resolution: the GPU's re-rank and the CPU's BLAS sum a dot product
    of d terms in different orders, so equal-looking rows differ by up to about d * 2^-24 of the score
    (on the H200: 2.5 at 6.7e6, 4e-4 at 435; both 4e-7 to 1e-6 relative).  For "l2", fp32 itself is
    only exact to about 1e-7 of |q|^2 + |x|^2: pass tolerances of that scale (``l2_tolerance``)."""
    (scores, ids), (ref_scores, ref_ids) = found, expected
    finite = np.isfinite(ref_scores)
    np.testing.assert_array_equal(np.isfinite(scores), finite)
    np.testing.assert_allclose(scores[finite], ref_scores[finite], rtol=rtol, atol=atol)
    differ = ids != ref_ids
    np.testing.assert_allclose(scores[differ], ref_scores[differ], rtol=tie_rtol, atol=tie_atol)
    assert differ.mean() <= max_tied, f"{differ.mean():.3f} of the slots differ"


def l2_tolerance(data: np.ndarray, queries: np.ndarray) -> float:
    """fp32's absolute resolution of -(|q|^2 - 2 q.x + |x|^2) on this data, with a margin."""
    return 1e-6 * float(np.square(queries).sum(axis=1).max() + np.square(data).sum(axis=1).max())
