"""The documentation: one source for every measured figure, a README whose first screen stays a first screen,
and links that lead somewhere. Reads text files only (fast; part of the quick loop)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FIGURE = "docs/figures/heldout_predictions.png"

#: Where measured figures live: every figure quoted elsewhere is copied from these, digit for digit.
SOURCES = ("benchmarks/README.md", "weights/README.md")
#: Files that quote figures (CHANGELOG.md is history and exempt). Notebooks: their markdown and comments only.
QUOTING = ("README.md", "scripts/demo.sh", *sorted(p.relative_to(ROOT).as_posix()
                                                   for p in (ROOT / "notebooks").glob("*.py")))
#: Figures quoted that the kit did not measure, with where they come from.
EXTERNAL = {
    "README.md": {"0.8827": "the public seed's private leaderboard score, from the seed kernel itself"},
}

#: A measured figure: a decimal in [0, 1) with 3 or 4 digits after the point (recalls, AUROCs, gaps), not part
#: of a longer number or version string.
FIGURE_RE = re.compile(r"(?<![\d.])0\.\d{3,4}(?![\d])")


def figures(text: str) -> list[str]:
    """The measured figures quoted in ``text``, in order, as written."""
    return FIGURE_RE.findall(text)


def quoted_text(rel: str) -> str:
    """The part of a quoting file that quotes figures: all of it, except a notebook's code (only what follows
    ``#`` on a line: its markdown cells and comments)."""
    text = (ROOT / rel).read_text(encoding="utf-8")
    if rel.startswith("notebooks/"):
        text = "\n".join(line.split("#", 1)[1] for line in text.splitlines() if "#" in line)
    return text


def source_figures() -> set[str]:
    return {f for rel in SOURCES for f in figures((ROOT / rel).read_text(encoding="utf-8"))}


def missing_figures(text: str, known: set[str], allowed=()) -> list[str]:
    """The figures of ``text`` found in none of the sources (``known``), each once, in order."""
    return list(dict.fromkeys(f for f in figures(text) if f not in known and f not in allowed))


def test_the_figure_pattern():
    text = "0.861 (root 0.785), 0.8774, not 0.86 nor 10.861 nor 0.86141 nor v0.3.0, 1,292 crops; (0.578)."
    assert figures(text) == ["0.861", "0.785", "0.8774", "0.578"]


def test_a_made_up_figure_is_caught():
    known = source_figures()
    assert "0.861" in known and "0.877" in known
    assert missing_figures("the shipped model: 0.861 on the slice, 0.9123 elsewhere", known) == ["0.9123"]
    # figures are compared whole, digit for digit: 0.8774 is in the sources, 0.8775 is not
    assert missing_figures("0.8774 0.8775", known) == ["0.8775"]


@pytest.mark.parametrize("rel", QUOTING)
def test_every_figure_quoted_has_a_source(rel):
    missing = missing_figures(quoted_text(rel), source_figures(), EXTERNAL.get(rel, {}))
    assert not missing, (f"{rel} quotes {', '.join(missing)}, found in none of {', '.join(SOURCES)}: copy each "
                         "figure from there digit for digit (or record the measurement there first)")


def test_external_figures_are_still_quoted():
    for rel, allowed in EXTERNAL.items():
        quoted = set(figures(quoted_text(rel)))
        assert set(allowed) <= quoted, f"{rel} no longer quotes {set(allowed) - quoted}: drop it from EXTERNAL"


def test_readme_first_screen():
    first = README.read_text(encoding="utf-8").splitlines()[:45]
    screen = "\n".join(first)
    picture = re.search(r"!\[[^\]]*\]\(" + re.escape(FIGURE) + r"\)", screen)
    assert picture, f"the picture ({FIGURE}) left README.md's first 45 lines"
    for command in ("bash scripts/demo.sh", "bash scripts/test.sh"):
        assert command in screen, f"`{command}` left README.md's first 45 lines"
    assert (ROOT / FIGURE).is_file()
    assert (ROOT / FIGURE).stat().st_size < 300_000, f"{FIGURE} is larger than 300 KB"


def _slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("rel", ["README.md", "docs/kaggle.md"])
def test_links_lead_somewhere(rel):
    doc = ROOT / rel
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists() or (anchor and dest.is_file() and anchor not in _anchors(dest)):
            broken.append(target)
    assert not broken, f"{rel} links to {broken}: no such file or heading"
