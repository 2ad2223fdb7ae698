"""Step diagnostics as typed records (issue 11 point 6): Draw.info is read in one place,
warnings carry a kind, the report counts kinds instead of matching message prefixes."""

from __future__ import annotations

import numpy as np

from mlmi.glmm.result import FitWarning
from mlmi.mice.diagnostics import WARNING_KINDS, StepRecord, StepWarning, frame, to_warning


def test_warnings_of_every_spelling_get_a_kind():
    assert to_warning("[separation] x1 perfectly separates") == StepWarning(
        "separation", "x1 perfectly separates")
    assert to_warning(FitWarning("separation", "within-cluster separation: constant in 2 "
                                               "clusters")).kind == "cluster-separation"
    assert to_warning("[collinearity] X'X singular").kind == "collinear"
    assert to_warning("[few studies] 4 studies observe 'den'").kind == "few-studies"
    assert to_warning("[dropped] study 3: separated").kind == "dropped"
    odd = to_warning("[weird] something")
    assert odd.kind == "other" and odd.message == "[weird] something"
    assert to_warning("no prefix at all").kind == "other"
    assert set(WARNING_KINDS) >= {"separation", "convergence", "singular", "collinear"}


def test_record_from_draw_info_and_frame():
    info = {"n_sporadic": 3, "proposals": 10, "accepted": 4, "truncated": 2,
            "fit_warnings": ["[separation] x perfectly separates",
                             FitWarning("convergence", "not converged")]}
    rec = StepRecord.from_draw("z", 2, 1, "2l.bin", 0.01, info)
    assert rec.counts == {"n_sporadic": 3, "proposals": 10, "accepted": 4, "truncated": 2}
    assert rec.count_kind("separation") == 1 and rec.count_kind("convergence") == 1
    assert "fit_warnings" in info  # the method's dict is not changed
    empty = StepRecord.from_draw("w", 1, 1, "pmm", 0.0, {"n_donors": 5})
    d = frame([rec, empty])
    assert list(d["n_fit_warnings"]) == [2, 0]
    assert d.loc[0, "fit_warnings"] == ("[separation] x perfectly separates; "
                                        "[convergence] not converged")
    assert d.loc[0, "acceptance_rate"] == 0.4 and np.isnan(d.loc[1, "acceptance_rate"])
