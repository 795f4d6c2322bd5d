"""The fused scan kernel (kernels/fused.py) on the CPU through Triton's interpreter, against the
torch reference ``search_exact``: every metric, fp16 / bf16 / fp32 storage, masks, k past the rows,
query counts that do not fill a tile.  On a CUDA host the same tests run the kernel compiled, bf16
storage included."""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before Triton decorates the kernel

import numpy as np
import pytest

from arrwdb.kernels import search_exact
from arrwdb.kernels.fused import FUSED_MAX_K, GROUP, fused_search

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# Triton's interpreter computes with numpy, which has no bfloat16: bf16 storage is checked compiled only.
DTYPES = [torch.float16, torch.float32] + ([torch.bfloat16] if DEVICE.type == "cuda" else [])


def _data(rows: int, dimension: int, queries: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    matrix = torch.from_numpy(rng.standard_normal((rows, dimension), dtype=np.float32))
    return matrix.to(DEVICE), torch.from_numpy(rng.standard_normal((queries, dimension), dtype=np.float32))


def _same(fused: tuple[torch.Tensor, torch.Tensor], reference: tuple[torch.Tensor, torch.Tensor]) -> None:
    scores, ids = (t.cpu() for t in fused)
    ref_scores, ref_ids = (t.cpu() for t in reference)
    torch.testing.assert_close(scores, ref_scores, rtol=2e-3, atol=2e-3)
    differ = ids != ref_ids
    # Where the ids differ, the scores tie (within the half inputs' rounding): another order of equals.
    torch.testing.assert_close(scores[differ], ref_scores[differ], rtol=2e-3, atol=2e-3)
    assert differ.float().mean() <= 0.05
    assert ((ids == -1) == (ref_ids == -1)).all()


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_scan_equals_the_reference(metric: str, dtype: torch.dtype) -> None:
    matrix, queries = _data(3 * GROUP + 17, 48, 37, seed=1)
    normalize = metric == "cosine"
    if normalize:
        matrix = torch.nn.functional.normalize(matrix, dim=1)
    stored = matrix.to(dtype)
    # The reference scans the same rounded rows in fp32.
    reference = search_exact(stored.float(), queries, 10, metric, normalize=normalize)
    _same(fused_search(stored, queries, 10, metric, normalize=normalize), reference)


def test_fused_scan_applies_the_mask_inside_the_scan() -> None:
    matrix, queries = _data(2 * GROUP + 5, 32, 20, seed=2)
    mask = torch.zeros(matrix.shape[0], dtype=torch.bool)
    mask[::7] = True
    stored = matrix.half()
    found = fused_search(stored, queries, 8, "ip", mask=mask.to(DEVICE))
    _same(found, search_exact(stored.float(), queries, 8, "ip", mask=mask.to(DEVICE)))
    assert mask[found[1].cpu().flatten()].all()  # no masked row ever comes back


def test_fused_scan_fills_missing_slots_with_no_hits() -> None:
    matrix, queries = _data(5, 16, 3, seed=3)
    mask = torch.tensor([True, False, True, False, False], device=DEVICE)
    scores, ids = fused_search(matrix.half(), queries, 4, "l2", mask=mask)
    assert (ids[:, 2:] == -1).all() and torch.isinf(scores[:, 2:]).all()
    assert set(ids[:, :2].cpu().flatten().tolist()) <= {0, 2}
    assert (scores[:, :2] <= 0).all()  # negative squared distances


def test_fused_scan_refuses_what_it_does_not_serve() -> None:
    matrix, queries = _data(10, 16, 2, seed=4)
    with pytest.raises(ValueError, match="fused scan"):
        fused_search(matrix, queries, FUSED_MAX_K + 1, "ip")
    with pytest.raises(ValueError, match="metric"):
        fused_search(matrix, queries, 5, "hamming")
