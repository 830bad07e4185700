"""One module per claim: its statement and sources, its rule with the minimum effect fixed
before the runs it judges, its checks ((runs, curves) -> Verdict) and its figures.

Each module defines KEY, STUDY (the study YAML in bnstudy/conf/exp/ whose runs it reads),
TITLE, ORDER (its place in the report), STATEMENT, CHECKS and FIGURES ({name: (draw(runs,
curves, verdicts) -> Figure, caption)}). They are discovered, not listed: the report
(bnstudy/analysis/report.py) assembles them in their ORDER and knows no claim by name; adding
a claim is one module here, one study YAML and its tests.
"""
from __future__ import annotations

import importlib
import pkgutil

REQUIRED = ("KEY", "STUDY", "TITLE", "ORDER", "STATEMENT", "CHECKS", "FIGURES")


def _discover() -> list:
    """Every module (or package) of this package, in their ORDER."""
    found = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]
    for c in found:
        lacking = [name for name in REQUIRED if not hasattr(c, name)]
        if lacking:
            raise ImportError(f"{c.__name__} is in bnstudy/claims/ but lacks {', '.join(lacking)}")
    return sorted(found, key=lambda c: c.ORDER)


CLAIMS = _discover()
