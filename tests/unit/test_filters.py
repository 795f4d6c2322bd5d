"""Unit tests of arrwdb.library.filters: parsing, every operator, the API.md type rules, limits, negation laws."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrwdb.errors import InvalidInput
from arrwdb.library.filters import (
    MAX_DEPTH,
    MAX_IN_VALUES,
    MAX_NODES,
    And,
    Compare,
    Filter,
    In,
    Not,
    Or,
    parse_filter,
)
from arrwdb.library.metadata import validate_metadata

INF = float("inf")
NAN = float("nan")


def match(spec: object, metadata: dict[str, Any]) -> bool:
    node = parse_filter(spec)
    assert node is not None
    return node.matches(metadata)


def reject(spec: object, fragment: str) -> str:
    """Parsing must fail with InvalidInput (422) whose message contains ``fragment``."""
    with pytest.raises(InvalidInput) as info:
        parse_filter(spec)
    assert fragment in info.value.message, info.value.message
    assert info.value.status == 422
    return info.value.message


# --- parsing into the tree ------------------------------------------------------------------------


def test_no_filter() -> None:
    assert parse_filter(None) is None
    assert parse_filter({}) is None


def test_tree_shapes() -> None:
    assert parse_filter({"a": 1}) == Compare("a", "$eq", 1)
    assert parse_filter({"a": {"$lte": "x"}}) == Compare("a", "$lte", "x")
    # Several operators on one field, and several keys in one object, are an implicit $and.
    assert parse_filter({"a": {"$gt": 1, "$lt": 5}}) == And((Compare("a", "$gt", 1), Compare("a", "$lt", 5)))
    assert parse_filter({"a": 1, "b": "x"}) == And((Compare("a", "$eq", 1), Compare("b", "$eq", "x")))
    assert parse_filter({"a": {"$in": [1, "x"]}}) == In("a", (1, "x"))
    assert parse_filter({"a": {"$nin": []}}) == In("a", (), negated=True)
    assert parse_filter({"$not": {"a": True}}) == Not(Compare("a", "$eq", True))
    assert parse_filter({"$or": [{"a": 1}]}) == Or((Compare("a", "$eq", 1),))
    assert parse_filter({"a": {"$not": {"$gt": 2}}}) == Not(Compare("a", "$gt", 2))


def test_equality_tells_bool_from_int() -> None:
    # 1 == True in Python, but the two filters match different documents: their trees must differ.
    assert Compare("a", "$eq", 1) != Compare("a", "$eq", True)
    assert In("a", (1,)) != In("a", (True,))
    assert In("a", (1, "x")) == In("a", ("x", 1))  # $in is a set
    assert len({parse_filter({"a": 1}), parse_filter({"a": 1}), parse_filter({"a": True})}) == 2


def test_nodes_are_frozen() -> None:
    node = parse_filter({"a": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.field = "b"  # type: ignore[union-attr,misc]


def test_unknown_compare_op_in_constructor() -> None:
    with pytest.raises(ValueError, match="unknown comparison operator"):
        Compare("a", "$foo", 1)


def test_fields() -> None:
    node = parse_filter({"a": 1, "$or": [{"b": {"$in": [1]}}, {"$not": {"c": {"$gt": 0}}}], "d": {"$ne": 2}})
    assert isinstance(node, Filter)
    assert node.fields() == frozenset({"a", "b", "c", "d"})
    assert Compare("x", "$eq", 1).fields() == frozenset({"x"})
    assert And(()).fields() == frozenset()


def test_empty_nested_filter_matches_everything() -> None:
    assert match({"$and": [{}]}, {})
    assert match({"$or": [{}, {"a": 1}]}, {"a": 2})
    assert not match({"$not": {}}, {"a": 1})


# --- every operator, and the type rules of API.md --------------------------------------------------

DOC = {"n": 5, "f": 2.5, "s": "banana", "t": True, "tags": ["red", "green"], "none": []}

CASES: list[tuple[object, bool]] = [
    # $eq and the plain-value shorthand
    ({"n": 5}, True),
    ({"n": {"$eq": 5}}, True),
    ({"n": 5.0}, True),  # int and float compare as numbers
    ({"f": 2.5}, True),
    ({"n": 6}, False),
    ({"s": "banana"}, True),
    ({"s": "Banana"}, False),
    ({"t": True}, True),
    ({"t": False}, False),
    # $ne
    ({"n": {"$ne": 5}}, False),
    ({"n": {"$ne": 4}}, True),
    ({"s": {"$ne": "apple"}}, True),
    # ranges on numbers, at and around the boundaries
    ({"n": {"$gt": 4}}, True),
    ({"n": {"$gt": 5}}, False),
    ({"n": {"$gte": 5}}, True),
    ({"n": {"$gte": 5.5}}, False),
    ({"n": {"$lt": 5.5}}, True),
    ({"n": {"$lt": 5}}, False),
    ({"n": {"$lte": 5}}, True),
    ({"f": {"$gt": 2}}, True),
    ({"f": {"$lte": 2}}, False),
    # ranges on strings are lexicographic
    ({"s": {"$gt": "apple"}}, True),
    ({"s": {"$gt": "cherry"}}, False),
    ({"s": {"$gte": "banana"}}, True),
    ({"s": {"$lt": "banana!"}}, True),
    ({"s": {"$lte": "Banana"}}, False),  # "B" < "b"
    # $in / $nin
    ({"n": {"$in": [1, 5]}}, True),
    ({"n": {"$in": [5.0]}}, True),
    ({"f": {"$in": [2.5, "x"]}}, True),
    ({"n": {"$in": [1, 2]}}, False),
    ({"n": {"$in": []}}, False),
    ({"s": {"$in": ["apple", "banana"]}}, True),
    ({"t": {"$in": [True]}}, True),
    ({"n": {"$nin": [1, 5]}}, False),
    ({"n": {"$nin": [1, 2]}}, True),
    ({"n": {"$nin": []}}, True),
    # logical operators
    ({"$and": [{"n": 5}, {"s": "banana"}]}, True),
    ({"$and": [{"n": 5}, {"s": "apple"}]}, False),
    ({"$or": [{"n": 6}, {"s": "banana"}]}, True),
    ({"$or": [{"n": 6}, {"s": "apple"}]}, False),
    ({"$not": {"n": 5}}, False),
    ({"$not": {"n": 6}}, True),
    ({"n": 5, "s": "apple"}, False),  # implicit $and
    ({"n": {"$gt": 1, "$lt": 9}}, True),
    ({"n": {"$gt": 1, "$lt": 5}}, False),
    ({"n": {"$not": {"$gt": 9}}}, True),
    ({"$or": [{"$and": [{"n": {"$gte": 5}}, {"$not": {"t": False}}]}, {"x": 1}]}, True),
]


@pytest.mark.parametrize(("spec", "expected"), CASES)
def test_operators(spec: object, expected: bool) -> None:
    assert match(spec, DOC) is expected


TYPE_CASES: list[tuple[object, object, bool]] = [
    # bool is not a number, in either direction and for every operator
    ({"a": 1}, True, False),
    ({"a": 0}, False, False),
    ({"a": True}, 1, False),
    ({"a": False}, 0, False),
    ({"a": 1.0}, True, False),
    ({"a": {"$gt": 0}}, True, False),
    ({"a": {"$gte": 1}}, True, False),
    ({"a": {"$lt": 2}}, False, False),
    ({"a": {"$lte": True}}, 0, False),
    ({"a": {"$in": [1]}}, True, False),
    ({"a": {"$in": [True]}}, 1, False),
    ({"a": {"$in": [0, 1]}}, False, False),
    ({"a": {"$ne": 1}}, True, True),
    ({"a": {"$nin": [1]}}, True, True),
    # bools equal bools only, and have no order
    ({"a": True}, True, True),
    ({"a": {"$in": [False]}}, False, True),
    ({"a": {"$gt": False}}, True, False),
    ({"a": {"$gte": True}}, True, False),
    ({"a": {"$lte": True}}, True, False),
    # int and float compare as numbers, exactly
    ({"a": 1}, 1.0, True),
    ({"a": 1.0}, 1, True),
    ({"a": {"$in": [1]}}, 1.0, True),
    ({"a": {"$in": [1.0]}}, 1, True),
    ({"a": {"$gt": 1}}, 1.5, True),
    ({"a": {"$lte": 1.5}}, 1, True),
    ({"a": 2**53 + 1}, float(2**53), False),
    ({"a": 2**70}, 2**70, True),
    # strings and numbers never meet
    ({"a": "1"}, 1, False),
    ({"a": 1}, "1", False),
    ({"a": {"$gt": 0}}, "5", False),
    ({"a": {"$lt": "z"}}, 1, False),
    ({"a": {"$in": ["1"]}}, 1, False),
    ({"a": {"$in": ["True", "1"]}}, True, False),
    ({"a": {"$ne": "1"}}, 1, True),
    # a list of strings: $eq/$in test membership, ranges are false
    ({"a": "x"}, ["x", "y"], True),
    ({"a": "z"}, ["x", "y"], False),
    ({"a": "x"}, [], False),
    ({"a": {"$ne": "x"}}, ["x", "y"], False),
    ({"a": {"$ne": "z"}}, ["x", "y"], True),
    ({"a": {"$in": ["z", "y"]}}, ["x", "y"], True),
    ({"a": {"$in": ["z"]}}, ["x", "y"], False),
    ({"a": {"$in": []}}, ["x"], False),
    ({"a": {"$in": [1, True]}}, ["1", "True"], False),
    ({"a": {"$nin": ["z", "y"]}}, ["x", "y"], False),
    ({"a": {"$nin": ["z"]}}, ["x", "y"], True),
    ({"a": {"$gt": "a"}}, ["x"], False),
    ({"a": {"$gte": "a"}}, ["x"], False),
    ({"a": {"$lt": "z"}}, ["x"], False),
    ({"a": {"$lte": "z"}}, ["x"], False),
    ({"a": 1}, ["1"], False),
    ({"a": "x"}, "xyz", False),  # a string field is not a list of characters
]


@pytest.mark.parametrize(("spec", "value", "expected"), TYPE_CASES)
def test_type_rules(spec: object, value: object, expected: bool) -> None:
    assert match(spec, {"a": value}) is expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"a": 1}, False),
        ({"a": "x"}, False),
        ({"a": True}, False),
        ({"a": {"$gt": 0}}, False),
        ({"a": {"$gte": ""}}, False),
        ({"a": {"$lt": 0}}, False),
        ({"a": {"$lte": "z"}}, False),
        ({"a": {"$in": [1, "x", True]}}, False),
        # the negations are exact: true where the positive form is false
        ({"a": {"$ne": 1}}, True),
        ({"a": {"$nin": [1, "x"]}}, True),
        ({"$not": {"a": {"$gt": 0}}}, True),
        ({"a": {"$not": {"$lt": 0}}}, True),
    ],
)
def test_missing_field(spec: object, expected: bool) -> None:
    assert match(spec, {"b": 1}) is expected
    assert match(spec, {}) is expected


def test_works_on_validated_metadata() -> None:
    meta = validate_metadata({"year": 2001, "genre": ["drama", "war"], "rated": True, "score": 7.5})
    assert match({"year": {"$gte": 2000}, "genre": "war", "rated": True, "score": {"$gt": 7}}, meta)
    assert not match({"$or": [{"genre": {"$in": ["comedy"]}}, {"year": {"$lt": 2000}}]}, meta)


# --- rejections ------------------------------------------------------------------------------------

REJECTIONS: list[tuple[object, str]] = [
    ("year > 2000", "filter: a filter must be an object, got string"),
    ([{"a": 1}], "filter: a filter must be an object, got array"),
    (1, "filter: a filter must be an object, got number"),
    ({1: 2}, "filter: keys must be strings"),
    ({"$and": {"a": 1}}, "filter.$and: must be a list of filters, got object"),
    ({"$and": []}, "filter.$and: must not be an empty list"),
    ({"$or": "a"}, "filter.$or: must be a list of filters, got string"),
    ({"$or": []}, "filter.$or: must not be an empty list"),
    ({"$and": [{"a": 1}, "b"]}, "filter.$and[1]: a filter must be an object, got string"),
    ({"$not": [{"a": 1}]}, "filter.$not: must be a filter object, got array"),
    ({"$not": None}, "filter.$not: must be a filter object, got null"),
    ({"$foo": 1}, 'filter: unknown operator "$foo"'),
    ({"$and": [{"a": 1}, {"year": {"$foo": 1}}]}, 'filter.$and[1].year: unknown operator "$foo"'),
    ({"$or": [{"a": {"$regex": "x"}}]}, 'filter.$or[0].a: unknown operator "$regex"'),
    ({"$gt": 1}, 'filter: operator "$gt" must be applied to a field'),
    ({"$in": [1]}, 'filter: operator "$in" must be applied to a field'),
    ({"a": {}}, "filter.a: an operator object must hold at least one operator"),
    ({"a": {"b": 1}}, 'filter.a.b: expected an operator such as "$eq"'),
    ({"a": {"$gt": 1, "b": 1}}, 'filter.a.b: expected an operator such as "$eq"'),
    ({"a": {"$in": 1}}, "filter.a.$in: must be a list of values, got number"),
    ({"a": {"$nin": "x"}}, "filter.a.$nin: must be a list of values, got string"),
    ({"a": {"$in": list(range(MAX_IN_VALUES + 1))}}, "filter.a.$in: has 1025 values"),
    ({"a": {"$in": [1, [2]]}}, 'filter.a.$in[1]: a list cannot be compared; use "$in"'),
    ({"a": {"$nin": ["x", None]}}, "filter.a.$nin[1]: values must be strings, numbers or booleans, got null"),
    (
        {"a": {"$in": [{"$eq": 1}]}},
        "filter.a.$in[0]: values must be strings, numbers or booleans, got object",
    ),
    ({"a": None}, "filter.a: values must be strings, numbers or booleans, got null"),
    ({"a": {"$eq": None}}, "filter.a.$eq: values must be strings, numbers or booleans, got null"),
    ({"a": {"$eq": {"$eq": 1}}}, "filter.a.$eq: values must be strings, numbers or booleans, got object"),
    ({"a": ["x", "y"]}, 'filter.a: a list cannot be compared; use "$in"'),
    ({"a": {"$gt": [1]}}, "filter.a.$gt: a list cannot be compared"),
    ({"a": NAN}, "filter.a: values must be finite numbers"),
    ({"a": INF}, "filter.a: values must be finite numbers"),
    ({"a": {"$lt": -INF}}, "filter.a.$lt: values must be finite numbers"),
    ({"a": {"$in": [1.0, NAN]}}, "filter.a.$in[1]: values must be finite numbers"),
    ({"a": {"$not": 1}}, "filter.a.$not: must be an operator object, got number"),
    ({"": 1}, "filter: field names must not be empty"),
    ({"$and": [{"": 1}]}, "filter.$and[0]: field names must not be empty"),
    ({"f" * 257: 1}, "filter: field name 'fff"),
    ({"$or": [{"$not": {"b": {"$gte": True, "$in": 3}}}]}, "filter.$or[0].$not.b.$in: must be a list"),
]


@pytest.mark.parametrize(("spec", "fragment"), REJECTIONS)
def test_rejections(spec: object, fragment: str) -> None:
    reject(spec, fragment)


def test_field_name_length_bound() -> None:
    assert parse_filter({"f" * 256: 1}) == Compare("f" * 256, "$eq", 1)
    assert len(reject({"f" * 100_000: 1}, "over 256 characters")) < 300  # the name is cut in the message


def test_in_size_bound() -> None:
    node = parse_filter({"a": {"$in": list(range(MAX_IN_VALUES))}})
    assert node is not None and node.matches({"a": MAX_IN_VALUES - 1})


def nested_not(levels: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"a": 1}
    for _ in range(levels):
        spec = {"$not": spec}
    return spec


def test_depth_bound() -> None:
    # The outermost object is level 1, so MAX_DEPTH - 1 $not wrappers are the deepest allowed.
    node = parse_filter(nested_not(MAX_DEPTH - 1))
    assert node is not None and node.matches({"a": 2}) is ((MAX_DEPTH - 1) % 2 == 1)
    reject(nested_not(MAX_DEPTH), f"nested deeper than {MAX_DEPTH} levels")


def test_very_deep_input_is_invalid_input_not_recursion_error() -> None:
    reject(nested_not(10_000), "nested deeper than 32 levels")
    spec: Any = {"a": 1}
    for _ in range(10_000):
        spec = {"$and": [{"b": 2}, spec]}
    reject(spec, "filter.$and[1].$and[1].")
    ops: Any = {"$eq": 1}
    for _ in range(10_000):
        ops = {"$not": ops}
    reject({"a": ops}, "filter.a.$not.$not")
    values: Any = 1
    for _ in range(10_000):
        values = [values]
    reject({"a": {"$in": values}}, "filter.a.$in[0]: a list cannot be compared")


def test_node_count_bound() -> None:
    node = parse_filter({"$or": [{"a": i} for i in range(MAX_NODES - 1)]})  # 1023 leaves + the $or
    assert node is not None and node.matches({"a": 1000})
    reject({"$or": [{"a": i} for i in range(MAX_NODES)]}, f"more than {MAX_NODES} nodes")
    reject({f"f{i}": i for i in range(MAX_NODES + 1)}, f"more than {MAX_NODES} nodes")
    reject({"$and": [{}] * 100_000}, f"more than {MAX_NODES} nodes")
    reject({"a": {"$gt": 0, "$lt": 9}, "$and": [{"$or": [{"b": 1}] * 600}] * 2}, f"more than {MAX_NODES}")


# --- properties: an independent reference evaluator and the negation laws ---------------------------


def _kind(x: object) -> str:
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int | float):
        return "number"
    return type(x).__name__


def ref_compare(op: str, x: object, v: Any) -> bool:
    """API.md's rules written out directly, to check the optimised closures against."""
    if op == "$ne":
        return not ref_compare("$eq", x, v)
    if op == "$eq":
        if isinstance(x, list):
            return isinstance(v, str) and v in x
        return _kind(x) == _kind(v) and x == v
    if _kind(x) != _kind(v) or _kind(x) not in ("number", "str"):
        return False
    return {"$gt": x > v, "$gte": x >= v, "$lt": x < v, "$lte": x <= v}[op]  # type: ignore[operator]


