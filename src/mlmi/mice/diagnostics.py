"""Step diagnostics as typed records: what happened in one univariate imputation step.

A method returns ``Draw.info``, a dict of named counts (studies, sampler proposals,
fallbacks, truncated draws, ...) and ``fit_warnings`` — strings ``"[kind] message"`` or
:class:`mlmi.glmm.result.FitWarning` objects. :meth:`StepRecord.from_draw` turns that dict
into a :class:`StepRecord` in this one place: the counts stay named numbers, every warning
becomes a :class:`StepWarning` with a ``kind`` from :data:`WARNING_KINDS`, so the end-of-run
report asks ``record.count_kind("separation")`` instead of matching message prefixes.
``Imputed.diagnostics`` (a DataFrame, one row per step) is made from the records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

#: kinds of step warnings and what they mean
WARNING_KINDS: dict[str, str] = {
    "separation": "separation of the fixed effects (a predictor pattern predicts the "
                  "response perfectly): the fit's coefficients are unreliable",
    "cluster-separation": "the response is constant within a study (handled by the random "
                          "effects' prior; information only)",
    "convergence": "the model fit did not converge",
    "singular": "a random-effect variance estimated as 0 (singular Psi-hat)",
    "collinear": "collinear predictors (a coefficient set to 0 or a ridge penalty added)",
    "rank": "rank-deficient fixed-effects design",
    "few-studies": "fewer studies than coefficients + 2 in a study-level model",
    "dropped": "a study's fit dropped from a two-stage meta-analysis",
    "2stage": "a note of the two-stage meta-analysis",
    "info": "what the optimiser did (recorded, not a problem)",
    "other": "a warning without a kind",
}
#: spellings of kinds in methods' messages -> the kind
_ALIASES = {"collinearity": "collinear", "few studies": "few-studies"}
_PREFIX = re.compile(r"^\[([^\]]+)\]\s*(.*)$", re.S)
#: keys of Draw.info that are not counts
_NOT_COUNTS = ("fit_warnings",)


@dataclass(frozen=True)
class StepWarning:
    """A warning of one step: ``kind`` (a key of :data:`WARNING_KINDS`) and the message."""

    kind: str
    message: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.message}"


def to_warning(item: Any) -> StepWarning:
    """A method's warning (``"[kind] message"``, a FitWarning, a StepWarning) as a
    StepWarning; a separation confined to a study (the response constant within it) is
    its own kind, ``cluster-separation``."""
    if isinstance(item, StepWarning):
        return item
    if hasattr(item, "kind") and hasattr(item, "message"):
        kind, message = str(item.kind), str(item.message)
    else:
        text = str(item)
        found = _PREFIX.match(text)
        kind, message = (found.group(1), found.group(2)) if found else ("other", text)
    kind = _ALIASES.get(kind, kind)
    if kind == "separation" and "within-cluster" in message:
        kind = "cluster-separation"
    if kind not in WARNING_KINDS:
        kind, message = "other", f"[{kind}] {message}"
    return StepWarning(kind, message)


@dataclass
class StepRecord:
    """One univariate step: which variable, iteration, chain and method, how long it took,
    the method's named ``counts`` (Draw.info without its warnings) and its ``warnings``."""

    variable: str
    iteration: int
    chain: int
    method: str
    seconds: float
    counts: dict[str, Any] = field(default_factory=dict)
    warnings: list[StepWarning] = field(default_factory=list)

    @classmethod
    def from_draw(cls, variable: str, iteration: int, chain: int, method: str,
                  seconds: float, info: dict[str, Any]) -> StepRecord:
        """The record of a step from the method's ``Draw.info`` (the one place where
        its free-form dict is read)."""
        counts = {k: v for k, v in info.items() if k not in _NOT_COUNTS}
        warnings = [to_warning(w) for w in info.get("fit_warnings", []) or []]
        return cls(variable, iteration, chain, method, seconds, counts, warnings)

    def count_kind(self, kind: str) -> int:
        """Number of warnings of ``kind``."""
        return sum(w.kind == kind for w in self.warnings)

    def row(self) -> dict[str, Any]:
        """The step as a row of ``Imputed.diagnostics``."""
        out = {"variable": self.variable, "iteration": self.iteration, "chain": self.chain,
               "method": self.method, "seconds": self.seconds, **self.counts}
        out["fit_warnings"] = "; ".join(map(str, self.warnings))
        out["n_fit_warnings"] = len(self.warnings)
        return out


def frame(records: list[StepRecord]):
    """``Imputed.diagnostics``: one row per record."""
    import numpy as np
    import pandas as pd

    diag = pd.DataFrame([r.row() for r in records])
    if "proposals" in diag:
        with np.errstate(invalid="ignore", divide="ignore"):
            diag["acceptance_rate"] = diag["accepted"] / diag["proposals"].where(
                diag["proposals"] > 0)
    return diag
