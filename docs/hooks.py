"""MkDocs hook: lists render as they do on GitHub, where README and the archived reports are read.

Python-Markdown (MkDocs' parser) starts a list only after a blank line and nests one only four spaces
in; the report stage and the gaps report write lists right under a paragraph and nest them two spaces in,
and their bytes here must stay the archive's (tests/test_readme.py). So, on the text MkDocs reads (the
files are unchanged), outside fenced code: a blank line goes before a list that follows a paragraph
line, and a nested item's indent is doubled.
"""
import re

ITEM = re.compile(r"^( *)(?:[-*]|\d+\.) ")


def on_page_markdown(markdown, **kwargs):
    out, fenced, previous = [], False, ""
    for line in markdown.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (item := ITEM.match(line)):
            indent = len(item.group(1))
            if indent:
                line = " " * indent + line
            elif previous.strip() and not ITEM.match(previous) and not previous.startswith((" ", "|", "#")):
                out.append("")
        out.append(line)
        previous = line
    return "\n".join(out)