def ref_matches(spec: dict[str, Any], meta: dict[str, Any]) -> bool:
    for key, value in spec.items():
        if key == "$and":
            ok = all(ref_matches(c, meta) for c in value)
        elif key == "$or":
            ok = any(ref_matches(c, meta) for c in value)
        elif key == "$not":
            ok = not ref_matches(value, meta)
        else:
            ok = ref_field(meta.get(key, _REF_MISSING), value)
        if not ok:
            return False
    return True


_REF_MISSING = object()  # of no kind that a filter value has, so every comparison with it is false


def ref_field(x: object, value: Any) -> bool:
    if not isinstance(value, dict):
        return ref_compare("$eq", x, value)
    for op, arg in value.items():
        if op == "$in":
            ok = any(ref_compare("$eq", x, v) for v in arg)
        elif op == "$nin":
            ok = not any(ref_compare("$eq", x, v) for v in arg)
        elif op == "$not":
            ok = not ref_field(x, arg)
        else:
            ok = ref_compare(op, x, arg)
        if not ok:
            return False
    return True


# Small domains so that generated filters and metadata often meet: equal values, 1 vs 1.0 vs True.
FIELDS = st.sampled_from(["a", "b", "c"])
WORDS = st.sampled_from(["", "x", "y", "z", "1", "True"])
SCALARS = st.one_of(st.booleans(), st.integers(-2, 2), st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0]), WORDS)
META = st.dictionaries(FIELDS, st.one_of(SCALARS, st.lists(WORDS, max_size=3)), max_size=3)
CMP_OPS = st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"])
OPERATOR_OBJECTS = st.one_of(
    st.builds(lambda op, v: {op: v}, CMP_OPS, SCALARS),
    st.builds(lambda op, vs: {op: vs}, st.sampled_from(["$in", "$nin"]), st.lists(SCALARS, max_size=4)),
)
LEAVES = st.one_of(
    st.builds(lambda f, v: {f: v}, FIELDS, SCALARS),
    st.builds(lambda f, o: {f: o}, FIELDS, OPERATOR_OBJECTS),
    st.builds(lambda f, o1, o2: {f: {**o1, **o2}}, FIELDS, OPERATOR_OBJECTS, OPERATOR_OBJECTS),
    st.builds(lambda f, o: {f: {"$not": o}}, FIELDS, OPERATOR_OBJECTS),
)
FILTERS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.builds(lambda cs: {"$and": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda cs: {"$or": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda c: {"$not": c}, inner),
        st.builds(lambda a, b: {**a, **b}, inner, inner),
    ),
    max_leaves=8,
)


