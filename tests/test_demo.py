"""The applied demonstration end to end, with tiny settings."""

from __future__ import annotations

import io

import numpy as np

from mlmi.cli import main
from mlmi.demo import run_demo


def test_demo_end_to_end(tmp_path):
    stream = io.StringIO()
    table = run_demo(tmp_path, m=2, maxit=1, seed=3, progress=False, stream=stream)
    text = stream.getvalue()
    assert list(table.index) == ["REF", "CCA", "STI", "MLMI", "2STG", "truth"]
    assert np.isfinite(table.loc["MLMI", ["a0", "a1", "a2", "omega0", "omega1"]]).all()
    assert table.loc["truth", "a1"] == 0.68
    for needle in ("% missing per study", "CCA:", "MLMI: imputed", "analysis model"):
        assert needle in text
    for name in ("missingness.csv", "missingness.md", "results.csv", "results.md",
                 "missingness_map.png", "trace_mlmi.png", "imputed_alcohol.png",
                 "imputed_comorbidities.png", "forest.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "(systematic)" in (tmp_path / "missingness.md").read_text()


def test_demo_command(tmp_path, capsys):
    assert main(["demo", "--m", "2", "--maxit", "1", "--quiet", "--out", str(tmp_path)]) == 0
    assert "REF = the complete data before amputation" in capsys.readouterr().out
