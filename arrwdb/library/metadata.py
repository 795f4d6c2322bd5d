"""Validation of document metadata (API.md, "Document").

Metadata is a flat map ``{str: str | int | float | bool | [str]}``.  It is checked once, when a
document is written, so that everything downstream (the store, the filter matcher, the JSON encoder)
can rely on its shape: the filter matcher in particular never has to guard against nested objects,
NaN or unhashable values.  Every failure is an :class:`~arrwdb.errors.InvalidInput` whose message
names the offending key, because a client sending a batch of 1000 documents needs to know which
value to fix.
"""

from __future__ import annotations

import math

from arrwdb.errors import InvalidInput
from arrwdb.library.validation import field_path
from arrwdb.records import MAX_KEYS

MetadataValue = str | int | float | bool | list[str]
Metadata = dict[str, MetadataValue]
# What every message about a wrong value says a value may be.
ALLOWED = "a string, a number, a boolean or a list of strings"

MAX_KEY_CHARS = 256
MAX_STRING_CHARS = 65536
MAX_LIST_ITEMS = 1024
# Integers are 64-bit signed, as in SQLite and every JSON library that keeps integers exact; a larger
# one cannot be stored (orjson refuses it) and would fail the whole commit it was part of.
MIN_INT = -(2**63)
MAX_INT = 2**63 - 1


def _key_label(key: str) -> str:
    """The key as it appears in messages; long keys are cut so an error body stays small."""
    return key if len(key) <= 64 else key[:64] + "..."


def _check_string(value: str, where: str) -> str:
    if len(value) > MAX_STRING_CHARS:
        raise InvalidInput(f"{where} is longer than {MAX_STRING_CHARS} characters")
    # str() turns a str subclass into a plain str (a no-op for a plain one), so stored values are
    # always the exact JSON types.
    return str(value)


def _check_value(value: object, where: str) -> MetadataValue:
    """One metadata value, normalised to its plain Python type; ``where`` names it in errors."""
    # bool first: it is a subclass of int, and True must stay True rather than become 1.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return check_int(int(value), where)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if isinstance(value, str):
        return _check_string(value, where)
    if isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            raise InvalidInput(f"{where} has {len(value)} items; at most {MAX_LIST_ITEMS} are allowed")
        items: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise InvalidInput(f"{where}[{i}] must be a string, got {json_type_name(item)}")
            items.append(_check_string(item, f"{where}[{i}]"))
        return items
    if value is None:
        raise InvalidInput(f"{where} must be {ALLOWED}, not null (to leave the key out, omit it)")
    if isinstance(value, dict):
        leaf = where.rsplit(".", 1)[-1]
        example = f" (e.g. '{leaf}.{_key_label(str(next(iter(value))))}')" if value else ""
        raise InvalidInput(
            f"{where} must be {ALLOWED}, not an object: metadata is flat, so give each nested value a key "
            f"of its own{example}"
        )
    raise InvalidInput(f"{where} must be {ALLOWED}, got {json_type_name(value)}")


def check_int(value: int, where: str) -> int:
    if not MIN_INT <= value <= MAX_INT:
        raise InvalidInput(f"{where} must be an integer between {MIN_INT} and {MAX_INT} (64-bit)")
    return value


def json_type_name(value: object) -> str:
    """The JSON name of a value's type, which is what an API client thinks in (shared with filters)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def validate_metadata(obj: object, where: str = "") -> Metadata:
    """Check document metadata and return a fresh, normalised copy; ``where`` is the path of the
    document in its request body ("" for the body itself, "documents[3]" in a batch).

    ``None`` (metadata omitted) is ``{}``.  The result shares no mutable list with the input, so a
    caller mutating its request object later cannot change what was stored.

    Raises:
        InvalidInput: the shape, a key or a value is not allowed; the message names the key.
    """
    if obj is None:
        return {}
    path = field_path(where, "metadata")
    if not isinstance(obj, dict):
        raise InvalidInput(f"{path} must be an object of keys to values ({ALLOWED}), got {json_type_name(obj)}")
    if len(obj) > MAX_KEYS:
        raise InvalidInput(f"{path} has {len(obj)} keys; at most {MAX_KEYS} are allowed")
    out: Metadata = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise InvalidInput(f"{path} keys must be strings, got {json_type_name(key)} {key!r}")
        if not 1 <= len(key) <= MAX_KEY_CHARS:
            raise InvalidInput(f"{path} key {_key_label(key)!r} must be 1 to {MAX_KEY_CHARS} characters long")
        if key.startswith("$"):
            # "$" keys are reserved for filter operators; allowing them would make a filter on such a
            # field ambiguous with an operator.
            raise InvalidInput(f'{path} key {_key_label(key)!r} must not start with "$"')
        out[str(key)] = _check_value(value, f"{path}.{_key_label(key)}")
    return out
