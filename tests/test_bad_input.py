"""A catalogue of awkward input, through the API and the ``mlmi`` command line.

Every case must end with an mlmi error (never a Python/pandas/numpy/dask exception)
whose message names the argument and the offending value; on the command line the
status is 2, the message is one line on stderr, no traceback is printed and no file is
left behind. A second group checks the right behaviour where the issue asks for one
instead of an error (two-valued codes, constants, no missing data, labels in warnings,
clean warnings, detection of separators/encodings/'.' codes, printing in full,
interrupts).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlmi
from mlmi.cli import main
from mlmi.exceptions import MLMIError
from mlmi.simulation import ampute, generate

pytestmark = pytest.mark.filterwarnings("ignore::mlmi.exceptions.ImputationWarning")


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(13)
    return ampute(generate("binary", "moderate", 5, rng, n_total=250), 0.3, "mar", rng)


def _pm(data):
    pm = pd.DataFrame(1, index=["x1", "x2"], columns=list(data.columns))
    pm["st"] = -2
    pm.loc["x1", "x1"] = pm.loc["x2", "x2"] = 0
    pm.loc["x1", "y"] = 7
    return pm


# (id, call(data) -> anything, strings the message must contain: argument and value)
API_CASES = [
    ("cluster-list", lambda d: mlmi.impute(d, ["st"]), ["cluster=", "['st']"]),
    ("cluster-typo", lambda d: mlmi.impute(d, "sT"), ["cluster='sT'", "did you mean 'st'"]),
    ("cluster-number", lambda d: mlmi.impute(d, 3), ["cluster=3"]),
    ("seed-negative", lambda d: mlmi.impute(d, "st", seed=-1), ["seed=-1"]),
    ("seed-float", lambda d: mlmi.impute(d, "st", seed=1.5), ["seed=1.5"]),
    ("seed-text", lambda d: mlmi.impute(d, "st", seed="1"), ["seed='1'"]),
    ("m-bool", lambda d: mlmi.impute(d, "st", m=True), ["m=True"]),
    ("m-zero", lambda d: mlmi.impute(d, "st", m=0), ["m=0"]),
    ("m-float", lambda d: mlmi.impute(d, "st", m=2.0), ["m=2.0"]),
    ("maxit-zero", lambda d: mlmi.impute(d, "st", maxit=0), ["maxit=0"]),
    ("maxit-bool", lambda d: mlmi.impute(d, "st", maxit=False), ["maxit=False"]),
    ("n_jobs-zero", lambda d: mlmi.impute(d, "st", n_jobs=0), ["n_jobs=0"]),
    ("n_jobs-bool", lambda d: mlmi.impute(d, "st", n_jobs=True), ["n_jobs=True"]),
    ("scheduler-no-port", lambda d: mlmi.impute(d, "st", scheduler="localhost"),
     ["scheduler='localhost'", "tcp://host:8786"]),
    ("scheduler-type", lambda d: mlmi.impute(d, "st", scheduler=3), ["scheduler", "int"]),
    ("random-on-cluster", lambda d: mlmi.impute(d, "st", random={"x1": ["st"]}),
     ["random['x1']", "cluster column 'st'"]),
    ("random-list", lambda d: mlmi.impute(d, "st", random=["x1"]), ["random=['x1']"]),
    ("random-unknown", lambda d: mlmi.impute(d, "st", random={"x1": ["zz"]}),
     ["random['x1']", "'zz'"]),
    ("random-unknown-target", lambda d: mlmi.impute(d, "st", random={"zz": ["y"]}),
     ["random", "'zz'"]),
    ("method-unknown", lambda d: mlmi.impute(d, "st", method="2l.foo"), ["'2l.foo'"]),
    ("method-wrong-type", lambda d: mlmi.impute(d, "st", method={"x1": "2l.norm"}),
     ["'2l.norm'", "'x1'"]),
    ("method-unknown-column", lambda d: mlmi.impute(d, "st", method={"zz": "pmm"}),
     ["method", "'zz'"]),
    ("method-type", lambda d: mlmi.impute(d, "st", method=3), ["method", "int"]),
    ("sampler", lambda d: mlmi.impute(d, "st", sampler="fast"), ["sampler='fast'"]),
    ("types-unknown", lambda d: mlmi.impute(d, "st", types={"x2": "ordered"}),
     ["types['x2']", "'ordered'"]),
    ("types-not-dict", lambda d: mlmi.impute(d, "st", types="binary"), ["types='binary'"]),
    ("data-array", lambda d: mlmi.impute(d.to_numpy(), "st"), ["data", "ndarray"]),
    ("data-no-rows", lambda d: mlmi.impute(d.iloc[:0], "st"), ["data has no rows"]),
    ("cluster-missing-values",
     lambda d: mlmi.impute(d.assign(st=d["st"].where(d.index > 3)), "st"), ["'st'", "4"]),
    ("column-all-missing", lambda d: mlmi.impute(d.assign(z=np.nan), "st"), ["'z'", "all"]),
    ("column-dot-codes",
     lambda d: mlmi.impute(d.assign(x2=d["x2"].astype(object).where(d["x2"].notna(), ".")),
                           "st"), ["'x2'", "'.'"]),
    ("duplicated-columns",
     lambda d: mlmi.impute(pd.concat([d, d[["x2"]]], axis=1), "st"), ["duplicated", "'x2'"]),
    ("one-study", lambda d: mlmi.impute(d.assign(st=1), "st"), ["'st'", "1 study"]),
    ("predictor-matrix-code", lambda d: mlmi.impute(d, "st", predictor_matrix=_pm(d)),
     ["predictor_matrix['x1', 'y']", "7"]),
    ("visit-sequence", lambda d: mlmi.impute(d, "st", visit_sequence=["x1", "zz"]),
     ["visit_sequence", "'zz'"]),
    ("progress", lambda d: mlmi.impute(d, "st", progress="yes"), ["progress='yes'"]),
    ("formula-intercept-column",
     lambda d: mlmi.fit_glmm("y ~ `(Intercept)` + (1 | st)", d.assign(**{"(Intercept)": 2.0})
                             .dropna()), ["'(Intercept)'"]),
    ("complete-case-formula", lambda d: mlmi.complete_case(d, "y ~ zz + (1 | st)"),
     ["'zz'"]),
    ("simulation-seed", lambda d: mlmi.simulation.run([], 1, "unused", seed=-2),
     ["seed=-2"]),
    ("simulation-reps", lambda d: mlmi.simulation.run([], True, "unused"), ["reps=True"]),
    ("simulation-scheduler", lambda d: mlmi.simulation.run([], 1, "unused",
                                                           scheduler="localhost"),
     ["scheduler='localhost'"]),
]


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_message_names_argument_and_value(case, data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, call, needles = case
    with pytest.raises(MLMIError) as info:
        call(data)
    message = str(info.value)
    for needle in needles:
        assert needle in message, (needle, message)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def imputed(data):
    return mlmi.impute(data, "st", m=2, maxit=1, seed=3)


def test_api_result_methods(imputed):
    for call, needles in [
        (lambda: imputed.complete(5), ["action=5", "1 to 2"]),
        (lambda: imputed.complete("wide"), ["action='wide'"]),
        (lambda: imputed.complete(True), ["action=True"]),
        (lambda: imputed.complete("long", include="yes"), ["include='yes'"]),
        (lambda: imputed.analyze("y ~ x1 + (1 | st)", "binomal"), ["family='binomal'"]),
        (lambda: imputed.analyze("y ~ x1 + (1 | st)", "binomial").fits[:1] and
         mlmi.MultipleFits(imputed.analyze("y ~ x1 + (1 | st)", "binomial").fits[:1],
                           "y ~ x1 + (1 | st)", "binomial").pool(), ["m=1"]),
    ]:
        with pytest.raises(MLMIError) as info:
            call()
        for needle in needles:
            assert needle in str(info.value), (needle, str(info.value))


# ------------------------------------------------------------------ command line
def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.fixture()
def files(data, tmp_path):
    """Input files of every kind the CLI cases need."""
    d = data.copy()
    d.to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "header.csv").write_text("st,y,x1,x2\n")
    (tmp_path / "dup.csv").write_text("st,y,x1,x1\n1,0,1,2\n2,1,,3\n")
    d.assign(town=np.where(d.index % 2, "Zürich", "Genève")).to_csv(
        tmp_path / "latin.csv", index=False, encoding="latin-1")
    d.to_csv(tmp_path / "semi.csv", index=False, sep=";")
    long = d.fillna(0).assign(**{".imp": 1, ".id": np.arange(1, len(d) + 1)})
    long = pd.concat([long, long.assign(**{".imp": 2})], ignore_index=True)
    long = long[[".imp", ".id", *d.columns]]
    long.to_csv(tmp_path / "long.csv", index=False)
    text = (tmp_path / "long.csv").read_text()
    (tmp_path / "cut.csv").write_text(text[: len(text) - 7])
    long.iloc[:-5].to_csv(tmp_path / "short.csv", index=False)
    long.assign(**{".imp": long[".imp"].replace(2, 3)}).to_csv(tmp_path / "gap.csv",
                                                                index=False)
    long.drop(columns=".imp").to_csv(tmp_path / "noimp.csv", index=False)
    long.to_csv(tmp_path / "meta.csv", index=False)
    (tmp_path / "meta.meta.json").write_text(f'{{"m": 3, "n": {len(d)}, "output": "meta.csv"}}')
    return tmp_path


IMPUTE = ["impute", "{d}/in.csv", "--cluster", "st", "--m", "2", "--maxit", "1", "--quiet"]
POOL_F = ["--formula", "y ~ x1 + (1 | st)", "--family", "binomial"]

# (id, argv with {d} = the folder, strings the message must contain)
CLI_CASES = [
    ("out-is-input", [*IMPUTE, "--out", "{d}/in.csv"], ["in.csv", "input"]),
    ("out-is-input-other-spelling", [*IMPUTE, "--out", "{d}/./in.csv"], ["in.csv", "input"]),
    ("pool-out-is-input", ["pool", "{d}/long.csv", *POOL_F, "--out", "{d}/long.csv"],
     ["long.csv", "input"]),
    ("out-extension", [*IMPUTE, "--out", "{d}/out.xlsx"], ["out.xlsx"]),
    ("out-folder", [*IMPUTE, "--out", "{d}"], ["{d}"]),
    ("seed-negative", [*IMPUTE, "--seed", "-1", "--out", "{d}/o.csv"], ["--seed -1"]),
    ("m-1-with-analyze", [*IMPUTE[:-5], "--m", "1", "--analyze", "y ~ x1 + (1 | st)",
                          "--out", "{d}/o.csv"], ["--m 1", "2"]),
    ("m-0", [*IMPUTE[:-5], "--m", "0", "--out", "{d}/o.csv"], ["m=0"]),
    ("jobs-0", [*IMPUTE, "--jobs", "0", "--out", "{d}/o.csv"], ["n_jobs=0"]),
    ("analyze-typo", [*IMPUTE, "--analyze", "y ~ x11 + (1 | st)", "--out", "{d}/o.csv"],
     ["--analyze", "'x11'", "did you mean 'x1'"]),
    ("analyze-syntax", [*IMPUTE, "--analyze", "y ~ x1 + (1 | st", "--out", "{d}/o.csv"],
     ["--analyze", "'y ~ x1 + (1 | st'"]),
    ("method-colon", [*IMPUTE, "--method", "x1:2l.bin", "--out", "{d}/o.csv"],
     ["--method 'x1:2l.bin'", "--method x1=2l.bin"]),
    ("method-unknown", [*IMPUTE, "--method", "x1=2l.foo", "--out", "{d}/o.csv"],
     ["'2l.foo'"]),
    ("method-mixed", [*IMPUTE, "--method", "x1=2l.bin", "--method", "pmm", "--out",
                      "{d}/o.csv"], ["--method 'pmm'", "VAR=METHOD"]),
    ("random-no-equals", [*IMPUTE, "--random", "x1", "--out", "{d}/o.csv"],
     ["--random 'x1'"]),
    ("random-on-cluster", [*IMPUTE, "--random", "x1=st", "--out", "{d}/o.csv"],
     ["random['x1']", "'st'"]),
    ("cluster-unknown", ["impute", "{d}/in.csv", "--cluster", "centre", "--out",
                         "{d}/o.csv"], ["cluster='centre'"]),
    ("input-missing", ["impute", "{d}/nope.csv", "--cluster", "st", "--out", "{d}/o.csv"],
     ["nope.csv", "does not exist"]),
    ("input-kind", ["impute", "{d}/in.xlsx", "--cluster", "st", "--out", "{d}/o.csv"],
     ["in.xlsx"]),
    ("header-only", ["impute", "{d}/header.csv", "--cluster", "st", "--out", "{d}/o.csv"],
     ["header.csv", "no data rows"]),
    ("duplicated-header", ["impute", "{d}/dup.csv", "--cluster", "st", "--out",
                           "{d}/o.csv"], ["dup.csv", "['x1']", "more than once"]),
    ("encoding-unknown", [*IMPUTE, "--encoding", "klingon", "--out", "{d}/o.csv"],
     ["--encoding 'klingon'"]),
    ("encoding-wrong", ["impute", "{d}/latin.csv", "--cluster", "st", "--encoding", "utf-8",
                        "--out", "{d}/o.csv"], ["latin.csv", "utf-8", "--encoding"]),
    ("sep-long", [*IMPUTE, "--sep", ";;", "--out", "{d}/o.csv"], ["--sep ';;'"]),
    ("sep-wrong", ["impute", "{d}/semi.csv", "--cluster", "st", "--sep", ",", "--out",
                   "{d}/o.csv"], ["cluster='st'", "--sep"]),
    ("pool-cut-line", ["pool", "{d}/cut.csv", *POOL_F], ["cut.csv", "truncated"]),
    ("pool-missing-rows", ["pool", "{d}/short.csv", *POOL_F],
     ["short.csv", "imputation 2", "rows"]),
    ("pool-missing-imputation", ["pool", "{d}/gap.csv", *POOL_F], ["gap.csv", "2"]),
    ("pool-metadata", ["pool", "{d}/meta.csv", *POOL_F], ["meta.csv", "3"]),
    ("pool-no-imp", ["pool", "{d}/noimp.csv", *POOL_F], ["noimp.csv", "'.imp'"]),
    ("pool-formula-typo", ["pool", "{d}/long.csv", "--formula", "y ~ x9 + (1 | st)"],
     ["--formula", "'x9'"]),
    ("simulate-seed", ["simulate", "--reps", "1", "--out", "{d}/sim", "--seed", "-4"],
     ["seed=-4"]),
    ("simulate-scheduler", ["simulate", "--reps", "1", "--out", "{d}/sim", "--scheduler",
                            "localhost"], ["scheduler='localhost'"]),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_message_names_argument_and_value(case, files, capsys):
    _, argv, needles = case
    before = _files(files)
    code = main([a.format(d=files) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle.format(d=files) in lines[0], (needle, err)
    assert "Traceback" not in err
    assert _files(files) == before  # nothing written, nothing left behind


def test_cli_errors_have_no_traceback_in_a_real_process(files):
    """The same through the installed entry point: status 2, one line, no traceback."""
    res = subprocess.run([sys.executable, "-m", "mlmi", "impute", str(files / "in.csv"),
                          "--cluster", "st", "--seed", "-1", "--out", str(files / "o.csv")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "mlmi impute: error: --seed -1" in res.stderr


def test_enough_cases():
    assert len(API_CASES) + len(CLI_CASES) >= 40


# ------------------------------------------------------------------ right behaviour
def test_two_valued_codes_are_binary_and_decoded(data):
    d = data.assign(x1=data["x1"].map({0.0: 1, 1.0: 2}))
    imp = mlmi.impute(d, "st", m=2, maxit=1, seed=1)
    assert imp.types["x1"] == "binary" and imp.methods["x1"] == "2l.bin"
    done = imp.complete(1)
    assert set(done["x1"].unique()) == {1, 2}
    seen = d["x1"].notna()
    np.testing.assert_array_equal(done.loc[seen, "x1"], d.loc[seen, "x1"])


def test_constant_incomplete_variable_is_imputed_with_its_value(data):
    d = data.assign(c=np.where(data.index % 4 == 0, np.nan, 5.0))
    imp = mlmi.impute(d, "st", m=2, maxit=1, seed=1)
    assert imp.methods["c"] == "constant"
    assert (imp.complete(2)["c"] == 5.0).all()
    assert any("'c'" in note and "one observed value" in note for note in imp.notes)
    assert "c" not in imp.predictor_matrix.columns[imp.predictor_matrix.loc["x1"] != 0]
    assert "constant" in imp.summary().loc["c", "method"]


def test_no_missing_values_through_api_and_cli(data, tmp_path, capsys):
    full = data.dropna().reset_index(drop=True)
    imp = mlmi.impute(full, "st", m=2, maxit=1, seed=1)
    pd.testing.assert_frame_equal(imp.complete(2), full)
    summary = imp.summary()  # every variable with its type and why, none imputed
    assert (summary["method"] == "").all() and summary["type_reason"].str.len().gt(0).all()
    assert "no missing values" in repr(imp)
    full.to_csv(tmp_path / "full.csv", index=False)
    code = main(["impute", str(tmp_path / "full.csv"), "--cluster", "st", "--m", "2",
                 "--maxit", "1", "--seed", "1", "--out", str(tmp_path / "o.csv"),
                 "--analyze", "y ~ x1 + (1 | st)", "--family", "binomial"])
    assert code == 0
    assert len(pd.read_csv(tmp_path / "o.csv")) == 2 * len(full)


def test_warnings_name_studies_by_label_and_print_as_one_line(tmp_path, capsys):
    rng = np.random.default_rng(4)
    n = 240
    st = np.repeat(["north", "south", "east", "west"], n // 4)
    x = rng.normal(size=n)
    b = (rng.random(n) < 0.4).astype(float)
    b[st == "east"] = 1.0  # constant in one study: within-cluster separation
    b[rng.random(n) < 0.2] = np.nan
    d = pd.DataFrame({"st": st, "x": x, "b": b})
    imp = mlmi.impute(d, "st", m=1, maxit=1, seed=2)
    text = " ".join(imp.diagnostics["fit_warnings"])
    assert "east (all 1)" in text
    d.to_csv(tmp_path / "in.csv", index=False)
    # one study with a single participant: a set-up warning
    solo = pd.DataFrame({"st": ["solo"], "x": [0.3], "b": [1.0]})
    pd.concat([d.assign(x=np.where(np.arange(n) % 9 == 0, np.nan, x)), solo]).to_csv(
        tmp_path / "in2.csv", index=False)
    capsys.readouterr()
    assert main(["impute", str(tmp_path / "in2.csv"), "--cluster", "st", "--m", "2",
                 "--maxit", "2", "--seed", "1", "--out", str(tmp_path / "o.csv"),
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    for line in err.splitlines():
        assert ".py:" not in line and "Warning:" not in line, line
    assert any(line.startswith("mlmi impute: warning: ") for line in err.splitlines())


def test_seed_drawn_printed_and_stored(data, tmp_path, capsys):
    imp = mlmi.impute(data, "st", m=2, maxit=1)
    assert isinstance(imp.seed, int)
    assert imp.diagnostics.attrs["seed"] == imp.seed
    assert any(f"seed={imp.seed}" in note for note in imp.notes)
    again = mlmi.impute(data, "st", m=2, maxit=1, seed=imp.seed)
    np.testing.assert_array_equal(imp.imputations["x1"], again.imputations["x1"])
    data.to_csv(tmp_path / "in.csv", index=False)
    assert main(["impute", str(tmp_path / "in.csv"), "--cluster", "st", "--m", "2",
                 "--maxit", "1", "--out", str(tmp_path / "o.csv"), "--quiet"]) == 0
    err = capsys.readouterr().err
    import json

    seed = json.loads((tmp_path / "o.meta.json").read_text())["seed"]
    assert f"--seed {seed}" in err
    assert (pd.read_csv(tmp_path / "o.diagnostics.csv")["seed"] == seed).all()


def test_detected_separator_encoding_and_dot_codes(data, files, capsys):
    d = data.assign(x2=data["x2"].astype(object).where(data["x2"].notna(), "."))
    d.to_csv(files / "dots.csv", index=False, sep=";", encoding="latin-1")
    # a Latin-1 byte in a column name
    text = (files / "dots.csv").read_bytes().replace(b"x2", b"x\xe92")
    (files / "dots.csv").write_bytes(text)
    assert main(["impute", str(files / "dots.csv"), "--cluster", "st", "--m", "2",
                 "--maxit", "1", "--seed", "1", "--out", str(files / "o.csv"),
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "';'" in err and "Latin-1" in err and "'.'" in err
    out = pd.read_csv(files / "o.csv")
    assert "xé2" in out.columns and not out["xé2"].isna().any()
    assert main(["impute", str(files / "latin.csv"), "--cluster", "st", "--m", "2",
                 "--maxit", "1", "--seed", "1", "--out", str(files / "o2.csv"),
                 "--quiet"]) == 0
    assert set(pd.read_csv(files / "o2.csv")["town"]) == {"Zürich", "Genève"}


def test_results_print_in_full(imputed):
    fits = imputed.analyze("y ~ x1 + x2 + (1 + x1 | st)", "binomial")
    pd.set_option("display.max_columns", 4)  # even with a narrow user setting
    try:
        for table in (fits.pool(), fits.pool_random(), imputed.summary(),
                      fits.pool().round(3)):
            text = repr(table)
            assert "..." not in text and "columns]" not in text
            for col in table.columns:
                assert str(col) in text
            for row in table.index:
                assert str(row) in text
            html = table._repr_html_()
            assert "..." not in html and all(str(c) in html for c in table.columns)
    finally:
        pd.reset_option("display.max_columns")


def test_broken_pipe_is_quiet(files):
    long = files / "long.csv"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # block-buffered
    proc = subprocess.Popen([sys.executable, "-m", "mlmi", "pool", str(long), *POOL_F],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before the first line (| head -0)
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err
    assert (files / "long.pooled.csv").exists()  # the file is written before printing


def test_ctrl_c_while_writing_leaves_no_file(data, tmp_path, monkeypatch, capsys):
    data.to_csv(tmp_path / "in.csv", index=False)
    real = pd.DataFrame.to_csv

    def interrupted(self, path_or_buf=None, *args, **kwargs):
        if hasattr(path_or_buf, "write") and len(self) > len(data):
            real(self.iloc[: len(self) // 2], path_or_buf, *args, **kwargs)
            path_or_buf.flush()
            raise KeyboardInterrupt
        return real(self, path_or_buf, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", interrupted)
    code = main(["impute", str(tmp_path / "in.csv"), "--cluster", "st", "--m", "3",
                 "--maxit", "1", "--seed", "1", "--out", str(tmp_path / "out.csv"),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 130
    assert "interrupted" in err and "Traceback" not in err
    assert _files(tmp_path) == {"in.csv"}  # no final file, no temporary file


def test_ctrl_c_stops_parallel_chains(data, tmp_path):
    """SIGINT to the process group (what Ctrl-C in a terminal does) with --jobs 2: the
    command stops within seconds with status 130, no traceback and no file."""
    big = pd.concat([data] * 4, ignore_index=True)
    big.to_csv(tmp_path / "in.csv", index=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlmi", "impute", str(tmp_path / "in.csv"), "--cluster", "st",
         "--m", "4", "--maxit", "2000", "--seed", "1", "--jobs", "2", "--out",
         str(tmp_path / "out.csv")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        # Ctrl-C as in a terminal: a test run started in the background (``cmd &`` in a
        # script) has SIGINT ignored, which a child inherits and Python then respects
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    # wait until the chains are running (the progress bar moves), then interrupt
    while time.time() < deadline:
        time.sleep(1.0)
        if proc.poll() is not None:
            break
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                  text=True).stdout.split()
        if len(children) >= 2:
            time.sleep(3.0)
            break
    assert proc.poll() is None, proc.communicate()
    t0 = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    elapsed = time.time() - t0
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert elapsed < 10, elapsed
    assert _files(tmp_path) == {"in.csv"}


def test_a_bug_is_one_line_unless_debugging(files, monkeypatch, capsys):
    """An unexpected exception (a bug, not a user error) is one line naming it, status 1;
    MLMI_DEBUG=1 shows the traceback (re-raises)."""
    import mlmi.mice

    def broken(*args, **kwargs):
        raise RuntimeError("something\nwent wrong")

    monkeypatch.setattr(mlmi.mice, "impute", broken)
    argv = ["impute", str(files / "in.csv"), "--cluster", "st", "--seed", "1", "--out",
            str(files / "o.csv"), "--quiet"]
    monkeypatch.delenv("MLMI_DEBUG", raising=False)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "internal error" in err and "RuntimeError: something went wrong" in err
    assert "Traceback" not in err
    monkeypatch.setenv("MLMI_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(argv)
