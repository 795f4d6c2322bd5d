"""OpenAI's ``dimensions`` on /v1/embeddings: which lengths a model may answer with (arrwdb.engine.models),
how a vector is shortened, and ARRWDB_MATRYOSHKA_MODELS' names checked against the loaded models."""

from __future__ import annotations

import numpy as np
import pytest

from arrwdb.config import Settings
from arrwdb.embed.fake import HashEmbedder
from arrwdb.engine.models import ModelRegistry, output_dimension, shorten
from arrwdb.errors import InvalidInput


def test_a_model_that_is_not_matryoshka_answers_only_with_its_own_dimension() -> None:
    model = HashEmbedder(dimension=64)
    assert output_dimension(model, "m", None, matryoshka=False) == 64
    assert output_dimension(model, "m", 64, matryoshka=False) == 64
    with pytest.raises(InvalidInput, match="ARRWDB_MATRYOSHKA_MODELS") as caught:
        output_dimension(model, "m", 32, matryoshka=False)
    assert caught.value.param == "dimensions"


def test_a_matryoshka_model_answers_with_any_length_up_to_its_own() -> None:
    model = HashEmbedder(dimension=64)
    assert [output_dimension(model, "m", d, matryoshka=True) for d in (1, 32, 64, None)] == [1, 32, 64, 64]
    for wrong in (0, 65):
        with pytest.raises(InvalidInput, match="from 1 to 64"):
            output_dimension(model, "m", wrong, matryoshka=True)


def test_shorten_keeps_the_first_values_at_unit_length() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((5, 16)).astype(np.float32)
    vectors[4] = 0.0
    short = shorten(vectors, 6)
    assert short.shape == (5, 6) and short.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(short[:4], axis=1), 1.0, atol=1e-6)
    cosine = (short[:4] * vectors[:4, :6]).sum(axis=1) / np.linalg.norm(vectors[:4, :6], axis=1)
    np.testing.assert_allclose(cosine, 1.0, atol=1e-6)  # same direction as the head of each row
    assert not short[4].any()  # a zero row stays zeros, never NaN
    assert shorten(vectors, 16) is vectors  # the full length is answered as it is


def test_the_setting_names_loaded_models_only() -> None:
    assert Settings(matryoshka_models=" a , b,,").matryoshka_model_names() == ["a", "b"]
    registry = ModelRegistry()
    registry.add(HashEmbedder(dimension=8), "first")
    registry.add(HashEmbedder(dimension=16), "second")
    registry.allow_shortening(["second"])
    assert [m["matryoshka"] for m in registry.describe()] == [False, True]
    with pytest.raises(ValueError, match="'typo'"):
        registry.allow_shortening(["second", "typo"])
