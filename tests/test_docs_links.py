"""Every relative link and #anchor in README.md and docs/*.md resolves, and every docs page is linked
from the README (the front page is short; nothing moved to docs/ may become unreachable)."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from lib.paths import PROJECT_ROOT

PAGES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
_CODE = re.compile(r"(`+).+?\1", re.S)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def links(text: str) -> list[str]:
    """Targets of inline links and images, outside fenced blocks and code spans."""
    text = _CODE.sub("", _FENCE.sub("", text))
    return _LINK.findall(text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (code marks, links' brackets),
    spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings, duplicates numbered as GitHub does (x, x-1, x-2)."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", _FENCE.sub("", text), re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(page: Path, root: Path = PROJECT_ROOT) -> list[str]:
    """'target: why' for each relative link of ``page`` that leads nowhere (or out of ``root``)."""
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in links(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:: not checked offline
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / unquote(file)).resolve() if file else page
        if not dest.is_relative_to(root.resolve()):
            broken.append(f"{target}: leaves the project")
        elif not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and unquote(anchor) not in anchors(dest.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading with that anchor in {dest.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(PROJECT_ROOT).as_posix() for p in PAGES])
def test_every_relative_link_resolves(page):
    assert links(page.read_text(encoding="utf-8")), f"{page.name} links nowhere: is the parser reading it?"
    assert not broken_links(page)


def test_every_docs_page_is_linked_from_the_readme():
    docs = {p.relative_to(PROJECT_ROOT).as_posix() for p in PAGES[1:]}
    assert len(docs) >= 5  # the README's detail lives in docs/
    linked = {t.partition("#")[0] for t in links((PROJECT_ROOT / "README.md").read_text(encoding="utf-8"))}
    assert docs <= linked, f"docs pages the README does not link: {sorted(docs - linked)}"


def test_the_checker_finds_a_missing_file_a_missing_anchor_and_a_way_out(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "there.md").write_text("# Main table\n\n## `ed32` and the anchor\n\n## Main table\n", encoding="utf-8")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Page\n\n[ok](../there.md#main-table) [ok](../there.md#main-table-1) [ok](../there.md#ed32-and-the-anchor)\n"
        "[ok](#page) ![ok](../there.md) [web](https://example.org/x) `[in code](nowhere.md)`\n"
        "```\n[in a fence](nowhere.md)\n```\n"
        "[gone](missing.md) [bad anchor](../there.md#status) [bad here](#nothing) [out](../../elsewhere.md)\n",
        encoding="utf-8")
    assert broken_links(page, tmp_path) == [
        "missing.md: no such file", "../there.md#status: no heading with that anchor in there.md",
        "#nothing: no heading with that anchor in page.md", "../../elsewhere.md: leaves the project"]
