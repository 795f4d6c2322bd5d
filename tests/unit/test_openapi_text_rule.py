"""The schema's "not blank" text rule is the server's: a text the server strips to nothing (Python's
str.strip) is one the schema refuses, and the reverse (JSON Schema's regex is ECMA's, whose \\s differs)."""

from __future__ import annotations

import re
import sys

from arrwdb.server.openapi_values import NOT_BLANK


def test_not_blank_is_pythons_strip() -> None:
    pattern = re.compile(NOT_BLANK)
    disagree = [
        hex(code) for code in range(sys.maxunicode + 1) if bool(pattern.search(chr(code))) != bool(chr(code).strip())
    ]
    assert disagree == []
    assert pattern.search(" \u001d\ufeff") and not pattern.search(" \u001d\u0085\u3000")  # U+FEFF is kept by strip
