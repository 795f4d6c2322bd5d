"""Resolve the compute device once, at start; the value is passed down, kernels follow tensor.device."""

from __future__ import annotations

import torch

from arrwdb.errors import InvalidInput


def resolve_device(setting: str) -> torch.device:
    if setting == "cpu":
        return torch.device("cpu")
    if setting == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInput("--device cuda was asked for, but torch sees no CUDA device")
        return torch.device("cuda")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    raise InvalidInput(f"unknown device {setting!r}: use auto, cpu or cuda")
