"""A lean forward pass for BERT encoders (all-MiniLM-L6-v2), over the weights transformers loaded.

transformers' BertModel spends most of a small batch in Python: decorators, output capturing, mask
builders and a module call per operation (measured under the Locust mix: the matmuls were 38% of the
worker's time, the rest its overhead).  This is the same arithmetic (embeddings + LayerNorm, then per
layer: one fused QKV projection, scaled-dot-product attention, output projection + residual +
LayerNorm, erf-GELU feed-forward + residual + LayerNorm) as a plain function over the same tensors,
so its vectors match BertModel's to float rounding (tests/integration/test_minilm.py compares them).
Inference only: no dropout, absolute positions, token type 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class _Layer:
    qkv_weight: torch.Tensor  # [3 * hidden, hidden]: query, key and value projections fused
    qkv_bias: torch.Tensor
    out_weight: torch.Tensor
    out_bias: torch.Tensor
    attn_norm: tuple[torch.Tensor, torch.Tensor]
    up_weight: torch.Tensor
    up_bias: torch.Tensor
    down_weight: torch.Tensor
    down_bias: torch.Tensor
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
        self.layers = [self._layer(layer) for layer in model.encoder.layer]

    @staticmethod
    def _layer(layer: torch.nn.Module) -> _Layer:
        attn = layer.attention
        q, k, v = attn.self.query, attn.self.key, attn.self.value
        with torch.no_grad():
            qkv_weight = torch.cat((q.weight, k.weight, v.weight)).contiguous()
            qkv_bias = torch.cat((q.bias, k.bias, v.bias)).contiguous()
        return _Layer(
            qkv_weight=qkv_weight,
            qkv_bias=qkv_bias,
            out_weight=attn.output.dense.weight,
            out_bias=attn.output.dense.bias,
            attn_norm=(attn.output.LayerNorm.weight, attn.output.LayerNorm.bias),
            up_weight=layer.intermediate.dense.weight,
            up_bias=layer.intermediate.dense.bias,
            down_weight=layer.output.dense.weight,
            down_bias=layer.output.dense.bias,
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
            qkv = F.linear(hidden, layer.qkv_weight, layer.qkv_bias)
            q, k, v = qkv.view(batch, tokens, 3, self.heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
            context = context.transpose(1, 2).reshape(batch, tokens, width)
            attended = F.linear(context, layer.out_weight, layer.out_bias)
            hidden = F.layer_norm(attended + hidden, (width,), *layer.attn_norm, self.eps)
            up = F.gelu(F.linear(hidden, layer.up_weight, layer.up_bias))
            down = F.linear(up, layer.down_weight, layer.down_bias)
            hidden = F.layer_norm(down + hidden, (width,), *layer.ffn_norm, self.eps)
        return hidden
