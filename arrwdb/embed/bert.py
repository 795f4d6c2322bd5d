"""A lean forward pass for BERT encoders (all-MiniLM-L6-v2), over the weights transformers loaded.

transformers' BertModel spends most of a small batch in Python: decorators, output capturing, mask
builders and a module call per operation (measured under the Locust mix: the matmuls were 38% of the
worker's time, the rest its overhead).  This is the same arithmetic (embeddings + LayerNorm, then per
layer: one fused QKV projection, scaled-dot-product attention, output projection + residual +
LayerNorm, erf-GELU feed-forward + residual + LayerNorm) as a plain function over the same tensors,
so its vectors match BertModel's to float rounding (tests/integration/test_minilm.py compares them).
Inference only: no dropout, absolute positions, token type 0.

On a CPU in bfloat16 the four projections of each layer run as oneDNN linear primitives over weights
packed once at load (the up projection with its GELU fused in): 15-30% faster forwards than F.linear,
whose bf16 path re-lays the weight out on every call (bench/results: `arrwdb bench embed`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def onednn_packing_available(weight: torch.Tensor) -> bool:
    """Whether ``weight``'s projections can run as packed oneDNN primitives: bf16 on a CPU whose torch
    build has oneDNN and whose instructions oneDNN's bf16 kernels need (AVX-512 or AMX; an AVX2-only
    CPU is refused by them).  fp32 gains nothing from packing, and CUDA has its own kernels."""
    mkldnn = torch.ops.mkldnn
    return (
        weight.device.type == "cpu"
        and weight.dtype == torch.bfloat16
        and torch.backends.mkldnn.is_available()
        and hasattr(mkldnn, "_linear_pointwise")
        and hasattr(mkldnn, "_is_mkldnn_bf16_supported")
        and bool(mkldnn._is_mkldnn_bf16_supported())
    )


class _Projection:
    """``x @ weight.T + bias``, optionally followed by erf-GELU."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, packed: bool) -> None:
        self.weight = weight
        self.bias = bias
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, None) if packed else None

    def __call__(self, x: torch.Tensor, gelu: bool = False) -> torch.Tensor:
        if self.packed is not None:
            if gelu:
                return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "gelu", [], "none")
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        out = F.linear(x, self.weight, self.bias)
        return F.gelu(out) if gelu else out


@dataclass(frozen=True)
class _Layer:
    qkv: _Projection  # [3 * hidden, hidden]: query, key and value projections fused
    out: _Projection
    attn_norm: tuple[torch.Tensor, torch.Tensor]
    up: _Projection
    down: _Projection
    ffn_norm: tuple[torch.Tensor, torch.Tensor]


class LeanBert:
    """``forward(ids, mask) -> last hidden state`` of a transformers BertModel, without its overhead."""

    def __init__(self, model: torch.nn.Module) -> None:
        config = model.config
        activation = getattr(config, "hidden_act", "gelu")
        positions = getattr(config, "position_embedding_type", "absolute")
        if activation != "gelu" or positions != "absolute":
            raise ValueError("LeanBert supports erf-GELU BERT encoders with absolute positions only")
        self.heads = int(config.num_attention_heads)
        self.eps = float(config.layer_norm_eps)
        emb = model.embeddings
        self.word = emb.word_embeddings.weight
        self.position = emb.position_embeddings.weight
        self.token_type0 = emb.token_type_embeddings.weight[0]
        self.embed_norm = (emb.LayerNorm.weight, emb.LayerNorm.bias)
        self.packed = onednn_packing_available(self.word)
        self.layers = [self._layer(layer, self.packed) for layer in model.encoder.layer]

    @staticmethod
    def _layer(layer: torch.nn.Module, packed: bool) -> _Layer:
        attn = layer.attention
        q, k, v = attn.self.query, attn.self.key, attn.self.value
        with torch.no_grad():
            qkv_weight = torch.cat((q.weight, k.weight, v.weight)).contiguous()
            qkv_bias = torch.cat((q.bias, k.bias, v.bias)).contiguous()
        with torch.no_grad():
            return _Layer(
                qkv=_Projection(qkv_weight, qkv_bias, packed),
                out=_Projection(attn.output.dense.weight, attn.output.dense.bias, packed),
                attn_norm=(attn.output.LayerNorm.weight, attn.output.LayerNorm.bias),
                up=_Projection(layer.intermediate.dense.weight, layer.intermediate.dense.bias, packed),
                down=_Projection(layer.output.dense.weight, layer.output.dense.bias, packed),
                ffn_norm=(layer.output.LayerNorm.weight, layer.output.LayerNorm.bias),
            )

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Hidden states [batch, tokens, hidden] for token ``ids``; ``mask`` (1 = token, 0 = padding)
        may be None when no row is padded."""
        batch, tokens = ids.shape
        hidden = F.embedding(ids, self.word) + self.position[:tokens] + self.token_type0
        hidden = F.layer_norm(hidden, hidden.shape[-1:], *self.embed_norm, self.eps)
        # Padding keys are masked out of every query's attention (True = attend).
        attend = None if mask is None else mask.bool()[:, None, None, :]
        width = hidden.shape[-1]
        head_dim = width // self.heads
        for layer in self.layers:
            qkv = layer.qkv(hidden)
            q, k, v = qkv.view(batch, tokens, 3, self.heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
            context = context.transpose(1, 2).reshape(batch, tokens, width)
            attended = layer.out(context)
            hidden = F.layer_norm(attended + hidden, (width,), *layer.attn_norm, self.eps)
            down = layer.down(layer.up(hidden, gelu=True))
            hidden = F.layer_norm(down + hidden, (width,), *layer.ffn_norm, self.eps)
        return hidden
