"""The paper's tables and figures from a simulation run.

Tables 1–3 of the paper: binary outcome, 10 studies, MAR, one table per heterogeneity
level; here with both proportions of systematically missing studies, as markdown and
CSV. Figures like the paper's Figures 1–5 (binary) and A1–A5 (continuous outcome): for
each parameter, bias, coverage and RMSE against the number of studies, one panel per
heterogeneity level, one line per method, ±1.96 Monte Carlo SE as error bars; one
figure per mechanism and proportion of systematically missing studies.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..io import atomic_path
from .replication import METHODS, PARAMETERS
from .summary import summarize

HETEROGENEITY = ("weak", "moderate", "strong")
FIXED = ("a0", "a1", "a2")
_COLORS = {"REF": "black", "CCA": "tab:gray", "STI": "tab:orange", "MLMI": "tab:blue",
           "2STG": "tab:green"}
_MARKERS = {"REF": "o", "CCA": "x", "STI": "s", "MLMI": "D", "2STG": "^"}


def paper_table(summary: pd.DataFrame, heterogeneity: str, *, outcome: str = "binary",
                studies: int = 10, mechanism: str = "mar") -> pd.DataFrame:
    """One of the paper's Tables 1–3: rows (sys, method); for a0, a1, a2 the bias, model
    SE, empirical SE, RMSE and coverage; for omega0, omega1 the mean and bias."""
    s = summary[(summary.outcome == outcome) & (summary.studies == studies)
                & (summary.mechanism == mechanism) & (summary.heterogeneity == heterogeneity)]
    rows = []
    for (sys_, method), g in s.groupby(["sys", "method"], sort=True):
        row = {"sys": sys_, "method": method}
        for _, r in g.iterrows():
            p = r["parameter"]
            if p in FIXED:
                for m in ("bias", "model_se", "emp_se", "rmse", "coverage"):
                    row[(p, m)] = r[m]
            else:
                row[(p, "mean")] = r["mean"]
                row[(p, "bias")] = r["bias"]
        row["n"] = int(g["n"].min())
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(METHODS)}
    table = table.sort_values(["sys", "method"], key=lambda c: c.map(order) if c.name ==
                              "method" else c).set_index(["sys", "method"])
    return table


def _markdown(table: pd.DataFrame, title: str) -> str:
    cols = [c for c in table.columns if c != "n"]
    head = ["π_sys", "method", *[f"{c[0]} {c[1].replace('_', ' ')}" for c in cols], "reps"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] * len(head)) + "|"]
    for (sys_, method), r in table.iterrows():
        cells = [f"{sys_:g}", method]
        for c in cols:
            v = r[c]
            if c[1] == "coverage":
                cells.append("" if pd.isna(v) else f"{100 * v:.1f}")
            else:
                cells.append("" if pd.isna(v) else f"{v:.3f}")
        cells.append(str(int(r["n"])))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(summary: pd.DataFrame, outcome: str, parameter: str, mechanism: str, sys_: float):
    """Bias, coverage (fixed effects) and RMSE of ``parameter`` against the number of
    studies; columns = heterogeneity levels; one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summary[(summary.outcome == outcome) & (summary.parameter == parameter)
                & (summary.mechanism == mechanism) & (summary.sys == sys_)]
    measures = [("bias", "bias_mcse", "Bias"), ("coverage", "coverage_mcse", "Coverage"),
                ("rmse", "rmse_mcse", "RMSE")]
    if parameter not in FIXED:
        measures = [measures[0], measures[2]]
    fig, axes = plt.subplots(len(measures), 3, figsize=(11, 2.8 * len(measures)),
                             sharex=True, squeeze=False)
    for j, het in enumerate(HETEROGENEITY):
        sh = s[s.heterogeneity == het]
        for i, (col, mc, label) in enumerate(measures):
            ax = axes[i, j]
            for k, method in enumerate(METHODS):
                d = sh[sh.method == method].sort_values("studies")
                if d.empty:
                    continue
                dodge = 0.25 * (k - (len(METHODS) - 1) / 2)  # keep error bars apart
                ax.errorbar(d["studies"] + dodge, d[col], yerr=1.96 * d[mc], label=method,
                            color=_COLORS[method], marker=_MARKERS[method], ms=4, lw=1.2,
                            capsize=2)
            if col == "bias":
                ax.axhline(0.0, color="0.6", lw=0.8)
            if col == "coverage":
                ax.axhline(0.95, color="0.6", lw=0.8)
            if i == 0:
                ax.set_title(f"{het} heterogeneity")
            if j == 0:
                ax.set_ylabel(label)
            if i == len(measures) - 1:
                ax.set_xlabel("number of studies")
                ax.set_xticks(sorted(s["studies"].unique()))
            ax.grid(alpha=0.3)
    legend = {}
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(lab, h)
    if legend:
        fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=len(legend),
                   frameon=False)
    fig.suptitle(f"{parameter} — {outcome} outcome, {mechanism.upper()}, "
                 f"π_sys = {sys_:g} (error bars ±1.96 Monte Carlo SE)")
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    return fig


def report(out: str | Path | pd.DataFrame, dest: str | Path) -> list[Path]:
    """Write the paper's tables (markdown and CSV) and figures (PNG) to ``dest``.

    ``out``: a run directory or the DataFrame of :func:`mlmi.simulation.load`. Also
    writes ``summary.csv`` with every performance measure and its Monte Carlo SE.
    Returns the paths written.
    """
    import matplotlib.pyplot as plt

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    summary = summarize(out)
    written = []
    path = dest / "summary.csv"
    with atomic_path(path) as tmp:  # every file complete or absent
        summary.to_csv(tmp, index=False)
    written.append(path)
    md = ["# Simulation results", "",
          "Performance of each method (METHOD.md §6); bias, SEs and RMSE on the scale of the "
          "parameter, coverage of the 95 % interval in %. Monte Carlo SEs of every measure "
          "are in summary.csv.", ""]
    for k, het in enumerate(HETEROGENEITY, start=1):
        table = paper_table(summary, het)
        if table.empty:
            continue
        csv = dest / f"table{k}_binary_k10_mar_{het}.csv"
        flat = table.copy()
        flat.columns = [c if isinstance(c, str) else f"{c[0]}_{c[1]}" for c in flat.columns]
        with atomic_path(csv) as tmp:
            flat.to_csv(tmp)
        written.append(csv)
        md.append(_markdown(table, f"Table {k}: binary outcome, 10 studies, MAR, {het} "
                                   "heterogeneity"))
    path = dest / "tables.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(md))
    written.append(path)
    for outcome, prefix in (("binary", "fig"), ("continuous", "figA")):
        for (mech, sys_), _ in summary[summary.outcome == outcome].groupby(
                ["mechanism", "sys"]):
            for i, parameter in enumerate(PARAMETERS, start=1):
                fig = figure(summary, outcome, parameter, mech, sys_)
                path = dest / f"{prefix}{i}_{outcome}_{parameter}_{mech}_sys{sys_:g}.png"
                with atomic_path(path) as tmp:
                    fig.savefig(tmp, dpi=110)
                plt.close(fig)
                written.append(path)
    return written


__all__ = ["figure", "paper_table", "report"]
