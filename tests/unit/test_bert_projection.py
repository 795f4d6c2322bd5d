"""The BERT graph's projections: packed oneDNN primitives agree with F.linear (+ erf-GELU) in
bfloat16, and the TorchScript-compiled graph computes what the same functions compute as Python."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from arrwdb.embed.bert import onednn_packing_available, pack_weight
from arrwdb.embed.bert_graph import LAYER_TENSORS, encode, project, scripted_encode


def _weights(dtype: torch.dtype, out: int = 96, inner: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    weight = (torch.randn(out, inner, generator=generator) / 8).to(dtype)
    bias = torch.randn(out, generator=generator).to(dtype)
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
    packed = onednn_packing_available(weight)
    with torch.inference_mode():
        expected = F.linear(x, weight, bias)
        if gelu:
            expected = F.gelu(expected)
        assert torch.equal(project(x, weight, bias, False, gelu), expected)
        got = project(x, pack_weight(weight, packed), bias, packed, gelu)
    assert got.shape == expected.shape and got.dtype == torch.bfloat16
    # bf16 keeps 8 bits of mantissa: the two kernels may round differently in the last place.
    assert torch.allclose(got.float(), expected.float(), rtol=2e-2, atol=2e-2)


def test_scripted_graph_equals_the_python_graph() -> None:
    assert isinstance(scripted_encode, torch.jit.ScriptFunction)  # compiled, not the Python fallback
    hidden, heads, vocab = 64, 4, 50
    generator = torch.Generator().manual_seed(1)
    embeddings = [torch.randn(vocab, hidden, generator=generator), torch.randn(16, hidden, generator=generator),
                  torch.randn(hidden, generator=generator), torch.ones(hidden), torch.zeros(hidden)]  # fmt: skip
    layers = []
    for seed in range(2):
        qkv, qkv_bias = _weights(torch.float32, 3 * hidden, hidden, seed)
        out, out_bias = _weights(torch.float32, hidden, hidden, seed + 10)
        up, up_bias = _weights(torch.float32, 4 * hidden, hidden, seed + 20)
        down, down_bias = _weights(torch.float32, hidden, 4 * hidden, seed + 30)
        norm = [torch.ones(hidden), torch.zeros(hidden)]
        layers.append([qkv, qkv_bias, out, out_bias, *norm, up, up_bias, down, down_bias, *norm])
    assert all(len(layer) == LAYER_TENSORS for layer in layers)
    ids = torch.randint(0, vocab, (3, 9), generator=generator)
    mask = torch.ones(3, 9, dtype=torch.int64)
    mask[1, 6:] = 0
    with torch.inference_mode():
        for row_mask in (mask, None):
            expected = encode(ids, row_mask, embeddings, layers, heads, 1e-12, False)
            got = scripted_encode(ids, row_mask, embeddings, layers, heads, 1e-12, False)
            assert torch.allclose(got, expected, atol=1e-5), float((got - expected).abs().max())