@settings(max_examples=300)
@given(FILTERS, META)
def test_matches_reference_evaluator(spec: dict[str, Any], meta: dict[str, Any]) -> None:
    node = parse_filter(spec)
    assert node is not None
    assert node.matches(meta) is ref_matches(spec, meta)


@settings(max_examples=300)
@given(FILTERS, META)
def test_not_is_exact_negation(spec: dict[str, Any], meta: dict[str, Any]) -> None:
    node = parse_filter(spec)
    assert node is not None
    assert match({"$not": spec}, meta) is (not node.matches(meta))
    assert Not(node).matches(meta) is (not node.matches(meta))


@given(FIELDS, SCALARS, META)
def test_ne_is_exact_negation_of_eq(field: str, value: object, meta: dict[str, Any]) -> None:
    eq = match({field: {"$eq": value}}, meta)
    assert match({field: {"$ne": value}}, meta) is (not eq)
    assert match({field: value}, meta) is eq


@given(FIELDS, st.lists(SCALARS, max_size=5), META)
def test_nin_is_exact_negation_of_in(field: str, values: list[object], meta: dict[str, Any]) -> None:
    hit = match({field: {"$in": values}}, meta)
    assert match({field: {"$nin": values}}, meta) is (not hit)
    # and $in is the $or of $eq over its values
    assert hit is any(match({field: v}, meta) for v in values)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["$and", "$or", "$not", "$eq", "$gt", "$in", "$nin", "$foo", "a", "", "b"])
            | st.text(max_size=3),
            inner,
            max_size=3,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300)
@given(JSON, META)
def test_arbitrary_json_parses_or_is_invalid_input(spec: object, meta: dict[str, Any]) -> None:
    try:
        node = parse_filter(spec)
    except InvalidInput as e:
        assert e.message.startswith("filter")
        return
    if node is not None:
        assert isinstance(node.matches(meta), bool)
        assert node.fields() <= frozenset(_all_keys(spec))


def _all_keys(obj: object) -> set[str]:
    if isinstance(obj, dict):
        return set(obj).union(*(_all_keys(v) for v in obj.values()))
    if isinstance(obj, list):
        return set().union(*(_all_keys(v) for v in obj))
    return set()


def test_unknown_operators_list_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_filter({"year": {"$regex": "x"}})
    assert info.value.message == (
        'filter.year: unknown operator "$regex"; known on a field: $eq $ne $gt $gte $lt $lte $in $nin $not'
    )
    with pytest.raises(InvalidInput) as info:
        parse_filter({"$nor": []})
    assert info.value.message.endswith(
        "known here: $and $or $not, and on a field: $eq $ne $gt $gte $lt $lte $in $nin $not"
    )
