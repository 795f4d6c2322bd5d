"""The metadata filter language of API.md: parsing into a typed tree, and matching.

A filter arrives as untrusted JSON and is run against every document of a library, so the work is
split in two: :func:`parse_filter` validates once (bounded depth and size, typed values, paths in
every error message) and builds a tree of frozen dataclasses; each node then precomputes what it can
(a type-specialised test, frozensets for ``$in``) so that :meth:`Filter.matches` does no parsing and
almost no allocation per document.

Type rules (API.md): a comparison on a missing field or a value of another type is false; bool is not
a number; int and float compare as numbers; strings compare lexicographically with strings; on a list
of strings ``$eq``/``$in`` test membership and range operators are false.  ``$ne``, ``$nin`` and
``$not`` are the exact negations of ``$eq``, ``$in`` and their filter, so ``$ne`` on a missing field
is true.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Final

from arrwdb.errors import InvalidInput
from arrwdb.library.metadata import json_type_name

Scalar = str | int | float | bool

MAX_DEPTH: Final = 32
MAX_NODES: Final = 1024
MAX_IN_VALUES: Final = 1024
MAX_FIELD_CHARS: Final = 256

COMPARE_OPS: Final = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})
# In the order error messages list them.
LOGICAL_OPS: Final = ("$and", "$or", "$not")
FIELD_OPS: Final = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$not")
_RANGE_OPS: Final[dict[str, Callable[[object, object], bool]]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}
_NUMBER: Final = (int, float)
_MISSING: Final = object()  # what a missing field looks like to a test: of no type, so every test is false


class Filter(ABC):
    """Base of every filter node: ``matches`` decides one document, ``fields`` lists the keys read."""

    __slots__ = ()

    @abstractmethod
    def matches(self, metadata: Mapping[str, object]) -> bool: ...

    @abstractmethod
    def fields(self) -> frozenset[str]: ...


def _negation(test: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda x: not test(x)


def _positive_test(op: str, value: Scalar) -> Callable[[object], bool]:
    """The test of one metadata value for ``op`` (``$ne`` gets the ``$eq`` test; the caller negates).

    The value's type is known here, at parse time, so each closure checks only the one type that can
    match; ``isinstance(x, bool)`` is checked explicitly because bool is a subclass of int.
    """
    eq = op in ("$eq", "$ne")
    if isinstance(value, bool):
        if not eq:
            return lambda _x: False  # bools have no order
        return lambda x: isinstance(x, bool) and x == value
    if isinstance(value, _NUMBER):
        cmp = operator.eq if eq else _RANGE_OPS[op]
        return lambda x: isinstance(x, _NUMBER) and not isinstance(x, bool) and cmp(x, value)
    if eq:
        # A list field (of strings) equals a string when the string is one of its elements.
        return lambda x: x == value if isinstance(x, str) else isinstance(x, list) and value in x
    cmp = _RANGE_OPS[op]
    return lambda x: isinstance(x, str) and cmp(x, value)


@dataclasses.dataclass(frozen=True, slots=True)
class Compare(Filter):
    """``{field: {op: value}}`` for op in ``$eq $ne $gt $gte $lt $lte`` (``{field: value}`` is ``$eq``)."""

    field: str
    op: str
    value: Scalar
    # Part of equality and hash: 1 == True in Python, yet {"x": 1} and {"x": true} match differently.
    _value_type: type = dataclasses.field(init=False, repr=False)
    _test: Callable[[object], bool] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.op not in COMPARE_OPS:
            raise ValueError(f"unknown comparison operator {self.op!r}")
        object.__setattr__(self, "_value_type", type(self.value))
        test = _positive_test(self.op, self.value)
        object.__setattr__(self, "_test", _negation(test) if self.op == "$ne" else test)

    def matches(self, metadata: Mapping[str, object]) -> bool:
        return self._test(metadata.get(self.field, _MISSING))

    def fields(self) -> frozenset[str]:
        return frozenset((self.field,))


@dataclasses.dataclass(frozen=True, slots=True)
class In(Filter):
    """``{field: {"$in": values}}``, or ``$nin`` when ``negated`` (its exact negation)."""

    field: str
    values: tuple[Scalar, ...] = dataclasses.field(compare=False)
    negated: bool = False
    # One set per type: in a single set True and 1 would collide (equal hashes, equal values), and
    # bool must not match a number.  1 and 1.0 sharing a slot in _numbers is exactly what we want.
    # The sets, not the ordered tuple, take part in equality: $in is a set operation.
    _strings: frozenset[str] = dataclasses.field(init=False, repr=False)
    _numbers: frozenset[int | float] = dataclasses.field(init=False, repr=False)
    _bools: frozenset[bool] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        vs = self.values
        object.__setattr__(self, "_strings", frozenset(v for v in vs if isinstance(v, str)))
        object.__setattr__(self, "_bools", frozenset(v for v in vs if isinstance(v, bool)))
        numbers = frozenset(v for v in vs if isinstance(v, _NUMBER) and not isinstance(v, bool))
        object.__setattr__(self, "_numbers", numbers)

    def matches(self, metadata: Mapping[str, object]) -> bool:
        x = metadata.get(self.field, _MISSING)
        if isinstance(x, str):
            hit = x in self._strings
        elif isinstance(x, bool):
            hit = x in self._bools
        elif isinstance(x, _NUMBER):
            hit = x in self._numbers
        elif isinstance(x, list):
            hit = self._any_string_in(x)
        else:
            hit = False
        return hit != self.negated

    def _any_string_in(self, items: list[object]) -> bool:
        strings = self._strings
        if not strings:
            return False
        try:
            return not strings.isdisjoint(items)
        except TypeError:  # an unhashable element in unvalidated metadata: compare one by one
            return any(isinstance(item, str) and item in strings for item in items)

    def fields(self) -> frozenset[str]:
        return frozenset((self.field,))


@dataclasses.dataclass(frozen=True, slots=True)
class _Logical(Filter):
    """Shared shape of And and Or: children, and their fields computed once, bottom-up."""

    children: tuple[Filter, ...]
    _fields: frozenset[str] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_fields", frozenset().union(*(c.fields() for c in self.children)))

    def fields(self) -> frozenset[str]:
        return self._fields


@dataclasses.dataclass(frozen=True, slots=True)
class And(_Logical):
    """All children match.  With no children it matches everything (what a nested ``{}`` means)."""

    def matches(self, metadata: Mapping[str, object]) -> bool:
        # A plain loop rather than all(<generator>): no generator object per document.
        for child in self.children:
            if not child.matches(metadata):
                return False
        return True


@dataclasses.dataclass(frozen=True, slots=True)
class Or(_Logical):
    """Some child matches (so with no children, nothing does)."""

    def matches(self, metadata: Mapping[str, object]) -> bool:
        for child in self.children:
            if child.matches(metadata):
                return True
        return False


@dataclasses.dataclass(frozen=True, slots=True)
class Not(Filter):
    """The exact negation of ``child``."""

    child: Filter

    def matches(self, metadata: Mapping[str, object]) -> bool:
        return not self.child.matches(metadata)

    def fields(self) -> frozenset[str]:
        return self.child.fields()


def parse_filter(obj: object) -> Filter | None:
    """Validate a JSON filter and build its tree; ``None`` or ``{}`` mean "no filter" and give None.

    Raises:
        InvalidInput: for anything outside the language or its limits, with the path of the bad part
            (e.g. ``filter.$and[1].year: unknown operator "$foo"``).  Nothing else escapes for any
            JSON input: depth is checked before each descent, so deep input cannot recurse far.
    """
    if obj is None or (isinstance(obj, dict) and not obj):
        return None
    return _Parser().filter(obj, "filter", 1)


def _known(operators: tuple[str, ...]) -> str:
    return " ".join(operators)


def _label(key: str) -> str:
    """A key as it appears in a path; an over-long (hence rejected) one is cut to keep messages small."""
    return key if len(key) <= 64 else key[:64] + "..."


class _Parser:
    """One parse: carries the node count, the only state a recursive descent needs."""

    def __init__(self) -> None:
        self.nodes = 0

    def _node(self, node: Filter, path: str) -> Filter:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise InvalidInput(f"{path}: the filter has more than {MAX_NODES} nodes")
        return node

    def _depth(self, depth: int, path: str) -> None:
        if depth > MAX_DEPTH:
            raise InvalidInput(f"{path}: the filter is nested deeper than {MAX_DEPTH} levels")

    def filter(self, obj: object, path: str, depth: int) -> Filter:
        """A filter object: logical operators and fields, several keys being an implicit ``$and``."""
        self._depth(depth, path)
        if not isinstance(obj, dict):
            raise InvalidInput(f"{path}: a filter must be an object, got {json_type_name(obj)}")
        parts: list[Filter] = []
        for key, value in obj.items():
            if not isinstance(key, str):
                raise InvalidInput(f"{path}: keys must be strings, got {json_type_name(key)}")
            sub = f"{path}.{_label(key)}"
            if key in ("$and", "$or"):
                if not isinstance(value, list):
                    raise InvalidInput(f"{sub}: must be a list of filters, got {json_type_name(value)}")
                if not value:
                    raise InvalidInput(f"{sub}: must not be an empty list")
                children = tuple(self.filter(c, f"{sub}[{i}]", depth + 1) for i, c in enumerate(value))
                parts.append(self._node(And(children) if key == "$and" else Or(children), sub))
            elif key == "$not":
                if not isinstance(value, dict):
                    raise InvalidInput(f"{sub}: must be a filter object, got {json_type_name(value)}")
                parts.append(self._node(Not(self.filter(value, sub, depth + 1)), sub))
            elif key in COMPARE_OPS or key in ("$in", "$nin"):
                raise InvalidInput(
                    f'{path}: operator "{key}" must be applied to a field: {{"field": {{"{key}": ...}}}}'
                )
            elif key.startswith("$"):
                raise InvalidInput(
                    f'{path}: unknown operator "{_label(key)}"; known here: {_known(LOGICAL_OPS)}, '
                    f"and on a field: {_known(FIELD_OPS)}"
                )
            else:
                if len(key) > MAX_FIELD_CHARS:
                    raise InvalidInput(f"{path}: field name {_label(key)!r} is over {MAX_FIELD_CHARS} characters")
                if not key:
                    raise InvalidInput(f"{path}: field names must not be empty")
                parts.append(self.field(key, value, sub, depth))
        if len(parts) == 1:
            return parts[0]
        return self._node(And(tuple(parts)), path)

    def field(self, name: str, value: object, path: str, depth: int) -> Filter:
        """``{name: value}``: a plain value is ``$eq``; an object holds one or more operators."""
        self._depth(depth, path)
        if not isinstance(value, dict):
            return self._node(Compare(name, "$eq", self.scalar(value, path)), path)
        if not value:
            raise InvalidInput(f'{path}: an operator object must hold at least one operator, such as "$eq"')
        parts: list[Filter] = []
        for op, arg in value.items():
            sub = f"{path}.{_label(op) if isinstance(op, str) else '?'}"
            if op in COMPARE_OPS:
                parts.append(self._node(Compare(name, op, self.scalar(arg, sub)), sub))
            elif op in ("$in", "$nin"):
                parts.append(self._node(In(name, self.scalars(arg, sub), negated=op == "$nin"), sub))
            elif op == "$not":
                # Mongo's field-level form, {"year": {"$not": {"$gt": 2000}}}.
                if not isinstance(arg, dict):
                    raise InvalidInput(f"{sub}: must be an operator object, got {json_type_name(arg)}")
                parts.append(self._node(Not(self.field(name, arg, sub, depth + 1)), sub))
            elif isinstance(op, str) and op.startswith("$"):
                raise InvalidInput(f'{path}: unknown operator "{_label(op)}"; known on a field: {_known(FIELD_OPS)}')
            else:
                raise InvalidInput(f'{sub}: expected an operator such as "$eq" (metadata holds no objects)')
        if len(parts) == 1:
            return parts[0]
        return self._node(And(tuple(parts)), path)

    @staticmethod
    def scalar(value: object, path: str) -> Scalar:
        """A value to compare with, normalised to its plain type (bool kept apart from int)."""
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidInput(f"{path}: values must be finite numbers, got {value!r}")
            return float(value)
        if isinstance(value, str):
            return str(value)
        if isinstance(value, list):
            raise InvalidInput(f'{path}: a list cannot be compared; use "$in" to match any of several values')
        raise InvalidInput(f"{path}: values must be strings, numbers or booleans, got {json_type_name(value)}")

    def scalars(self, value: object, path: str) -> tuple[Scalar, ...]:
        """The list of an ``$in``/``$nin``: a list (maybe empty) of at most MAX_IN_VALUES scalars."""
        if not isinstance(value, list):
            raise InvalidInput(f"{path}: must be a list of values, got {json_type_name(value)}")
        if len(value) > MAX_IN_VALUES:
            raise InvalidInput(f"{path}: has {len(value)} values; at most {MAX_IN_VALUES} are allowed")
        return tuple(self.scalar(v, f"{path}[{i}]") for i, v in enumerate(value))
