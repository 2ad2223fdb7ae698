"""Figures for checking an imputation and for reporting its results.

* :func:`missingness_map` — studies × variables: the share missing in every cell,
  systematically missing cells (the study never measured the variable) marked apart;
* :func:`trace_plot` — convergence: mean and SD of the imputed values per iteration,
  one line per chain (mice's ``plot(mids)``);
* :func:`observed_vs_imputed` — observed and imputed values of one variable, study by
  study (mice's ``densityplot`` / ``stripplot``, and proportions for binary variables);
* :func:`forest_plot` — estimates and confidence intervals of several methods, one
  panel per term;
* :func:`save` — write a figure to a file.

Every function returns a :class:`matplotlib.figure.Figure` with its own Agg canvas: it
shows nothing, does not change matplotlib's backend and leaves no figure open in pyplot
(nothing to close), so it is safe in scripts, on servers and in parallel jobs. In
Jupyter a returned figure displays itself. Colours follow mice: observed values blue,
imputed values red; systematically missing studies are orange throughout; methods keep
the colours of the simulation report (:mod:`mlmi.simulation.reporting`).

    from mlmi import plots
    plots.save(plots.missingness_map(data, "study"), "missing.png")
    plots.save(plots.trace_plot(imputed), "trace.png")
    plots.save(plots.observed_vs_imputed(imputed, "alcohol"), "alcohol.png")
    plots.save(plots.forest_plot({"CCA": cc.pool(), "MLMI": fits.pool()}), "forest.png")
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator, PercentFormatter

from . import vartypes
from .exceptions import InputError
from .methods import SYSTEMATIC
from .mice.imputed import Imputed

__all__ = ["forest_plot", "missingness_map", "observed_vs_imputed", "save", "trace_plot"]

#: mice's colours for observed (blue) and imputed (red) values
OBSERVED = "#006CC2"
IMPUTED = "#B61A51"
#: systematically missing: cell colour of the map and panel tint elsewhere
SYSTEMATIC_COLOR = "#E8871E"
SYSTEMATIC_TINT = "#FCE9D4"
#: colours and markers of the methods, as in the simulation report
METHOD_COLORS = {"REF": "black", "CCA": "tab:gray", "STI": "tab:orange", "MLMI": "tab:blue",
                 "2STG": "tab:green"}
METHOD_MARKERS = {"REF": "o", "CCA": "v", "STI": "s", "MLMI": "D", "2STG": "^"}
_SYSTEMATIC_LABEL = "100 % (systematic)"


def _figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas (no pyplot, no global backend change)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | Path, *, dpi: int = 110, **kwargs) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix: .png, .pdf, .svg, …) with a
    tight bounding box; missing parent directories are created. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("bbox_inches", "tight")
    from .io import atomic_path

    with atomic_path(path) as tmp:  # never a half-written figure under its name
        fig.savefig(tmp, dpi=dpi, format=kwargs.pop("format", None) or path.suffix[1:] or None,
                    **kwargs)
    return path


# ====================================================================== missingness map
def _missing_counts(data: pd.DataFrame, cluster: str, variables: list[str]):
    """Study labels (sorted, as in :class:`Imputed`), study sizes and the studies ×
    variables matrix of missing counts. Rows without a study are left out."""
    codes, labels = pd.factorize(data[cluster], sort=True)
    keep = codes >= 0
    codes = codes[keep]
    k = len(labels)
    sizes = np.bincount(codes, minlength=k)
    counts = np.empty((k, len(variables)), dtype=np.int64)
    for j, var in enumerate(variables):
        na = data[var].isna().to_numpy()[keep]
        counts[:, j] = np.bincount(codes[na], minlength=k)
    return np.asarray(labels), sizes, counts


def _resolve(data, cluster, variables):
    if isinstance(data, Imputed):
        if cluster is not None and cluster != data.cluster:
            raise InputError(f"cluster={cluster!r}, but the imputation's study column is "
                             f"{data.cluster!r}; leave cluster out for an Imputed")
        cluster, data = data.cluster, data.data
    if not isinstance(data, pd.DataFrame):
        raise InputError(f"data must be a pandas DataFrame or an Imputed, not "
                         f"{type(data).__name__}")
    if cluster is None:
        raise InputError("cluster (the study column) is required for a DataFrame")
    if cluster not in data.columns:
        raise InputError(f"cluster={cluster!r} is not a column of data "
                         f"(columns: {list(data.columns)[:20]})")
    if variables is None:
        variables = [c for c in data.columns if c != cluster]
    else:
        variables = [variables] if isinstance(variables, str) else list(variables)
        unknown = [v for v in variables if v not in data.columns]
        if unknown:
            raise InputError(f"variables {unknown} are not columns of data")
        if cluster in variables:
            raise InputError(f"variables contains the study column {cluster!r}")
    if not variables:
        raise InputError("no variables to show")
    return data, cluster, variables


def missingness_map(data: pd.DataFrame | Imputed, cluster: str | None = None,
                    variables: list[str] | None = None, *, annotate: bool = True,
                    cmap: str = "Blues") -> Figure:
    """Studies × variables grid of the share of missing values.

    Parameters
    ----------
    data : the incomplete data, or an :class:`~mlmi.Imputed` (its incomplete data and
        study column are used).
    cluster : the study column (not needed for an ``Imputed``).
    variables : columns to show, in this order (default: every column but the study).
    annotate : write the percentage into every incomplete cell.
    cmap : colour map of the share of sporadically missing values.

    Each cell is shaded by the share of the study's participants missing the variable
    (white: complete). Cells where the variable is missing for every participant — it
    was not measured in that study (systematically missing) — are drawn in orange with
    hatching and labelled "sys"; the legend says "100 % (systematic)". The study axis
    gives each study's number of participants, the variable axis each variable's share
    missing over all studies. Studies are in sorted order (as in ``Imputed``); rows
    without a study are left out.

    The image holds the shares (``fig.axes[0].images[0].get_array()``, studies × variables)
    and each systematic cell is a :class:`~matplotlib.patches.Rectangle` with gid
    ``"systematic"`` centred on its cell.
    """
    data, cluster, variables = _resolve(data, cluster, variables)
    labels, sizes, counts = _missing_counts(data, cluster, variables)
    k, p = counts.shape
    share = counts / np.maximum(sizes, 1)[:, None]
    systematic = (counts == sizes[:, None]) & (sizes[:, None] > 0)

    # cells wide enough for the variable names up to ~13 characters, else names rotated
    longest = max(len(str(v)) for v in variables)
    cell = max(0.72, 0.08 * longest + 0.1)
    rotate = cell > 1.2
    if rotate:
        cell = 0.72
    width = 2.8 + cell * p + 1.3
    height = 2.2 + 0.3 * k
    fig = _figure(width, height)
    ax = fig.add_subplot()
    colors = _share_colormap(cmap)
    # complete cells (share 0) fall below vmin: drawn in the colour map's "under" white
    image = ax.imshow(share, cmap=colors, vmin=1e-12, vmax=1.0, aspect="auto",
                      interpolation="nearest")
    for i, j in zip(*np.nonzero(systematic), strict=True):
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1.0, 1.0, facecolor=SYSTEMATIC_COLOR,
                               edgecolor="white", hatch="///", linewidth=0.0,
                               gid="systematic"))
    if annotate:
        size = 8 if p <= 12 else 6
        for i in range(k):
            for j in range(p):
                if systematic[i, j]:
                    ax.text(j, i, "sys", ha="center", va="center", fontsize=size,
                            color="black", fontweight="bold",
                            bbox={"boxstyle": "round,pad=0.1", "fc": SYSTEMATIC_COLOR,
                                  "ec": "none"})
                elif counts[i, j]:
                    ax.text(j, i, _percent(share[i, j]), ha="center", va="center",
                            fontsize=size, color="white" if share[i, j] > 0.6 else "black")

    # cell borders
    ax.set_xticks(np.arange(p + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(k + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="0.82", linewidth=0.8)
    ax.tick_params(which="minor", length=0)
    ax.tick_params(which="major", length=0)

    overall = counts.sum(axis=0) / max(int(sizes.sum()), 1)
    ax.set_xticks(np.arange(p), [f"{v}\n{_percent(s, zero='0 %')}" for v, s in
                                 zip(variables, overall, strict=True)])
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("variable (share missing over all studies)")
    if rotate:
        for tick in ax.get_xticklabels():
            tick.set(rotation=35, ha="left", rotation_mode="anchor")
    ax.set_yticks(np.arange(k), [f"{lab} (n = {n})" for lab, n in
                                 zip(labels, sizes, strict=True)])
    ax.set_ylabel(f"{cluster} (participants)")
    bar = fig.colorbar(image, ax=ax, shrink=min(1.0, 6.0 / max(height - 2.2, 1e-9)),
                       format=PercentFormatter(1.0), pad=0.02, ticks=np.linspace(0, 1, 6))
    bar.set_label("share missing (sporadic)")
    handles = [Patch(facecolor="white", edgecolor="0.6", label="complete"),
               Patch(facecolor=colors(0.35), edgecolor="0.6",
                     label="sporadically missing (some participants)"),
               Patch(facecolor=SYSTEMATIC_COLOR, edgecolor="white", hatch="///",
                     label=f"{_SYSTEMATIC_LABEL}: not measured in the study")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3 if width > 9 else 1,
               frameon=False, fontsize=8)
    n_sys = int(systematic.any(axis=0).sum())
    fig.suptitle(f"Missing values: {k} studies, {int(sizes.sum())} participants; "
                 f"{n_sys} of {p} variables systematically missing in at least one study",
                 fontsize=10)
    return fig


def _share_colormap(name: str):
    """``name`` without its palest 15 % (so that small shares stand out from the white of
    complete cells), white below the range."""
    from matplotlib.colors import ListedColormap

    base = colormaps[name]
    return ListedColormap(base(np.linspace(0.15, 1.0, 256)), name=f"{name}_share") \
        .with_extremes(under="white")


def _percent(s: float, zero: str = "") -> str:
    if s <= 0:
        return zero
    if s < 0.01:
        return "<1 %"
    if s > 0.99 and s < 1:
        return ">99 %"
    return f"{100 * s:.0f} %"


# ====================================================================== trace plot
def trace_plot(imputed: Imputed, variables: list[str] | None = None) -> Figure:
    """Convergence of the chained equations, as mice's ``plot(mids)``.

    One row per imputed variable; left the mean, right the SD of the variable's imputed
    values at the end of each iteration, one line per chain (imputation). The chains
    should mix — cross and wander over the same band without trends — by the last
    iteration. For binary variables the mean is the share of imputed 1s.
    """
    if not isinstance(imputed, Imputed):
        raise InputError(f"imputed must be an Imputed, not {type(imputed).__name__}")
    chains = imputed.chains
    available = list(dict.fromkeys(chains["variable"]))
    if variables is None:
        variables = [v for v in imputed.visit_sequence if v in available] or available
    else:
        variables = [variables] if isinstance(variables, str) else list(variables)
        unknown = [v for v in variables if v not in available]
        if unknown:
            raise InputError(f"no chains for {unknown}; imputed variables: {available}")
    if not variables:
        raise InputError("the imputation has no imputed variables")
    ids = sorted(chains["chain"].unique())
    colors = _chain_colors(len(ids))
    types = imputed.types
    fig = _figure(8.0, 0.9 + 2.1 * len(variables))
    axes = fig.subplots(len(variables), 2, sharex=True, squeeze=False)
    for row, var in zip(axes, variables, strict=True):
        sub = chains[chains["variable"] == var]
        for c, color in zip(ids, colors, strict=True):
            d = sub[sub["chain"] == c].sort_values("iteration")
            for ax, stat in zip(row, ("mean", "sd"), strict=True):
                ax.plot(d["iteration"], d[stat], color=color, lw=1.2, marker="o", ms=2.5,
                        label=f"chain {c}")
        label = vartypes.REGISTRY[types[var]].mean_label if var in types else ""
        row[0].set_ylabel(f"mean {var}" + (f"\n({label})" if label else ""))
        row[1].set_ylabel(f"sd {var}")
        for ax in row:
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[-1]:
        ax.set_xlabel("iteration")
    if len(ids) <= 12:
        handles, names = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncol=min(len(ids), 6),
                   frameon=False, fontsize=8)
    fig.suptitle(f"Imputed values per iteration ({imputed.m} chains, {imputed.maxit} "
                 "iterations)", fontsize=10)
    return fig


def _chain_colors(n: int) -> list:
    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    return [colormaps["viridis"](x) for x in np.linspace(0.0, 0.95, n)]


# ====================================================================== observed vs imputed
def observed_vs_imputed(imputed: Imputed, variable: str, by_study: bool = True, *,
                        kind: str | None = None, max_studies: int | None = None) -> Figure:
    """Observed against imputed values of ``variable``, study by study.

    The question it answers: are the imputations plausible — in particular in studies
    where the variable was never measured (systematically missing, marked orange), whose
    imputations come from the other studies alone? Observed values are blue, imputed red
    (as in mice).

    ``kind`` (default by the variable's type, :attr:`mlmi.vartypes.VarType.plot_kinds`):

    * ``"proportion"`` (binary) — one panel: per study the observed share of 1s with its
      95 % Wilson interval, the imputed share of every imputation (small red marks) and
      their mean (red diamond); systematic studies shaded. The dashed line is the
      observed share over all studies. Tick labels give ``imputed / participants``.
    * ``"bar"`` (count, ordinal, nominal) — one panel per study: relative frequencies
      of each value (of each category, labelled by its level, for ordinal and nominal
      variables: the study's category shares), observed (blue) and imputed (red, all
      imputations together); the dotted grey line is the observed distribution over all
      studies. Count values above the range shown are counted in the last bar
      (labelled "≥").
    * ``"density"`` (continuous) — one panel per study, as mice's ``densityplot``:
      kernel density of the observed values (thick blue) and of each imputation (thin
      red); the dotted grey line is the observed density over all studies. Groups too
      small for a density are drawn as rug ticks.
    * ``"strip"`` (count or continuous) — one panel, as mice's ``stripplot``: the values
      of each study, observed left, imputed right (jittered).

    ``by_study=False`` pools the studies into one panel (for ``"proportion"`` and
    ``"strip"``: observed, then imputation 1..m, as mice's ``stripplot``).
    ``max_studies``: show only the first so many studies (in sorted order).
    """
    if not isinstance(imputed, Imputed):
        raise InputError(f"imputed must be an Imputed, not {type(imputed).__name__}")
    if variable not in imputed.imputations:
        raise InputError(f"{variable!r} was not imputed; imputed variables: "
                         f"{list(imputed.imputations)}")
    vals = _values(imputed, variable)
    allowed = vartypes.REGISTRY[vals["vtype"]].plot_kinds
    if kind is None:
        kind = allowed[0]
    elif kind not in allowed:
        raise InputError(f"kind={kind!r} for the {vals['vtype']} variable {variable!r}: "
                         f"use one of {list(allowed)}")
    if max_studies is not None:
        if max_studies < 1:
            raise InputError(f"max_studies={max_studies!r} must be >= 1")
        vals["shown"] = np.arange(min(max_studies, len(vals["labels"])))
    draw = {"proportion": _proportions, "bar": _bars, "density": _densities,
            "strip": _strips}[kind]
    fig = draw(vals, by_study)
    fig.suptitle(f"{variable}: observed (blue) and imputed (red) values, {vals['m']} "
                 f"imputation{'s' if vals['m'] != 1 else ''}", fontsize=10)
    return fig


def _values(imputed: Imputed, variable: str) -> dict:
    """Everything the observed-vs-imputed figures need, on the numeric (0/1) scale."""
    plan = imputed.plan
    from .mice.sampler import get_values

    spec = plan.variables[variable]
    x = get_values(plan, plan.work, variable)  # category codes for a categorical one
    miss = plan.missing[variable]
    imp = np.asarray(imputed.imputations[variable], dtype=float)
    if imp.ndim == 1:
        imp = imp[None, :]
    imp = spec.kind.imputed_scale(imp)  # e.g. counts rounded as in the output
    k = plan.labels.size
    return {"variable": variable, "vtype": spec.vtype, "levels": spec.levels,
            "cluster": plan.cluster, "labels": plan.labels,
            "sizes": np.bincount(plan.codes, minlength=k), "status": plan.status[variable],
            "obs": x[~miss], "obs_codes": plan.codes[~miss], "imp": imp,
            "imp_codes": plan.codes[miss], "m": imp.shape[0], "shown": np.arange(k)}


def _study_title(v: dict, s: int) -> str:
    n = int(v["sizes"][s])
    n_mis = int(np.sum(v["imp_codes"] == s))
    if v["status"][s] == SYSTEMATIC:
        what = "systematic: all imputed"
    elif n_mis:
        what = f"sporadic: {n_mis} imputed"
    else:
        what = "complete"
    import textwrap

    # a long study name wraps rather than running into the neighbouring panel's title
    label = textwrap.fill(f"{v['labels'][s]} (n = {n})", 34)
    return f"{label}\n{what}"


def _panel_grid(n: int, panel_w: float = 2.3, panel_h: float = 1.9):
    ncols = min(n, 4 if n <= 8 else 5 if n <= 20 else 6)
    nrows = math.ceil(n / ncols)
    fig = _figure(0.6 + panel_w * ncols, 1.3 + panel_h * nrows)
    grid = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    axes = list(grid.ravel()[:n])
    for extra in grid.ravel()[n:]:
        fig.delaxes(extra)
    for idx, ax in enumerate(axes):  # x tick labels on the lowest panel of each column
        if idx + ncols >= n:
            ax.xaxis.set_tick_params(labelbottom=True)
    return fig, axes, ncols


def _outer_labels(axes, xlabel: str, ylabel: str) -> None:
    """Axis labels on the panels that show tick labels (bottom of each column, left
    of each row)."""
    for ax in axes:
        if ax.xaxis.get_tick_params()["labelbottom"]:
            ax.set_xlabel(xlabel, fontsize=9)
        if ax.yaxis.get_tick_params()["labelleft"]:
            ax.set_ylabel(ylabel, fontsize=9)


def _tint(ax, systematic: bool) -> None:
    if systematic:
        ax.set_facecolor(SYSTEMATIC_TINT)


def _wilson(ones: np.ndarray, n: np.ndarray, z: float = 1.959964):
    with np.errstate(invalid="ignore", divide="ignore"):
        p = ones / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return p, centre - half, centre + half


def _study_figure(v: dict, shown: np.ndarray):
    """A figure with one x position per shown study, systematically missing ones tinted:
    (fig, ax, positions, systematic mask)."""
    fig = _figure(2.2 + 0.42 * len(shown), 4.2)
    ax = fig.add_subplot()
    pos = np.arange(len(shown))
    sys_ = v["status"][shown] == SYSTEMATIC
    for x in pos[sys_]:
        ax.axvspan(x - 0.5, x + 0.5, color=SYSTEMATIC_TINT, zorder=0, lw=0)
    return fig, ax, pos, sys_


def _label_studies(ax, v: dict, shown: np.ndarray, sys_: np.ndarray,
                   n_mis: np.ndarray) -> None:
    """Study ticks "label / imputed of participants", systematic studies in bold colour."""
    ax.set_xticks(np.arange(len(shown)),
                  [f"{v['labels'][s]}\n{n_mis[s]}/{v['sizes'][s]}" for s in shown],
                  fontsize=8)
    for tick, s in zip(ax.get_xticklabels(), sys_, strict=True):
        if s:
            tick.set_color(SYSTEMATIC_COLOR)
            tick.set_fontweight("bold")
    ax.set_xlim(-0.6, len(shown) - 0.4)
    ax.set_xlabel(f"{v['cluster']} (imputed / participants)")
    _fit_tick_labels(ax)


def _overlapping(labels, renderer, gap: float = 2.0) -> bool:
    boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
    return any(a.x1 + gap > b.x0 for a, b in itertools.pairwise(boxes))


def _fit_tick_labels(ax) -> None:
    """Study labels on the x axis must not overlap (long or many labels): measured as
    drawn; if they collide they are turned upright, and if they still do only every
    k-th is kept (the others stay as ticks)."""
    renderer = ax.figure.canvas.get_renderer()
    labels = [t for t in ax.get_xticklabels() if t.get_text()]
    if len(labels) < 2 or not _overlapping(labels, renderer):
        return
    for t in labels:
        t.set(rotation=90, ha="center", va="top", rotation_mode="default")
    if not _overlapping(labels, renderer):
        return
    for step in range(2, len(labels)):
        shown = labels[::step]
        for i, t in enumerate(labels):
            t.set_visible(i % step == 0)
        if not _overlapping(shown, renderer):
            return


def _proportions(v: dict, by_study: bool) -> Figure:
    level = v["levels"][1] if v["levels"] else 1
    if isinstance(level, (float, np.floating)) and float(level).is_integer():
        level = int(level)
    ylabel = f"share with {v['variable']} = {level}"
    k = len(v["labels"])
    if not by_study:
        fig = _figure(1.6 + 0.5 * (v["m"] + 1), 3.6)
        ax = fig.add_subplot()
        shares = [v["obs"].mean() if v["obs"].size else np.nan,
                  *(row.mean() if row.size else np.nan for row in v["imp"])]
        colors = [OBSERVED] + [IMPUTED] * v["m"]
        bars = ax.bar(np.arange(v["m"] + 1), shares, color=colors, width=0.7)
        bars[0].set_gid("observed")
        for b in bars[1:]:
            b.set_gid("imputed")
        ax.set_xticks(np.arange(v["m"] + 1), ["obs", *map(str, range(1, v["m"] + 1))])
        ax.set_xlabel("observed / imputation")
        ax.set_ylabel(ylabel)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
        return fig

    shown = v["shown"]
    n_obs = np.bincount(v["obs_codes"], minlength=k).astype(float)
    ones = np.bincount(v["obs_codes"], weights=v["obs"], minlength=k)
    p, lo, hi = _wilson(ones, n_obs)
    n_mis = np.bincount(v["imp_codes"], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.stack([np.bincount(v["imp_codes"], weights=row, minlength=k) / n_mis
                      for row in v["imp"]])
    fig, ax, pos, sys_ = _study_figure(v, shown)
    if v["obs"].size:
        ax.axhline(v["obs"].mean(), color=OBSERVED, ls="--", lw=0.8, alpha=0.8,
                   label="observed, all studies", gid="observed-all")
    has = n_obs[shown] > 0
    ps, los, his = p[shown][has], lo[shown][has], hi[shown][has]
    eb = ax.errorbar(pos[has] - 0.15, ps, yerr=[ps - los, his - ps], fmt="o", ms=5,
                     color=OBSERVED, capsize=2, lw=1, label="observed (95 % CI)")
    eb.lines[0].set_gid("observed")
    imp_has = n_mis[shown] > 0
    if imp_has.any():
        m = v["m"]
        offsets = 0.15 + (np.linspace(-0.08, 0.08, m) if m > 1 else np.zeros(1))
        xs = (pos[imp_has][None, :] + offsets[:, None]).ravel()
        ax.plot(xs, q[:, shown][:, imp_has].ravel(), ls="none", marker="_", ms=7, mew=1.2,
                color=IMPUTED, alpha=0.7, label="imputed, each imputation", gid="imputed")
        ax.plot(pos[imp_has] + 0.15, q[:, shown][:, imp_has].mean(axis=0), ls="none",
                marker="D", ms=5, color=IMPUTED, label="imputed, mean",
                gid="imputed-mean")
    _label_studies(ax, v, shown, sys_, n_mis)
    ax.set_ylim(-0.03, 1.03)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    _figure_legend(fig, [ax], bool(sys_.any()), ncol=3)
    return fig


def _count_frequencies(values: np.ndarray, top: int) -> np.ndarray:
    if values.size == 0:
        return np.full(top + 1, np.nan)
    idx = np.clip(np.round(values), 0, top).astype(np.int64)
    return np.bincount(idx, minlength=top + 1) / values.size


def _bars(v: dict, by_study: bool) -> Figure:
    obs, imp = v["obs"], v["imp"]
    top = int(np.max(obs)) if obs.size else 0
    if imp.size:
        top = max(top, int(np.quantile(imp, 0.995)))
    top = min(max(top, 1), 25)
    over = (obs.size and np.max(obs) > top) or (imp.size and np.max(imp) > top)
    xs = np.arange(top + 1)
    ticks = [str(x) for x in xs]
    if vartypes.REGISTRY[v["vtype"]].categorical:  # codes: label the bars with the levels
        top = len(v["levels"]) - 1
        xs = np.arange(top + 1)
        ticks = [str(lv) for lv in v["levels"]]
        over = False
    if over:
        ticks[-1] = f"≥{top}"
    overall = _count_frequencies(obs, top)

    def panel(ax, o, i, reference):
        if o.size:
            ax.bar(xs - 0.2, _count_frequencies(o, top), 0.4, color=OBSERVED,
                   label="observed", gid="observed")
        if i.size:
            ax.bar(xs + 0.2, _count_frequencies(i, top), 0.4, color=IMPUTED,
                   label="imputed (all imputations)", gid="imputed")
        if reference:
            ax.plot(xs, overall, color="0.3", ls=":", marker=".", lw=1,
                    label="observed, all studies", gid="observed-all")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.grid(axis="y", alpha=0.3)

    step = max(1, math.ceil(len(xs) / 8))
    if not by_study:
        fig = _figure(5.0, 3.6)
        ax = fig.add_subplot()
        panel(ax, obs, imp.ravel(), reference=False)
        axes = [ax]
    else:
        fig, axes, _ = _panel_grid(len(v["shown"]))
        for ax, s in zip(axes, v["shown"], strict=True):
            panel(ax, obs[v["obs_codes"] == s], imp[:, v["imp_codes"] == s].ravel(),
                  reference=True)
            ax.set_title(_study_title(v, s), fontsize=8)
            _tint(ax, v["status"][s] == SYSTEMATIC)
    for ax in axes:
        ax.set_xticks(xs[::step], ticks[::step])
    _outer_labels(axes, v["variable"], "relative frequency")
    _figure_legend(fig, axes, by_study and _any_systematic(v), ncol=4, patch_edge="0.7")
    return fig


def _kde(values: np.ndarray, grid: np.ndarray):
    from scipy.stats import gaussian_kde

    if values.size < 2 or np.ptp(values) == 0:
        return None
    try:
        return gaussian_kde(values)(grid)
    except (np.linalg.LinAlgError, ValueError):
        return None


def _densities(v: dict, by_study: bool) -> Figure:
    obs, imp = v["obs"], v["imp"]
    both = np.concatenate([obs, imp.ravel()])
    lo, hi = float(np.min(both)), float(np.max(both))
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    grid = np.linspace(lo - pad, hi + pad, 256)
    overall = _kde(obs, grid)
    heights: list[tuple[int, float]] = []  # (number of values, peak) of every density

    def panel(ax, o, rows, reference):
        if reference and overall is not None:
            heights.append((obs.size, float(overall.max())))
            ax.plot(grid, overall, color="0.3", ls=":", lw=1, label="observed, all studies",
                    gid="observed-all")
        for j, row in enumerate(rows):
            if row.size == 0:
                continue
            d = _kde(row, grid)
            label = "imputed (one line per imputation)" if j == 0 else "_nolegend_"
            if d is None:
                ax.plot(row, np.zeros_like(row), ls="none", marker="|", ms=10,
                        color=IMPUTED, alpha=0.7, label=label, gid="imputed")
            else:
                ax.plot(grid, d, color=IMPUTED, lw=0.9, alpha=0.8, label=label,
                        gid="imputed")
                heights.append((row.size, float(d.max())))
        if o.size:
            d = _kde(o, grid)
            if d is None:
                ax.plot(o, np.zeros_like(o), ls="none", marker="|", ms=12, color=OBSERVED,
                        label="observed", gid="observed")
            else:
                ax.plot(grid, d, color=OBSERVED, lw=2, label="observed", gid="observed")
                heights.append((o.size, float(d.max())))
        ax.grid(alpha=0.3)

    if not by_study:
        fig = _figure(5.0, 3.6)
        ax = fig.add_subplot()
        panel(ax, obs, list(imp), reference=False)
    else:
        fig, axes, _ = _panel_grid(len(v["shown"]))
        for ax, s in zip(axes, v["shown"], strict=True):
            panel(ax, obs[v["obs_codes"] == s], list(imp[:, v["imp_codes"] == s]),
                  reference=True)
            ax.set_title(_study_title(v, s), fontsize=8)
            _tint(ax, v["status"][s] == SYSTEMATIC)
    # one y range for all panels from the densities of >= 10 values: the density of a
    # handful of values is a spike that would flatten every other curve (it is clipped)
    peaks = [h for n, h in heights if n >= 10] or [h for _, h in heights]
    if peaks:
        fig.axes[0].set_ylim(0, 1.08 * max(peaks))
    _outer_labels(fig.axes, v["variable"], "density")
    _figure_legend(fig, fig.axes, by_study and _any_systematic(v), ncol=4, patch_edge="0.7")
    return fig


def _any_systematic(v: dict) -> bool:
    return bool(np.any(v["status"][v["shown"]] == SYSTEMATIC))


def _figure_legend(fig, axes, systematic: bool, *, ncol: int, patch_edge=None,
                   markers: bool = False) -> None:
    """One legend below the figure for all panels, with the tint of systematically
    missing studies when some are shown. ``markers``: one plain marker per entry (for
    strip plots, whose artists are clouds of jittered points)."""
    handles, names = _legend_union(axes)
    if markers:
        handles = [Line2D([], [], ls="none", marker="o", color=h.get_color())
                   for h in handles]
    if systematic:
        edge = {} if patch_edge is None else {"edgecolor": patch_edge}
        handles.append(Patch(facecolor=SYSTEMATIC_TINT, **edge))
        names.append("systematically missing study")
    fig.legend(handles, names, loc="outside lower center", ncol=ncol, frameon=False,
               fontsize=8)


def _legend_union(axes) -> tuple[list, list]:
    seen: dict[str, object] = {}
    for ax in axes:
        for h, name in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(name, h)
    order = ["observed", "observed (95 % CI)", "imputed (one line per imputation)",
             "imputed (all imputations)", "imputed, each imputation", "imputed, mean",
             "observed, all studies"]
    names = sorted(seen, key=lambda n: order.index(n) if n in order else len(order))
    return [seen[n] for n in names], names


def _strips(v: dict, by_study: bool) -> Figure:
    rng = np.random.default_rng(0)  # jitter only; fixed so figures are reproducible
    obs, imp = v["obs"], v["imp"]
    if not by_study:
        fig = _figure(1.8 + 0.45 * (v["m"] + 1), 4.0)
        ax = fig.add_subplot()
        ax.plot(rng.uniform(-0.15, 0.15, obs.size), obs, ls="none", marker="o", ms=3,
                color=OBSERVED, alpha=0.5, label="observed", gid="observed")
        for j, row in enumerate(imp, start=1):
            ax.plot(j + rng.uniform(-0.15, 0.15, row.size), row, ls="none", marker="o",
                    ms=3, color=IMPUTED, alpha=0.5,
                    label="imputed" if j == 1 else "_nolegend_", gid="imputed")
        ax.set_xticks(np.arange(v["m"] + 1), ["obs", *map(str, range(1, v["m"] + 1))])
        ax.set_xlabel("observed / imputation")
    else:
        shown = v["shown"]
        fig, ax, pos, sys_ = _study_figure(v, shown)
        for x, s in zip(pos, shown, strict=True):
            o = obs[v["obs_codes"] == s]
            i = imp[:, v["imp_codes"] == s].ravel()
            ax.plot(x - 0.18 + rng.uniform(-0.1, 0.1, o.size), o, ls="none", marker="o",
                    ms=2.5, color=OBSERVED, alpha=0.5,
                    label="observed" if x == 0 else "_nolegend_", gid="observed")
            ax.plot(x + 0.18 + rng.uniform(-0.1, 0.1, i.size), i, ls="none", marker="o",
                    ms=2.5, color=IMPUTED, alpha=0.5,
                    label="imputed (all imputations)" if x == 0 else "_nolegend_",
                    gid="imputed")
        _label_studies(ax, v, shown, sys_,
                       np.bincount(v["imp_codes"], minlength=len(v["labels"])))
    ax.set_ylabel(v["variable"])
    ax.grid(axis="y", alpha=0.3)
    _figure_legend(fig, [ax], by_study and _any_systematic(v), ncol=3, markers=True)
    return fig


# ====================================================================== forest plot
def forest_plot(results: Mapping[str, pd.DataFrame], truth: Mapping[str, float] | None = None,
                terms: list[str] | None = None, *, annotate: bool = True,
                ci_label: str = "95 % CI") -> Figure:
    """Point estimates and confidence intervals of several methods, one panel per term.

    Parameters
    ----------
    results : method name → pooled table indexed by term with columns ``estimate``,
        ``conf_low`` and ``conf_high`` (``MultipleFits.pool()``, ``CompleteCase.pool()``;
        an object with a ``pool()`` method is pooled here). Methods are drawn top to
        bottom in this order.
    truth : term → true value, drawn as a dashed vertical line (e.g. for simulated data
        ``dict(zip(["(Intercept)", "x1", "x2"], mlmi.simulation.ALPHA))``).
    terms : terms to show, in this order (default: every term of any table).
    annotate : write "estimate [low, high]" above each interval.
    ci_label : how the intervals are described on the axis.

    A method without a term is left out of that panel; a missing interval bound draws
    the point alone. Each interval is one ``errorbar`` (``ax.containers``).
    """
    if not isinstance(results, Mapping) or not results:
        raise InputError("results must be a non-empty dict: method name -> pooled table")
    tables: dict[str, pd.DataFrame] = {}
    for name, res in results.items():
        table = res.pool() if hasattr(res, "pool") else res
        if not isinstance(table, pd.DataFrame):
            raise InputError(f"results[{name!r}] must be a DataFrame (a pooled table) or "
                             f"have a pool() method, not {type(res).__name__}")
        if "term" in table.columns and not isinstance(table.index, pd.MultiIndex) and \
                table.index.name != "term":
            # a table with the terms in a column (e.g. a pooled CSV read back, or
            # pool().reset_index()): label the panels by the terms, not row numbers
            table = table.set_index("term")
        lacking = [c for c in ("estimate", "conf_low", "conf_high") if c not in table]
        if lacking:
            raise InputError(f"results[{name!r}] has no column(s) {lacking}")
        tables[str(name)] = table
    every = list(dict.fromkeys(t for table in tables.values() for t in table.index))
    if terms is None:
        terms = every
    else:
        terms = [terms] if isinstance(terms, str) else list(terms)
        unknown = [t for t in terms if t not in every]
        if unknown:
            raise InputError(f"terms {unknown} are in none of the tables (terms: {every})")
    truth = dict(truth or {})
    methods = list(tables)
    n = len(terms)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    fig = _figure(1.4 + 2.9 * ncols, 0.9 + nrows * (0.9 + 0.48 * len(methods)))
    grid = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
    axes = list(grid.ravel()[:n])
    for extra in grid.ravel()[n:]:
        fig.delaxes(extra)
    fallback = iter(colormaps["tab10"].colors[4:] + colormaps["Dark2"].colors)
    colors = {m: METHOD_COLORS.get(m) or next(fallback, "black") for m in methods}
    for ax, term in zip(axes, terms, strict=True):
        rows = [(i, m, tables[m].loc[term]) for i, m in enumerate(methods)
                if term in tables[m].index]
        width = [float(r["conf_high"] - r["conf_low"]) / 2 for _, _, r in rows]
        decimals = _decimals(np.nanmedian(width) if np.isfinite(width).any() else np.nan)
        for i, m, r in rows:
            est, low, high = float(r["estimate"]), float(r["conf_low"]), float(r["conf_high"])
            ok = np.isfinite(low) and np.isfinite(high)
            err = [[est - low], [high - est]] if ok else None
            ax.errorbar([est], [i], xerr=err, fmt=METHOD_MARKERS.get(m, "o"), ms=5,
                        color=colors[m], ecolor=colors[m], capsize=3, lw=1.5, label=m)
            if annotate:
                text = _num(est, decimals) + (f" [{_num(low, decimals)}, "
                                              f"{_num(high, decimals)}]" if ok else "")
                ax.annotate(text, (est, i), xytext=(0, 5), textcoords="offset points",
                            ha="center", va="bottom", fontsize=7, color="0.2",
                            bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none",
                                  "alpha": 0.85})
        if term in truth and truth[term] is not None and np.isfinite(truth[term]):
            ax.axvline(float(truth[term]), color="0.25", ls="--", lw=1, zorder=0,
                       gid="truth")
        ax.set_title(str(term), fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.margins(x=0.12)
    axes[0].set_yticks(np.arange(len(methods)), methods)
    axes[0].set_ylim(len(methods) - 0.5, -0.75)  # first method on top, room for labels
    for ax in axes:
        ax.tick_params(axis="y", length=0)
    fig.supxlabel(f"estimate ({ci_label})", fontsize=9)
    if any(t in truth for t in terms):
        fig.legend([Line2D([], [], color="0.25", ls="--", lw=1)], ["true value"],
                   loc="outside lower right", frameon=False, fontsize=8)
    return fig


def _decimals(halfwidth: float) -> int:
    if not np.isfinite(halfwidth) or halfwidth <= 0:
        return 2
    return int(np.clip(1 - math.floor(math.log10(halfwidth)), 2, 4))


def _num(x: float, decimals: int) -> str:
    if not np.isfinite(x):
        return "NA"
    return f"{x:.{decimals}f}".replace("-", "\u2212")
