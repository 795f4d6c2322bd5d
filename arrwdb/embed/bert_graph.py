"""The BERT encoder's arithmetic as TorchScript: one call runs the whole forward pass in C++.

Why TorchScript: called from Python, every torch op hands the GIL back and must win it again before
the next one, and a forward pass is ~80 ops.  On a busy server the event loop holds the GIL for much
of each millisecond, so the device thread waited at every op boundary: a 19-text batch took 28 ms in
the server against 10 ms alone.  A scripted function releases the GIL once for the whole pass.  It is
also ~20% faster alone (no per-op Python).  If scripting is unavailable, the same functions run as
plain Python (``script_or_python``): the arithmetic is identical either way.

No ``from __future__ import annotations`` here: TorchScript reads the annotations as objects.
"""

import logging
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F

log = logging.getLogger("arrwdb.embed")

# Per layer, in this order (LeanBert builds it): fused QKV weight and bias, output projection weight
# and bias, attention LayerNorm weight and bias, up projection weight and bias, down projection
# weight and bias, feed-forward LayerNorm weight and bias.  Weights are oneDNN-packed when ``packed``.
LAYER_TENSORS = 12


def project(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, packed: bool, gelu: bool) -> torch.Tensor:
    """``x @ weight.T + bias``, then erf-GELU if ``gelu``; a packed weight runs as one oneDNN primitive
    with the GELU fused in."""
    if packed:
        no_scalars: list[int | float | complex | None] = []
        if gelu:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", no_scalars, "none")
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", no_scalars, "")
    out = F.linear(x, weight, bias)
    if gelu:
        return F.gelu(out)
    return out


def encode(
    ids: torch.Tensor,
    mask: torch.Tensor | None,
    embeddings: list[torch.Tensor],
    layers: list[list[torch.Tensor]],
    heads: int,
    eps: float,
    packed: bool,
) -> torch.Tensor:
    """Hidden states [batch, tokens, hidden].  ``embeddings``: word, position and token-type-0
    embeddings, then the embedding LayerNorm's weight and bias; ``mask``: 1 = token, 0 = padding, or
    None when no row is padded."""
    batch, tokens = ids.shape[0], ids.shape[1]
    hidden = F.embedding(ids, embeddings[0]) + embeddings[1][:tokens] + embeddings[2]
    width = hidden.shape[-1]
    hidden = F.layer_norm(hidden, [width], embeddings[3], embeddings[4], eps)
    # Padding keys are masked out of every query's attention (True = attend).
    attend: torch.Tensor | None = None
    if mask is not None:
        attend = mask.to(torch.bool)[:, None, None, :]
    head_dim = width // heads
    for w in layers:
        qkv = project(hidden, w[0], w[1], packed, False)
        q_k_v = qkv.view(batch, tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        context = F.scaled_dot_product_attention(q_k_v[0], q_k_v[1], q_k_v[2], attn_mask=attend)
        context = context.transpose(1, 2).reshape(batch, tokens, width)
        attended = project(context, w[2], w[3], packed, False)
        hidden = F.layer_norm(attended + hidden, [width], w[4], w[5], eps)
        down = project(project(hidden, w[6], w[7], packed, True), w[8], w[9], packed, False)
        hidden = F.layer_norm(down + hidden, [width], w[10], w[11], eps)
    return hidden


F_ = TypeVar("F_", bound=Callable[..., torch.Tensor])


def script_or_python(fn: F_) -> F_:
    """``fn`` compiled by TorchScript, or ``fn`` itself where TorchScript cannot compile it."""
    try:
        return torch.jit.script(fn)  # type: ignore[no-any-return]
    except Exception as exc:  # a torch without TorchScript (it is deprecated): the same arithmetic in Python
        log.warning("TorchScript could not compile %s (%s): running it as Python", fn.__name__, exc)
        return fn


scripted_encode = script_or_python(encode)
