"""One module per claim: its statement and sources, its rule with the minimum effect fixed
before the runs it judges, its checks ((runs, curves) -> Verdict) and its figures.

Each module defines KEY, STUDY (the study YAML in bnstudy/conf/exp/ whose runs it reads),
TITLE, STATEMENT, CHECKS and FIGURES ({name: (draw(runs, curves, verdicts) -> Figure,
caption)}). The report (bnstudy/analysis/report.py) assembles them in this order and knows
no claim by name: adding a claim is one module here, one study YAML and its tests.
"""
from __future__ import annotations

from . import (covariate_shift, depth, faster_training, higher_lr, inference, init, intensity_shift, norm_batch,
               regularization, small_batch, stable_lr, steps_to_target)

CLAIMS = [faster_training, steps_to_target, higher_lr, stable_lr, small_batch, norm_batch, covariate_shift,
          regularization, init, depth, inference, intensity_shift]
