"""sentence-transformers' Pooling and Normalize modules, computed in float32 whatever the model's dtype."""

from __future__ import annotations

import torch


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str, normalize: bool) -> torch.Tensor:
    """Sentence vectors [batch, hidden] from hidden states [batch, tokens, hidden] and the attention
    mask (1 = token, 0 = padding); ``mode`` one of ``st_config.POOLING_MODES``."""
    hidden = hidden.to(torch.float32)
    weights = mask.unsqueeze(-1).to(torch.float32)
    if mode == "cls":
        vectors = hidden[:, 0]
    elif mode == "max":
        # Padding must never win the max: as sentence-transformers does, it is set very low first.
        vectors = hidden.masked_fill(weights == 0, -1e9).max(dim=1).values
    else:
        summed = (hidden * weights).sum(dim=1)
        counts = weights.sum(dim=1).clamp(min=1e-9)
        vectors = summed / (counts if mode == "mean" else counts.sqrt())
    return torch.nn.functional.normalize(vectors, p=2, dim=1) if normalize else vectors
