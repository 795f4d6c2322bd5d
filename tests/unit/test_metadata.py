"""Unit tests of arrwdb.library.metadata.validate_metadata: accepted shapes, normalisation, every rejection."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arrwdb.errors import InvalidInput
from arrwdb.library.metadata import (
    MAX_KEY_CHARS,
    MAX_KEYS,
    MAX_LIST_ITEMS,
    MAX_STRING_CHARS,
    validate_metadata,
)


def reject(obj: object, fragment: str) -> InvalidInput:
    """Validation must fail with InvalidInput (422) and a message containing ``fragment``."""
    with pytest.raises(InvalidInput) as info:
        validate_metadata(obj)
    assert fragment in info.value.message, info.value.message
    assert info.value.status == 422
    return info.value


def test_none_and_empty_are_empty_dict() -> None:
    assert validate_metadata(None) == {}
    assert validate_metadata({}) == {}


def test_every_value_type_is_accepted_and_kept() -> None:
    meta = {"s": "x", "i": 3, "f": 2.5, "t": True, "n": False, "tags": ["a", "b"], "empty": [], "e": ""}
    out = validate_metadata(meta)
    assert out == meta
    assert {k: type(v) for k, v in out.items()} == {k: type(v) for k, v in meta.items()}


def test_bools_stay_bools_and_ints_stay_ints() -> None:
    # bool is a subclass of int: a careless int() would turn True into 1.
    out = validate_metadata({"b": True, "i": 1, "f": 1.0, "z": 0})
    assert out["b"] is True
    assert type(out["i"]) is int and type(out["z"]) is int
    assert type(out["f"]) is float


def test_result_is_a_copy() -> None:
    meta: dict[str, Any] = {"tags": ["a"]}
    out = validate_metadata(meta)
    meta["tags"].append("b")
    meta["new"] = 1
    assert out == {"tags": ["a"]}


def test_large_and_negative_numbers_are_fine() -> None:
    out = validate_metadata({"big": 2**63 - 1, "neg": -(2**63), "tiny": -1e-300, "max": 1.7976931348623157e308})
    assert out["big"] == 2**63 - 1 and out["neg"] == -(2**63) and out["max"] == 1.7976931348623157e308


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**70])
def test_integers_beyond_64_bits_are_rejected(value: int) -> None:
    # The store (and every JSON library that keeps integers exact) holds 64-bit integers; a larger one
    # refused at the door cannot fail the whole group commit it would be part of.
    reject({"n": value}, "metadata.n must be an integer between")


@pytest.mark.parametrize("obj", [[], [("a", 1)], "a=1", 1, True, 1.5])
def test_non_dict_is_rejected(obj: object) -> None:
    reject(obj, "metadata must be an object")


def test_non_string_key_is_rejected() -> None:
    reject({1: "x"}, "metadata keys must be strings")


def test_key_length_bounds() -> None:
    assert validate_metadata({"k" * MAX_KEY_CHARS: 1}) == {"k" * MAX_KEY_CHARS: 1}
    reject({"k" * (MAX_KEY_CHARS + 1): 1}, "1 to 256 characters")
    reject({"": 1}, "1 to 256 characters")


def test_dollar_keys_are_reserved() -> None:
    reject({"$gt": 1}, 'must not start with "$"')
    assert validate_metadata({"price$": 1}) == {"price$": 1}  # only a leading "$" is reserved


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (None, "metadata.k must be a string, a number, a boolean or a list of strings, not null"),
        (
            {"x": 1},
            "metadata.k must be a string, a number, a boolean or a list of strings, not an object: metadata is flat, so give each nested value a key of its own (e.g. 'k.x')",
        ),
        ({}, "metadata.k must be a string, a number, a boolean or a list of strings, not an object"),
        (("a", "b"), "metadata.k must be a string, a number, a boolean or a list of strings, got array"),
        ({"a"}, "metadata.k must be a string, a number, a boolean or a list of strings, got set"),
        (b"bytes", "metadata.k must be a string, a number, a boolean or a list of strings, got bytes"),
        (float("nan"), "metadata.k must be a finite number"),
        (float("inf"), "metadata.k must be a finite number"),
        (float("-inf"), "metadata.k must be a finite number"),
        ([1], "metadata.k[0] must be a string"),
        (["a", "b", 3], "metadata.k[2] must be a string"),
        (["a", True], "metadata.k[1] must be a string"),
        (["a", None], "metadata.k[1] must be a string"),
        ([["a"]], "metadata.k[0] must be a string"),
        (["a", {"b": 1}], "metadata.k[1] must be a string"),
    ],
)
def test_bad_values_are_rejected_with_the_key(value: object, fragment: str) -> None:
    reject({"ok": 1, "k": value}, fragment)


def test_message_names_the_exact_element() -> None:
    err = reject({"tags": ["a", "b", 7]}, "metadata.tags[2] must be a string")
    assert "number" in err.message  # and says what it got


def test_key_count_limit() -> None:
    many = {f"k{i}": i for i in range(MAX_KEYS)}
    assert validate_metadata(many) == many
    many["one_more"] = 0
    reject(many, f"at most {MAX_KEYS}")


def test_string_length_limit() -> None:
    assert validate_metadata({"s": "x" * MAX_STRING_CHARS})["s"] == "x" * MAX_STRING_CHARS
    reject({"s": "x" * (MAX_STRING_CHARS + 1)}, "metadata.s is longer than 65536")
    reject({"tags": ["a", "x" * (MAX_STRING_CHARS + 1)]}, "metadata.tags[1] is longer than 65536")


def test_list_length_limit() -> None:
    items = [str(i) for i in range(MAX_LIST_ITEMS)]
    assert validate_metadata({"tags": items}) == {"tags": items}
    reject({"tags": [*items, "x"]}, f"metadata.tags has {MAX_LIST_ITEMS + 1} items")


def test_long_key_is_cut_in_messages() -> None:
    err = reject({"k" * 10_000: None}, "must be 1 to 256")
    assert len(err.message) < 300


_scalar = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.lists(st.text(max_size=5), max_size=5),
)
_key = st.text(min_size=1, max_size=20).filter(lambda k: not k.startswith("$"))


@given(st.dictionaries(_key, _scalar, max_size=10))
def test_valid_metadata_round_trips(meta: dict[str, Any]) -> None:
    out = validate_metadata(meta)
    assert out == meta
    assert all(type(out[k]) is type(v) for k, v in meta.items())


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=10,
)


@given(_json)
def test_arbitrary_json_is_accepted_or_invalid_input(obj: object) -> None:
    try:
        out = validate_metadata(obj)
    except InvalidInput as e:
        assert e.message.startswith("metadata")
        return
    # Whatever passed is flat and typed as API.md says.
    for value in out.values():
        if isinstance(value, list):
            assert all(isinstance(v, str) for v in value)
        else:
            assert isinstance(value, str | int | float | bool)
            assert not isinstance(value, float) or math.isfinite(value)


def test_paths_name_the_document_in_a_batch() -> None:
    with pytest.raises(InvalidInput) as info:
        validate_metadata({"nested": {"a": 1}}, "documents[3]")
    assert info.value.message.startswith("documents[3].metadata.nested must be a string, a number, a boolean")
    with pytest.raises(InvalidInput) as info:
        validate_metadata([1], "documents[0]")
    assert info.value.message.startswith("documents[0].metadata must be an object")
