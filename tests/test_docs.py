"""The README and docs/ stay navigable: every relative link resolves, and the README keeps the
shape a new user needs (title, then the set-up commands; install, quick start and the model guide
near the top; at most 250 lines)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted([README, *(ROOT / "docs").rglob("*.md")])

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
# [text](target) and ![alt](target); the target ends at whitespace (a title may follow) or ")"
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEF = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.M)


def prose(text: str) -> str:
    """The markdown without fenced code, HTML comments and inline code, where links are not links."""
    return _CODE_SPAN.sub("", _COMMENT.sub("", _FENCE.sub("", text)))


def relative_links(text: str) -> list[str]:
    body = prose(text)
    targets = _LINK.findall(body) + _REF_DEF.findall(body)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I) and not t.startswith("#")]


def resolve(doc: Path, target: str) -> Path:
    path = target.split("#", 1)[0].split("?", 1)[0]
    return (ROOT / path.lstrip("/")) if path.startswith("/") else (doc.parent / path)


def test_link_parser_finds_links_and_skips_code():
    text = ("See [a](docs/a.md), ![img](fig.png \"title\"), [web](https://x.org), [anchor](#top),\n"
            "[b](b.md#part) and `[not](code.md)`.\n<!-- [hidden](hidden.md) -->\n"
            "```\n[fenced](fenced.md)\n```\n[ref]: ref.md\n")
    assert relative_links(text) == ["docs/a.md", "fig.png", "b.md#part", "ref.md"]


def test_docs_exist():
    names = {p.relative_to(ROOT).as_posix() for p in DOCS}
    for required in ["README.md", "docs/models.md", "docs/performance.md", "docs/training.md",
                     "docs/architecture.md", "docs/research/yonos.md", "docs/research/colearn.md",
                     "docs/results/INDEX.md"]:
        assert required in names, required


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc: Path):
    broken = [t for t in relative_links(doc.read_text(encoding="utf-8")) if not resolve(doc, t).exists()]
    assert not broken, f"{doc.relative_to(ROOT)}: links that do not resolve: {broken}"


def test_readme_shape():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README has {len(lines)} lines (at most 250)"
    assert lines[0].startswith("# "), "the README opens with its title"
    first_code = next(i for i, line in enumerate(lines) if line.startswith("```"))
    assert all(not line.strip() for line in lines[1:first_code]), "the set-up commands come right under the title"
    block = lines[first_code + 1:lines.index("```", first_code + 1)]
    assert block and all("scripts/setup.sh" in line for line in block), "the first commands are the set-up commands"
    headings = {line[3:].strip().lower(): i + 1 for i, line in enumerate(lines) if line.startswith("## ")}
    for section in ["install", "quick start", "which model"]:
        assert section in headings, f"README has no '## {section.title()}' section"
        assert headings[section] < 80, f"'{section}' starts at line {headings[section]} (must be above 80)"


def test_every_results_folder_is_indexed():
    results = ROOT / "docs" / "results"
    index = (results / "INDEX.md").read_text(encoding="utf-8")
    folders = [p.name for p in results.iterdir() if p.is_dir() and any(p.rglob("*.md")) or
               p.is_dir() and any(p.rglob("*.jsonl"))]
    missing = [f for f in folders if f"`{f}/`" not in index]
    assert not missing, f"results folders missing from docs/results/INDEX.md: {missing}"
