"""README's Results section shows what the pipeline wrote: the archive it names, its tables unedited."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def results_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n## Results\n")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


def as_in_readme(path: Path, deeper: int) -> str:
    """An archived markdown file as README shows it: unedited but for its headings, `deeper` levels down."""
    return re.sub(r"^(#+) ", "#" * deeper + r"\1 ", path.read_text().strip(), flags=re.M)


def archive(section: str) -> Path:
    named = re.search(r"Everything behind\s+these numbers is in \[`(results/[^`]+?)/?`\]", section)
    assert named, "README's Results section must name the archive its numbers come from"
    return ROOT / named.group(1)


def test_results_tables_are_the_archived_reports():
    section = results_section()
    reports = sorted((archive(section) / "reports").glob("*/table.md"))
    assert [p.parent.name for p in reports] == ["cifar10", "mnist"], reports
    for table in reports:
        # The report's headings sit one level deeper in README; nothing else may differ.
        shown = as_in_readme(table, 1)
        assert shown in section, f"README's {table.parent.name} tables differ from {table.relative_to(ROOT)}"


def test_results_figures_come_from_the_same_archive():
    section = results_section()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", section)
    assert figures, "the Results section shows the report's figures"
    for figure in figures:
        assert (ROOT / figure).is_file(), figure
        assert (ROOT / figure).is_relative_to(archive(section)), f"{figure} is not from the archive named"


def test_the_gaps_report_is_the_archives_and_the_archive_regenerates_it():
    from featdefense.gaps import experiments, render, rows
    from featdefense.stages.report import paper_results

    section = results_section()
    gaps = archive(section) / "gaps.md"
    # README shows the archived report (its headings one level deeper) ...
    shown = as_in_readme(gaps, 2)
    assert shown in section, f"README's gaps report differs from {gaps.relative_to(ROOT)}"
    # ... and the archived report is what the archive's metrics and experiments give today
    found = experiments(archive(section))
    md, table = render(archive(section), rows(archive(section), paper_results(), found), found)
    assert md == gaps.read_text(), "rerun: featdefense gaps " + str(gaps.parent.relative_to(ROOT))
    assert table == gaps.with_suffix(".csv").read_text()


def test_the_seeds_table_is_the_archives():
    section = results_section()
    seeds = archive(section) / "seeds" / "mnist.md"
    shown = as_in_readme(seeds, 2)
    assert shown in section, f"README's seeds table differs from {seeds.relative_to(ROOT)}"
