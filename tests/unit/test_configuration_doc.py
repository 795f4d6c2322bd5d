"""Every setting of ``Settings`` is documented in docs/CONFIGURATION.md as ``ARRWDB_<NAME>``."""

from __future__ import annotations

import re
from pathlib import Path

from arrwdb.config import Settings

CONFIGURATION = Path(__file__).resolve().parents[2] / "docs" / "CONFIGURATION.md"


def documented_variables() -> set[str]:
    return set(re.findall(r"ARRWDB_[A-Z0-9_]+", CONFIGURATION.read_text(encoding="utf-8")))


def test_every_setting_is_documented() -> None:
    fields = Settings.model_fields
    assert len(fields) >= 20, "Settings lost its fields: this test would pass vacuously"
    missing = sorted(
        f"ARRWDB_{name.upper()}" for name in fields if f"ARRWDB_{name.upper()}" not in documented_variables()
    )
    assert not missing, f"settings missing from docs/CONFIGURATION.md: {missing}"


def test_every_setting_has_a_section() -> None:
    text = CONFIGURATION.read_text(encoding="utf-8")
    headings = {
        name
        for heading in re.findall(r"^#+ (.*)$", text, re.MULTILINE)
        for name in re.findall(r"`(ARRWDB_[A-Z0-9_]+)`", heading)
    }
    missing = sorted(
        f"ARRWDB_{name.upper()}" for name in Settings.model_fields if f"ARRWDB_{name.upper()}" not in headings
    )
    assert not missing, f"settings without a section (### `ARRWDB_...`) in docs/CONFIGURATION.md: {missing}"


def test_the_environment_prefix_is_the_documented_one() -> None:
    assert Settings.model_config["env_prefix"] == "ARRWDB_"
