"""The docs and code are self-contained: no reference to a specification outside the repository, and every
"methods.md §N" they cite exists in docs/methods.md."""

from __future__ import annotations

import re

from conftest import ROOT

SOURCES = [*ROOT.glob("src/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("docs/*.md"),
           *ROOT.glob("benchmarks/*"), *ROOT.glob("scripts/**/*"), ROOT / "README.md", ROOT / "main.py"]
OUTSIDE = ("METHODS" + ".md", "shared" + "/spec")  # spelled in parts so that this file does not cite them


def texts():
    for path in SOURCES:
        if path.is_file():
            yield path, path.read_text(encoding="utf-8")


def test_no_reference_to_an_outside_specification():
    offenders = [str(p.relative_to(ROOT)) for p, text in texts() if any(o in text for o in OUTSIDE)]
    assert offenders == []


def test_every_cited_section_exists():
    headings = set(re.findall(r"^### (§\d+) ", (ROOT / "docs" / "methods.md").read_text(), flags=re.M))
    assert headings == {f"§{i}" for i in range(1, 9)}
    cite = re.compile(r"methods\.md(?:\))? (§\d+)")
    cited = {(str(p.relative_to(ROOT)), m) for p, text in texts() for m in cite.findall(text)}
    assert cited and all(section in headings for _, section in cited), sorted(cited)
