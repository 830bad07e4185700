"""The project speaks in its own words: its code, configs, docs and published results say what
happened and when (a date, a commit), never which issue or session of its making it was in.
results/HISTORY.md, the dated history, and results/in-progress/ are left out."""
from __future__ import annotations

import re

from conftest import REPO

PROCESS = re.compile(r"(?i)\b(issue|session) [0-9]+")
ROOTS = ("bnstudy", "README.md", "docs", "results")
SUFFIXES = {".py", ".yaml", ".md"}
SKIPPED = (REPO / "results" / "HISTORY.md", REPO / "results" / "in-progress")


def _files():
    for root in ROOTS:
        path = REPO / root
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        for f in candidates:
            if not f.is_file() or f.suffix not in SUFFIXES:
                continue
            if any(f == s or s in f.parents for s in SKIPPED):
                continue
            yield f


def test_no_issue_or_session_numbers_outside_the_history():
    offenders = []
    for f in _files():
        for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if PROCESS.search(line):
                offenders.append(f"{f.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, ("lines that name an issue or session number (say what they mean, with a "
                           "date, instead):\n" + "\n".join(offenders))
