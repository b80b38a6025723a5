"""The documentation site builds with `mkdocs build --strict` (mkdocs.yml's validation makes a broken link or
anchor, and a page left out of the nav, a failure), the nav and docs/ hold the same pages, and README stays
short: the detail is on the pages it links to."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_MAX_LINES = 250


def nav_pages(nav: list) -> list[str]:
    """The pages a mkdocs nav names, sections flattened."""
    pages = []
    for entry in nav:
        target = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(target) if isinstance(target, list) else [target]
    return pages


def test_the_site_builds_strict(tmp_path):
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                           cwd=ROOT, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr


def test_the_nav_names_every_page_and_only_pages():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["docs_dir"] == "docs"
    nav = nav_pages(config["nav"])
    assert len(nav) == len(set(nav)), f"a page is in the nav twice: {nav}"
    pages = {str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md")}
    assert not pages - set(nav), f"pages in docs/ that mkdocs.yml's nav leaves out: {sorted(pages - set(nav))}"
    assert not set(nav) - pages, f"nav entries with no page in docs/: {sorted(set(nav) - pages)}"


def test_readme_is_short():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail to docs/"


def test_lists_render_as_on_github():
    """docs/hooks.py: a list right under a paragraph, and one nested two spaces in (as the report stage and the
    gaps report write them), become what Python-Markdown reads as lists; code blocks stay as they are."""
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = "Caption.\n- a\n  - b\n  more of b\n- c\n\n```\ncode\n- kept\n  - kept\n```\n| x |\n- d\n"
    assert hooks.on_page_markdown(page) == \
        "Caption.\n\n- a\n    - b\n  more of b\n- c\n\n```\ncode\n- kept\n  - kept\n```\n| x |\n- d\n"


def test_the_workflow_is_as_snakefmt_formats_it():
    # the Snakefile and its one rule file (a loop over the stage graph), pyproject.toml's [tool.snakefmt]
    snakefmt = Path(sys.executable).parent / "snakefmt"
    checked = subprocess.run([str(snakefmt), "--check", "workflow/"], cwd=ROOT, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = sorted(p.name for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    assert rules == ["common.smk", "stages.smk"], rules  # the rules written once
