"""MiniLM on CUDA in fp16 against the float32 CPU model; tokens prepared (and copied to the GPU) on
another thread, as the scheduler does, give the same vectors as an inline embed."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import torch

from arrwdb.embed.minilm import MiniLMEmbedder
from arrwdb.runtime.device import model_dtype

TEXTS = [
    "The cat sleeps on the warm windowsill.",
    "Stock markets fell sharply after the announcement.",
    "Heavy rain is expected across the region tomorrow.",
    "A short one.",
    " ".join(["a much longer text that runs past the model's window of two hundred and fifty six tokens"] * 30),
    "Ünïcödé, emoji 🚀 and punctuation!?",
] * 11


@pytest.fixture(scope="module")
def gpu_model() -> MiniLMEmbedder:
    return MiniLMEmbedder("cuda", dtype=model_dtype(torch.device("cuda")))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_fp16_on_cuda_matches_fp32_on_cpu(gpu_model: MiniLMEmbedder, minilm: Any) -> None:
    assert gpu_model.dtype == torch.float16
    gpu = gpu_model.embed(TEXTS)
    cpu = minilm.embed(TEXTS)
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    np.testing.assert_allclose(np.linalg.norm(gpu, axis=1), 1.0, rtol=1e-4)
    assert _cosines(gpu, cpu).min() > 0.995


def test_prepared_on_another_thread(gpu_model: MiniLMEmbedder) -> None:
    """prepare() pins and copies on its own stream, on another thread, while the device computes."""
    prepared: list[Any] = []
    worker = threading.Thread(target=lambda: prepared.append(gpu_model.prepare(TEXTS)))
    worker.start()
    busy = gpu_model.embed(TEXTS[:8])  # the "current batch", computed while the next one is prepared
    worker.join()
    batch = prepared[0]
    assert batch.ready is not None and all(ids.is_cuda and mask.is_cuda for ids, mask, _ in batch.groups)
    vectors = gpu_model.embed_prepared(batch)
    np.testing.assert_allclose(vectors, gpu_model.embed(TEXTS), rtol=0, atol=1e-5)
    assert busy.shape == (8, gpu_model.dimension)


def test_batch_invariance(gpu_model: MiniLMEmbedder) -> None:
    batch = gpu_model.embed(TEXTS)
    for i in (0, 3, 4, 5):
        alone = gpu_model.embed([TEXTS[i]])
        assert _cosines(alone, batch[i : i + 1])[0] > 0.9995
