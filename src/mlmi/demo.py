"""The applied demonstration: a CKD-like IPD meta-analysis, four methods side by side.

Mirrors the paper's case study (METHOD.md §7) on synthetic data with known truth:
15 studies of chronic kidney disease patients; outcome smoking (binary), covariates
alcohol use (binary) and number of comorbidities (count 0–4), auxiliary variables age
and sex. Alcohol is systematically missing in nine studies and sporadically in four;
comorbidities are systematically missing in one study; smoking is sporadically missing
in two. The analysis model is

    logit P(smoking) = a0 + a1 alcohol + a2 comorbidities + u0_i + u1_i alcohol,

fitted by complete-case analysis (CCA), after stratified imputation (STI), after the
paper's multilevel imputation (MLMI) and after two-stage imputation (2STG); the
imputation models of alcohol and comorbidities have a random intercept and a random
slope for smoking, with age and sex as auxiliary predictors.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .exceptions import ImputationWarning
from .io import atomic_path

FORMULA = "smoking ~ alcohol + comorbidities + (1 + alcohol | study)"
RANDOM = {"alcohol": ["smoking"], "comorbidities": ["smoking"]}
STRATEGIES = {"STI": "stratified", "MLMI": "mlmi", "2STG": "2stage"}
PARAMS = ("a0", "a1", "a2", "omega0", "omega1")


def _format_missingness(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| study | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for study, row in table.iterrows():
        cells = [str(int(row["n"]))]
        for c in cols[1:]:
            v = int(row[c])
            cells.append("**100** (systematic)" if v == 100 else str(v))
        lines.append(f"| {study} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _row(table: pd.DataFrame, rnd: pd.DataFrame) -> dict:
    """Estimates (and SEs) of a0..a2 and the random-effect SDs from a pooled table."""
    out = {}
    for name, term in zip(("a0", "a1", "a2"), ("(Intercept)", "alcohol", "comorbidities"),
                          strict=True):
        out[name] = float(table.loc[term, "estimate"])
        out[f"{name}_se"] = float(table.loc[term, "std_error"])
    out["omega0"] = float(rnd.loc["sd((Intercept))", "mean"])
    out["omega1"] = float(rnd.loc["sd(alcohol)", "mean"])
    return out


def run_demo(out: str | Path | None = None, *, m: int = 20, maxit: int = 10, seed: int = 2025,
             progress: bool = True, stream=None) -> pd.DataFrame:
    """Run the demonstration; print to ``stream`` and, if ``out`` is given, write tables
    (CSV, markdown) and figures (PNG) there. Returns the comparison table."""
    from . import plots
    from .analysis import complete_case
    from .datasets import ckd_like, ckd_truth, missingness_table
    from .mice import impute

    stream = stream or sys.stdout
    say = lambda text="": print(text, file=stream)  # noqa: E731
    t_start = time.perf_counter()
    data = ckd_like(seed)
    truth = ckd_truth()
    say("mlmi demo — multilevel multiple imputation of a CKD-like IPD meta-analysis")
    say(f"synthetic data: {data['study'].nunique()} studies, {len(data)} participants "
        f"(seed {seed}); m = {m} imputations, {maxit} iterations\n")
    miss = missingness_table(data)
    say("% missing per study; 'sys' = systematically missing (never measured in that study)")
    shown = miss.astype(object)
    for c in shown.columns[1:]:
        shown[c] = [f"{v} sys" if v == 100 else str(v) for v in miss[c]]
    say(shown.to_string())
    say("")
    results: dict[str, dict] = {}
    # REF: the same model on the data before amputation — what each method should
    # reproduce; with 15 studies it can differ from the truth by sampling error alone
    ref = complete_case(ckd_like(seed, complete=True), FORMULA, "binomial")
    results["REF"] = _row(ref.pool(), ref.pool_random())
    cc = complete_case(data, FORMULA, "binomial")
    results["CCA"] = _row(cc.pool(), cc.pool_random())
    say(f"CCA: {cc.n_used} of {cc.n_total} participants, {len(cc.studies_used)} studies "
        f"(dropped: {', '.join(map(str, cc.studies_dropped)) or 'none'})")
    imputed, pooled = {}, {"REF": ref.pool(), "CCA": cc.pool()}
    for name, strategy in STRATEGIES.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ImputationWarning)
            imp = impute(data, "study", m=m, maxit=maxit, method=strategy,
                         random=RANDOM if strategy == "mlmi" else None, seed=seed,
                         progress=progress)
        fits = imp.analyze(FORMULA, "binomial")
        pooled[name] = fits.pool()
        results[name] = _row(pooled[name], fits.pool_random())
        imputed[name] = imp
        summ = imp.summary()
        extra = ""
        if "acceptance_rate" in summ:
            rates = ", ".join(f"{v} {summ.loc[v, 'acceptance_rate']:.2f}"
                              for v in summ.index if pd.notna(summ.loc[v, "acceptance_rate"]))
            extra = f"; sampler acceptance {rates}"
        say(f"{name}: imputed in {time.perf_counter() - t0:.1f} s ({imp.methods}){extra}")
        for w in caught:
            if issubclass(w.category, ImputationWarning):
                say(f"  note: {str(w.message).removeprefix('mlmi.impute: ')}")
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    table = pd.DataFrame(results).T
    table.loc["truth"] = {**truth, **{f"{p}_se": np.nan for p in ("a0", "a1", "a2")}}
    table = table[["a0", "a0_se", "a1", "a1_se", "a2", "a2_se", "omega0", "omega1"]]
    say("\nanalysis model: " + FORMULA)
    say(_format_results(table))
    say("\nREF = the complete data before amputation (the target of every method); truth = "
        "the generating values.\nSEs by Rubin's rules; omega = random-effect SDs averaged "
        f"over the imputations; total {time.perf_counter() - t_start:.0f} s")
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = _write_outputs(out, data, miss, table, imputed, pooled, truth, plots)
        say(f"\nwrote {len(written)} files to {out}/: " + ", ".join(p.name for p in written))
    return table


def _format_results(table: pd.DataFrame) -> str:
    lines = [f"{'':<7}{'a0':>16}{'a1':>16}{'a2':>17}{'omega0':>9}{'omega1':>9}"]
    for method, r in table.iterrows():
        cells = [_estimate(r, p) for p in ("a0", "a1", "a2")]
        lines.append(f"{method:<7}{cells[0]:>16}{cells[1]:>16} {cells[2]:>16}"
                     f"{r['omega0']:>9.3f}{r['omega1']:>9.3f}")
    return "\n".join(lines)


def _estimate(r: pd.Series, p: str) -> str:
    """'estimate (SE)', or the estimate alone for the truth row."""
    if pd.isna(r[f"{p}_se"]):
        return f"{r[p]:>8.3f}{'':>8}"
    return f"{r[p]:>8.3f} ({r[f'{p}_se']:.3f})"


TERM_LABELS = {"(Intercept)": "(Intercept)  [a0]", "alcohol": "alcohol  [a1]",
               "comorbidities": "comorbidities  [a2]"}


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _write_outputs(out: Path, data, miss, table, imputed, pooled, truth, plots) -> list[Path]:
    written = []
    with atomic_path(out / "missingness.csv") as tmp:
        miss.to_csv(tmp)
    _write_text(out / "missingness.md", "% missing per study (Table 4 layout)\n\n"
                + _format_missingness(miss) + "\n")
    with atomic_path(out / "results.csv") as tmp:
        table.to_csv(tmp)
    _write_text(out / "results.md",
                f"Analysis model: `{FORMULA}`\n\n" + _results_markdown(table) + "\n")
    written += [out / "missingness.csv", out / "missingness.md", out / "results.csv",
                out / "results.md"]
    figs = {
        "missingness_map.png": plots.missingness_map(data, "study"),
        "trace_mlmi.png": plots.trace_plot(imputed["MLMI"]),
        "imputed_alcohol.png": plots.observed_vs_imputed(imputed["MLMI"], "alcohol"),
        "imputed_comorbidities.png": plots.observed_vs_imputed(imputed["MLMI"],
                                                               "comorbidities"),
        # panels named by the model's terms, with the paper's parameter beside them
        "forest.png": plots.forest_plot(
            {k: v.rename(index=TERM_LABELS) for k, v in pooled.items()},
            truth={TERM_LABELS[t]: truth[p] for t, p in
                   zip(TERM_LABELS, ("a0", "a1", "a2"), strict=True)}),
    }
    for name, fig in figs.items():
        plots.save(fig, out / name)
        written.append(out / name)
    return written


def _results_markdown(table: pd.DataFrame) -> str:
    head = "| method | a0 (SE) | a1 (SE) | a2 (SE) | omega0 | omega1 |"
    lines = [head, "|---|---|---|---|---|---|"]
    for method, r in table.iterrows():
        cells = []
        for p in ("a0", "a1", "a2"):
            se = r[f"{p}_se"]
            cells.append(f"{r[p]:.3f}" + ("" if pd.isna(se) else f" ({se:.3f})"))
        lines.append(f"| {method} | " + " | ".join(cells)
                     + f" | {r['omega0']:.3f} | {r['omega1']:.3f} |")
    return "\n".join(lines)
