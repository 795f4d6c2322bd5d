"""Every relative link in README.md and docs/**/*.md resolves to a file or folder of the repository.

Links are ``[text](path)`` (images too) and ``<path>``; web and mail links, and links to an anchor of
the same page, are not checked.  Code (fenced blocks and inline spans) is not scanned.  A target that
exists here but is git-ignored does not count: a clone would not have it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
ANGLE_LINK = re.compile(r"<([^<>\s]+)>")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def relative_links(text: str) -> list[str]:
    """The relative link targets of a markdown text, without their ``#anchor``."""
    text = INLINE_CODE.sub("", FENCE.sub("", text))
    targets = INLINE_LINK.findall(text)
    # ``<path>`` autolinks: only those that look like a path, not an HTML tag such as <br> or <img ...>.
    targets += [t for t in ANGLE_LINK.findall(text) if "/" in t or "." in t or EXTERNAL.match(t)]
    links = []
    for target in targets:
        if EXTERNAL.match(target) or target.startswith("#"):
            continue
        path = unquote(target.split("#", 1)[0].split("?", 1)[0])
        if path:
            links.append(path)
    return links


def all_links() -> list[tuple[Path, str]]:
    return [(doc, link) for doc in markdown_files() for link in relative_links(doc.read_text(encoding="utf-8"))]


def ignored_by_git(path: Path) -> bool:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return False
    result = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", str(path)], capture_output=True, check=False)
    return result.returncode == 0


def test_the_checker_finds_links() -> None:
    links = all_links()
    assert len(links) >= 10, f"only {len(links)} relative links found: the link pattern is broken"
    assert any(doc.name == "README.md" and link == "docs/ARCHITECTURE.md" for doc, link in links)


def test_the_checker_reads_both_forms_and_skips_the_rest() -> None:
    text = (
        "[a](docs/A.md#part) ![img](img/b.png) <docs/C.md> [web](https://x.org) <https://x.org> "
        "[mail](mailto:a@b.c) [here](#anchor) `[code](not/a/link.md)` <br>\n```\n[fenced](no.md)\n```\n"
    )
    assert relative_links(text) == ["docs/A.md", "img/b.png", "docs/C.md"]


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for link in relative_links(doc.read_text(encoding="utf-8")):
        target = (ROOT / link.lstrip("/")) if link.startswith("/") else (doc.parent / link)
        target = target.resolve()
        if not target.exists():
            broken.append(f"{link} (missing)")
        elif not target.is_relative_to(ROOT):
            broken.append(f"{link} (outside the repository)")
        elif ignored_by_git(target):
            broken.append(f"{link} (git-ignored: not in a clone)")
    assert not broken, f"{doc.relative_to(ROOT)}: links that do not resolve: {broken}"
