"""R's mice reads the long format mlmi writes (``mice::as.mids(read.csv(...))``).

Slow (starts R); skips when Rscript or mice is not installed. The R side is
tools/check_long_format_mice.R, which also checks that every completed data set mice
rebuilds equals the file's imputation and that mice's own long format numbers .id 1..n.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmi.cli import main
from mlmi.simulation import ampute, generate

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "check_long_format_mice.R"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("Rscript") is None, reason="R not installed"),
              pytest.mark.filterwarnings("ignore::mlmi.exceptions.ImputationWarning")]


def test_mice_as_mids_reads_the_cli_long_format(tmp_path):
    has_mice = subprocess.run(["Rscript", "-e", "library(mice)"], capture_output=True)
    if has_mice.returncode != 0:
        pytest.skip("the R package mice is not installed")
    rng = np.random.default_rng(5)
    data = ampute(generate("continuous", "moderate", 6, rng, n_total=300), 0.3, "mar", rng)
    src = tmp_path / "in.csv"
    data.to_csv(src, index=False)
    out = tmp_path / "imputed.csv"
    assert main(["impute", str(src), "--cluster", "st", "--m", "3", "--maxit", "2",
                 "--seed", "4", "--include-original", "--out", str(out), "--quiet"]) == 0
    long = pd.read_csv(out)
    assert sorted(long[".imp"].unique()) == [0, 1, 2, 3]
    res = subprocess.run(["Rscript", str(SCRIPT), str(out), "y ~ x1 + x2"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"OK m=3 n={len(data)}" in res.stdout
    assert "x1" in res.stdout  # the pooled table of mice
