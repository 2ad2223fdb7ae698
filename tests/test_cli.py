"""The ``mlmi`` command line: impute on each input format, pool, precise errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlmi.cli import main
from mlmi.simulation import ampute, generate


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(8)
    return ampute(generate("binary", "moderate", 6, rng, n_total=360), 0.3, "mar", rng)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".dta"])
def test_impute_each_input_format(data, tmp_path, suffix, capsys):
    src = tmp_path / f"in{suffix}"
    if suffix == ".csv":
        data.to_csv(src, index=False)
    elif suffix == ".parquet":
        data.to_parquet(src)
    else:
        data.to_stata(src, write_index=False)
    out = tmp_path / "out.csv"
    code = main(["impute", str(src), "--cluster", "st", "--random", "x1=y", "--m", "2",
                 "--maxit", "2", "--seed", "3", "--out", str(out), "--quiet"])
    assert code == 0
    long = pd.read_csv(out)
    assert list(long.columns[:2]) == [".imp", ".id"]
    assert sorted(long[".imp"].unique()) == [1, 2]
    assert len(long) == 2 * len(data)
    assert not long[["x1", "x2"]].isna().any().any()
    one = long[long[".imp"] == 1].set_index(".id")
    seen = data["x1"].notna()
    # .id is the row number 1..n (mice's layout)
    np.testing.assert_array_equal(one.loc[np.flatnonzero(seen) + 1, "x1"],
                                  data.loc[seen, "x1"])
    assert (tmp_path / "out.diagnostics.csv").exists()
    assert "wrote" in capsys.readouterr().out


def test_impute_with_analysis_and_pool_command(data, tmp_path, capsys):
    src = tmp_path / "in.csv"
    data.to_csv(src, index=False)
    out = tmp_path / "imp.parquet"
    assert main(["impute", str(src), "--cluster", "st", "--method", "stratified", "--m", "3",
                 "--maxit", "2", "--seed", "1", "--out", str(out), "--quiet",
                 "--analyze", "y ~ x1 + x2 + (1 | st)", "--family", "binomial"]) == 0
    first = pd.read_csv(tmp_path / "imp.pooled.csv")
    assert list(first["term"]) == ["(Intercept)", "x1", "x2"]
    assert main(["pool", str(out), "--formula", "y ~ x1 + x2 + (1 | st)", "--family",
                 "binomial", "--out", str(tmp_path / "again.csv")]) == 0
    again = pd.read_csv(tmp_path / "again.csv")
    np.testing.assert_allclose(again["estimate"], first["estimate"], rtol=1e-12)
    assert "Rubin's rules" in capsys.readouterr().out


def test_cli_errors(data, tmp_path, capsys):
    assert main(["impute", str(tmp_path / "missing.csv"), "--cluster", "st", "--out",
                 str(tmp_path / "o.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "in.xlsx"
    bad.write_text("x")
    assert main(["impute", str(bad), "--cluster", "st", "--out", str(tmp_path / "o.csv")]) == 2
    assert "use a .csv, .tsv, .parquet or .dta file" in capsys.readouterr().err
    garbled = tmp_path / "garbled.parquet"
    garbled.write_text("not parquet")
    assert main(["impute", str(garbled), "--cluster", "st", "--out",
                 str(tmp_path / "o.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err
    src = tmp_path / "in.csv"
    data.to_csv(src, index=False)
    assert main(["impute", str(src), "--cluster", "study", "--out",
                 str(tmp_path / "o.csv")]) == 2
    assert "cluster='study' is not a column" in capsys.readouterr().err
    assert main(["impute", str(src), "--cluster", "st", "--method", "x1=2l.foo", "--out",
                 str(tmp_path / "o.csv")]) == 2
    assert "unknown imputation method '2l.foo'" in capsys.readouterr().err
    assert main(["pool", str(src), "--formula", "y ~ x1 + (1 | st)"]) == 2
    assert "no '.imp' column" in capsys.readouterr().err


def test_first_run_says_it_compiles(monkeypatch, capsys):
    """Without compiled kernels on disk the first command says why it pauses; --quiet
    and warm caches say nothing."""
    import mlmi._jit

    monkeypatch.setattr(mlmi._jit, "kernels_cached", lambda: False)
    assert main(["glmm-demo", "--studies", "6"]) == 0
    assert "compiling the numerical kernels" in capsys.readouterr().err
    monkeypatch.setattr(mlmi._jit, "kernels_cached", lambda: True)
    assert main(["glmm-demo", "--studies", "6"]) == 0
    assert "compiling" not in capsys.readouterr().err
