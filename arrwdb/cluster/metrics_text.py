"""Several processes' Prometheus text as one exposition: each sample labelled with the process it
came from (``engine="arrwdb-engine-1"``, ``engine="frontend"``), each family's samples under one
``# HELP`` / ``# TYPE`` header (a family may appear once in a scrape)."""

from __future__ import annotations

import re

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?( .*)$")


def labelled(line: str, label: str, value: str) -> str:
    """A sample line with ``label="value"`` added first among its labels."""
    match = _SAMPLE.match(line)
    if match is None:
        return line
    name, labels, rest = match.groups()
    inner = labels[1:-1] if labels else ""
    joined = f'{label}="{value}"' + (f",{inner}" if inner else "")
    return f"{name}{{{joined}}}{rest}"


def merge(sources: list[tuple[str, bytes]], label: str = "engine") -> bytes:
    """``sources``: (value of ``label``, Prometheus text) pairs; one text back."""
    headers: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    loose: list[str] = []
    for value, text in sources:
        family = None
        for line in text.decode().splitlines():
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                family = line.split(" ", 3)[2]
                kept = headers.setdefault(family, [])
                if not any(h.split(" ", 2)[1] == line.split(" ", 2)[1] for h in kept):
                    kept.append(line)
                samples.setdefault(family, [])
            elif line and not line.startswith("#"):
                target = samples[family] if family is not None else loose
                target.append(labelled(line, label, value))
    out = [line for family in headers for line in (*headers[family], *samples[family])]
    return ("\n".join(out + loose) + "\n").encode()
