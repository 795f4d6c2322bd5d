"""Errors of shard libraries as users see them: the internal name of a shard library
(``<library id>.s<shard>``) replaced by the library's, and a library's absence told from a document's."""

from __future__ import annotations

import re
from typing import Any

from arrwdb.errors import ArrwdbError, NotFound

_SHARD_LIBRARY = re.compile(r"'[0-9a-f]{32}\.s\d+'")


def renamed(exc: ArrwdbError, entry: dict[str, Any]) -> ArrwdbError:
    """``exc`` with the shard library's internal name in its message replaced by the library's."""
    exc.message = _SHARD_LIBRARY.sub(repr(entry["name"]), exc.message)
    exc.args = (exc.message,)
    return exc


def names_shard(exc: NotFound) -> bool:
    """Whether a NotFound is about a shard library (``<id>.s<n>``), not a document."""
    return bool(re.search(r"library '[0-9a-f]{32}\.s\d+'", exc.message))
