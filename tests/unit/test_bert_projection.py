"""The packed oneDNN projections of LeanBert agree with F.linear (+ erf-GELU) in bfloat16."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from arrwdb.embed.bert import _Projection, onednn_packing_available


def _weights(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    weight = (torch.randn(96, 64, generator=generator) / 8).to(dtype)
    bias = torch.randn(96, generator=generator).to(dtype)
    return weight, bias


def test_packing_is_for_bfloat16_on_the_cpu_only() -> None:
    weight, _ = _weights(torch.float32)
    assert not onednn_packing_available(weight)
    bf16_kernels = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert onednn_packing_available(weight.to(torch.bfloat16)) == bf16_kernels


@pytest.mark.parametrize("rows", [1, 7, 300])
@pytest.mark.parametrize("gelu", [False, True])
def test_packed_projection_matches_linear(rows: int, gelu: bool) -> None:
    weight, bias = _weights(torch.bfloat16)
    x = torch.randn(rows, 3, 64).to(torch.bfloat16)  # a [batch, tokens, hidden] input, as in the encoder
    plain = _Projection(weight, bias, packed=False)
    packed = _Projection(weight, bias, packed=onednn_packing_available(weight))
    with torch.inference_mode():
        expected = F.linear(x, weight, bias)
        if gelu:
            expected = F.gelu(expected)
        assert torch.equal(plain(x, gelu=gelu), expected)
        got = packed(x, gelu=gelu)
    assert got.shape == expected.shape and got.dtype == torch.bfloat16
    # bf16 keeps 8 bits of mantissa: the two kernels may round differently in the last place.
    assert torch.allclose(got.float(), expected.float(), rtol=2e-2, atol=2e-2)
