"""README's Results section and docs/results.md show what the pipeline wrote: the archive they name, its files
unedited."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PAGE = ROOT / "docs" / "results.md"


def results_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n## Results\n")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


def results_page() -> str:
    return RESULTS_PAGE.read_text()


def as_shown(path: Path, deeper: int, upto: str | None = None) -> str:
    """An archived markdown file as a page shows it: unedited but for its headings, `deeper` levels down;
    with `upto`, only what comes before the first line that starts with it."""
    text = path.read_text()
    if upto is not None:
        text = text[:text.index("\n" + upto)]
    return re.sub(r"^(#+) ", "#" * deeper + r"\1 ", text.strip(), flags=re.M)


def archive(shown: str, where: str) -> Path:
    named = re.search(r"Everything behind\s+these numbers is in\s+\[?`(results/[^`]+?)/?`", shown)
    assert named, f"{where} must name the archive its numbers come from"
    return ROOT / named.group(1)


def test_readme_and_the_results_page_name_one_archive():
    assert archive(results_section(), "README's Results section") == archive(results_page(), "docs/results.md")


def test_results_tables_are_the_archived_reports():
    section, page = results_section(), results_page()
    reports = sorted((archive(page, "docs/results.md") / "reports").glob("*/table.md"))
    assert [p.parent.name for p in reports] == ["cifar10", "mnist"], reports
    for table in reports:
        # docs/results.md shows the whole report (tables, sanity checks, captions) at its own heading levels ...
        assert as_shown(table, 0) in page, \
            f"docs/results.md's {table.parent.name} tables differ from {table.relative_to(ROOT)}"
        # ... README its accuracy table and caption (up to the sanity checks), one level deeper; nothing else differs
        shown = as_shown(table, 1, upto="### ")
        assert "| attack " in shown and shown in section, \
            f"README's {table.parent.name} table differs from {table.relative_to(ROOT)}"


def test_the_fashion_mnist_table_is_its_archives_report():
    """The dataset the paper did not cover: its own archive, named beside its table."""
    section = results_section()
    named = re.search(r"These numbers are in\s+\[?`(results/[^`]+?)/?`", section)
    assert named, "README must name the archive of its Fashion-MNIST table"
    table = ROOT / named.group(1) / "reports" / "fashion_mnist" / "table.md"
    shown = as_shown(table, 1, upto="### ")
    assert "| attack " in shown and "paper_%" not in shown and shown in section, \
        f"README's fashion_mnist table differs from {table.relative_to(ROOT)}"


def test_results_figures_come_from_the_same_archive():
    page = results_page()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert figures, "docs/results.md shows the report's figures"
    for figure in figures:
        path = RESULTS_PAGE.parent / figure  # docs/figures/ holds links into the archive
        assert path.is_file(), figure
        assert path.resolve().is_relative_to(archive(page, "docs/results.md").resolve()), \
            f"{figure} is not from the archive named"


def test_the_gaps_report_is_the_archives_and_the_archive_regenerates_it():
    from featdefense.gaps import experiments, render, rows
    from featdefense.stages.report import paper_results

    page = results_page()
    run = archive(page, "docs/results.md")
    gaps = run / "gaps.md"
    # docs/results.md shows the archived report (its headings two levels deeper) ...
    shown = as_shown(gaps, 2)
    assert shown in page, f"docs/results.md's gaps report differs from {gaps.relative_to(ROOT)}"
    # ... and the archived report is what the archive's metrics and experiments give today
    found = experiments(run)
    md, table = render(run, rows(run, paper_results(), found), found)
    assert md == gaps.read_text(), "rerun: featdefense gaps " + str(run.relative_to(ROOT))
    assert table == gaps.with_suffix(".csv").read_text()


def test_readme_shows_the_archives_gaps_table_and_its_experiments_costs():
    section = results_section()
    gaps = archive(section, "README's Results section") / "gaps.md"
    shown = as_shown(gaps, 2, upto="## What the experiments say")
    assert "| Table 1 | MNIST |" in shown and "## The experiments" in shown and shown in section, \
        f"README's gaps table differs from {gaps.relative_to(ROOT)} (up to What the experiments say)"


def test_the_seeds_table_is_the_archives():
    page = results_page()
    seeds = archive(page, "docs/results.md") / "seeds" / "mnist.md"
    shown = as_shown(seeds, 1)
    assert shown in page, f"docs/results.md's seeds table differs from {seeds.relative_to(ROOT)}"


def test_every_check_in_the_archive_follows_from_the_counts_beside_it():
    """The archive README shows, and the runs its seeds table summarises: each paired check's verdict is the one
    its own counts give (n/a where nothing was left to break), the convergence and Square checks count the
    cascade's own images, and so do the plus version and each reseeded AutoAttack run, whose check's verdict is
    the one their counts give."""
    from .counts import agree_with_counts
    shown = archive(results_section(), "README's Results section")
    metrics = sorted((shown / "metrics").glob("*/evaluate_*.json"))
    assert len(metrics) == 10, metrics  # five defences on two datasets
    seeds = json.loads((shown / "seeds" / "mnist.json").read_text())["runs"]
    assert len(seeds) == 3 and ROOT / seeds[0] == shown, seeds
    for run in seeds[1:]:
        found = sorted((ROOT / run / "metrics" / "mnist").glob("evaluate_*.json"))
        assert len(found) == 5, f"{run}: the seeds table summarises it, yet it holds {len(found)} of 5 evaluations"
        metrics += found
    compared = 0
    for path in metrics:
        evaluation = json.loads(path.read_text())
        try:
            agree_with_counts(evaluation)
        except AssertionError as error:
            raise AssertionError(f"{path.relative_to(ROOT)}: a verdict its counts do not give: {error}") from None
        compared += sum(check.get("left", 0) > 0 for check in evaluation["sanity"].values() if "broken" in check)
    assert compared > 0  # some check compared attacks on images that were left
