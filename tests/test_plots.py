"""mlmi.plots: every figure is built from the numbers it claims to show."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

import mlmi
from mlmi import plots, vartypes
from mlmi.exceptions import InputError
from mlmi.simulation import ampute, generate

INCOMPLETE = ("x1", "x2", "z")  # binary, count, continuous


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    """6 studies × 50, binary y complete; x1 (binary), x2 (count), z (continuous)
    sporadically missing and each systematically missing in 2 studies."""
    rng = np.random.default_rng(5)
    complete = generate("binary", "moderate", 6, rng, n_total=300)
    complete["z"] = 0.5 * complete["x2"] + rng.normal(0, 1, len(complete))
    return ampute(complete, 0.34, "mcar", rng, variables=INCOMPLETE)


@pytest.fixture(scope="module")
def imputed(data) -> mlmi.Imputed:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlmi.impute(data, "st", m=2, maxit=2, seed=1)


def _main_axes(fig: Figure):
    (ax,) = [a for a in fig.axes if a.images]
    return ax


def _by_gid(ax, gid: str) -> list:
    return [a for a in ax.get_children() if a.get_gid() == gid]


def _study_shares(data: pd.DataFrame, variables) -> np.ndarray:
    return data[list(variables)].isna().groupby(data["st"]).mean().to_numpy()


# ----------------------------------------------------------------------- missingness map
def test_missingness_map_cells_are_the_missing_shares(data):
    fig = plots.missingness_map(data, "st")
    assert isinstance(fig, Figure)
    ax = _main_axes(fig)
    variables = ["y", *INCOMPLETE]
    expected = _study_shares(data, variables)
    shown = np.asarray(ax.images[0].get_array())
    assert shown.shape == (6, 4)
    np.testing.assert_allclose(shown, expected)
    assert not np.any(shown[:, 0])  # y is complete
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == variables
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{i} (n = 50)"
                                                            for i in range(1, 7)]


def test_missingness_map_marks_systematic_cells(data, imputed):
    expected = _study_shares(data, INCOMPLETE)
    systematic = {(int(i), int(j)) for i, j in zip(*np.nonzero(expected == 1.0), strict=True)}
    assert len(systematic) == 6  # 2 studies per variable
    # the DataFrame and the Imputed give the same figure
    for fig in (plots.missingness_map(data, "st", variables=list(INCOMPLETE)),
                plots.missingness_map(imputed, variables=list(INCOMPLETE))):
        ax = _main_axes(fig)
        np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), expected)
        rects = _by_gid(ax, "systematic")
        cells = {(round(r.get_y() + 0.5), round(r.get_x() + 0.5)) for r in rects}
        assert cells == systematic
        assert all(r.get_hatch() and to_rgba(r.get_facecolor()) ==
                   to_rgba(plots.SYSTEMATIC_COLOR) for r in rects)
        assert sum(t.get_text() == "sys" for t in ax.texts) == len(systematic)
        # sporadic cells are labelled with their percentage, complete cells are blank
        spo = (expected > 0) & (expected < 1)
        assert sum(t.get_text().endswith("%") for t in ax.texts) == int(spo.sum())
        legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
        assert "100 % (systematic)" in legend
    # the imputation's own bookkeeping agrees
    miss = imputed.missingness()
    assert set(zip(miss[miss.status == "systematic"]["st"] - 1,
                   miss[miss.status == "systematic"]["variable"].map(
                       {v: j for j, v in enumerate(INCOMPLETE)}), strict=True)) == systematic


def test_missingness_map_string_studies_and_errors(data):
    d = data.copy()
    d["st"] = "study-" + d["st"].astype(str)
    ax = _main_axes(plots.missingness_map(d, "st", variables=["z", "x1"]))
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()),
                               _study_shares(d, ["z", "x1"]))
    assert ax.get_yticklabels()[0].get_text() == "study-1 (n = 50)"
    with pytest.raises(InputError, match="not columns"):
        plots.missingness_map(data, "st", variables=["nope"])
    with pytest.raises(InputError, match="cluster"):
        plots.missingness_map(data)


# ----------------------------------------------------------------------- trace plot
def test_trace_plot_one_line_per_chain(imputed):
    fig = plots.trace_plot(imputed)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2 * len(imputed.imputations)
    ch = imputed.chains
    for row, var in enumerate(imputed.visit_sequence):
        for col, stat in enumerate(("mean", "sd")):
            ax = fig.axes[2 * row + col]
            assert len(ax.lines) == imputed.m
            assert ax.get_ylabel().startswith(f"{stat} {var}")
            want = ch[(ch.variable == var) & (ch.chain == 2)].sort_values("iteration")
            np.testing.assert_allclose(ax.lines[1].get_ydata(), want[stat])
            np.testing.assert_array_equal(ax.lines[1].get_xdata(), [1, 2])
    assert len(plots.trace_plot(imputed, variables=["z"]).axes) == 2
    with pytest.raises(InputError, match="no chains"):
        plots.trace_plot(imputed, variables=["y"])


# ----------------------------------------------------------------------- observed vs imputed
def test_observed_vs_imputed_binary_proportions(imputed, data):
    fig = plots.observed_vs_imputed(imputed, "x1")
    (ax,) = fig.axes
    miss = data["x1"].isna().to_numpy()
    st = data["st"].to_numpy()
    observed = data.loc[~miss].groupby("st")["x1"].mean()
    (obs_line,) = _by_gid(ax, "observed")
    np.testing.assert_allclose(obs_line.get_ydata(), observed.to_numpy())
    share = np.array([[row[st[miss] == s].mean() for s in range(1, 7)]
                      for row in imputed.imputations["x1"]])  # m × studies
    (mean_line,) = _by_gid(ax, "imputed-mean")
    np.testing.assert_allclose(mean_line.get_ydata(), share.mean(axis=0))
    (each,) = _by_gid(ax, "imputed")
    assert len(each.get_ydata()) == imputed.m * 6
    # systematic studies: shaded and their tick labels in the systematic colour
    n_sys = int(np.sum(imputed.plan.status["x1"] == 2))
    marked = [t for t in ax.get_xticklabels()
              if to_rgba(t.get_color()) == to_rgba(plots.SYSTEMATIC_COLOR)]
    assert len(marked) == n_sys == 2
    assert all(t.get_text().endswith("50/50") for t in marked)
    assert len(plots.observed_vs_imputed(imputed, "x1", by_study=False).axes) == 1


def test_observed_vs_imputed_count_and_continuous_panels(imputed):
    status = imputed.plan.status
    for var, kind in (("x2", "bar"), ("z", "density")):
        fig = plots.observed_vs_imputed(imputed, var)
        assert len(fig.axes) == 6  # one panel per study
        tinted = [ax for ax in fig.axes
                  if to_rgba(ax.get_facecolor()) == to_rgba(plots.SYSTEMATIC_TINT)]
        assert len(tinted) == int(np.sum(status[var] == 2))
        assert all("systematic" in ax.get_title() for ax in tinted)
        for ax, st in zip(fig.axes, status[var], strict=True):
            # no observed values drawn in a systematically missing study
            assert bool(_by_gid(ax, "observed")) == (st != 2)
            assert bool(_by_gid(ax, "imputed")) == (st != 0)
        assert len(plots.observed_vs_imputed(imputed, var, by_study=False).axes) == 1
        assert kind in vartypes.REGISTRY[imputed.types[var]].plot_kinds
    # count bars: relative frequencies of the observed values of study 1
    fig = plots.observed_vs_imputed(imputed, "x2")
    x2 = imputed.data.loc[imputed.data.st == 1, "x2"].dropna().astype(int)
    bars = _by_gid(fig.axes[0], "observed")
    heights = np.array([b.get_height() for b in bars])
    np.testing.assert_allclose(heights[: x2.max() + 1],
                               np.bincount(x2, minlength=x2.max() + 1) / len(x2))
    strip = plots.observed_vs_imputed(imputed, "z", kind="strip")
    assert len(strip.axes) == 1
    assert len(plots.observed_vs_imputed(imputed, "z", max_studies=4).axes) == 4
    with pytest.raises(InputError, match="kind"):
        plots.observed_vs_imputed(imputed, "x1", kind="density")
    with pytest.raises(InputError, match="not imputed"):
        plots.observed_vs_imputed(imputed, "y")


# ----------------------------------------------------------------------- forest plot
def test_forest_plot_one_interval_per_method_and_term(imputed, data):
    formula = "y ~ x1 + x2 + (1 | st)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = imputed.analyze(formula, "binomial")
        cca = mlmi.complete_case(data, formula, "binomial")
    mi = fits.pool()
    other = mi.drop(index="x2") + 0.1  # a method without one of the terms
    results = {"CCA": cca.pool(), "MLMI": mi, "2STG": other, "mine": fits}
    truth = {"(Intercept)": -1.85, "x1": 1.05, "x2": -0.04}
    fig = plots.forest_plot(results, truth=truth)
    assert len(fig.axes) == 3
    for ax, term in zip(fig.axes, ["(Intercept)", "x1", "x2"], strict=True):
        assert ax.get_title() == term
        methods = [m for m in results if term in (mi.index if m == "mine" else
                                                  results[m].index)]
        assert len(ax.containers) == len(methods)
        for container, method in zip(ax.containers, methods, strict=True):
            table = mi if method == "mine" else results[method]
            (segment,) = container.lines[2][0].get_segments()
            bounds = table.loc[term, ["conf_low", "conf_high"]].to_numpy(dtype=float)
            np.testing.assert_allclose(segment[:, 0], bounds)
            np.testing.assert_allclose(segment[:, 1], [list(results).index(method)] * 2)
            np.testing.assert_allclose(np.asarray(container.lines[0].get_xdata(), float),
                                       [table.loc[term, "estimate"]])
        (line,) = _by_gid(ax, "truth")
        assert line.get_xdata()[0] == truth[term]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(results)
    assert len(plots.forest_plot(results, terms=["x1"]).axes) == 1
    with pytest.raises(InputError, match="none of the tables"):
        plots.forest_plot(results, terms=["x9"])
    with pytest.raises(InputError, match="conf_low"):
        plots.forest_plot({"bad": mi[["estimate"]]})


# ----------------------------------------------------------------------- saving
def test_save_png_and_no_pyplot_figures_left(tmp_path, data, imputed):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    figs = {"map": plots.missingness_map(data, "st"), "trace": plots.trace_plot(imputed),
            "x1": plots.observed_vs_imputed(imputed, "x1"),
            "z": plots.observed_vs_imputed(imputed, "z")}
    assert plt.get_fignums() == before  # nothing opened in pyplot, nothing to close
    for name, fig in figs.items():
        path = plots.save(fig, tmp_path / "figures" / f"{name}.png")
        assert path.exists()
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plots.save(figs["map"], tmp_path / "map.pdf").read_bytes()[:4] == b"%PDF"


def _boxes(fig, ax):
    renderer = fig.canvas.get_renderer()
    return sorted((t.get_window_extent(renderer) for t in ax.get_xticklabels()
                   if t.get_text() and t.get_visible()), key=lambda b: b.x0)


def test_per_study_labels_never_overlap(data):
    """Long study names (and many studies) are turned upright or thinned out until no
    two drawn labels overlap; panel titles wrap."""
    name = "University Hospital of the study number {}, department of nephrology"
    long_names = data.assign(st=data["st"].map(name.format))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imp = mlmi.impute(long_names, "st", m=2, maxit=1, seed=2)
    fig = plots.observed_vs_imputed(imp, "x1")
    fig.canvas.draw()
    boxes = _boxes(fig, fig.axes[0])
    assert len(boxes) >= 2
    assert all(a.x1 <= b.x0 for a, b in itertools.pairwise(boxes))
    for variable in ("x2", "z"):
        fig = plots.observed_vs_imputed(imp, variable)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        titles = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title()]
        assert len(titles) == 6
        assert not any(a.overlaps(b) for i, a in enumerate(titles) for b in titles[i + 1:])


def test_short_study_labels_stay_horizontal(imputed):
    fig = plots.observed_vs_imputed(imputed, "x1")
    assert all(t.get_rotation() == 0 for t in fig.axes[0].get_xticklabels())


def test_forest_plot_labels_terms_from_a_term_column(imputed):
    pooled = imputed.analyze("y ~ x1 + (1 | st)", "binomial").pool()
    fig = plots.forest_plot({"MLMI": pooled.reset_index(names="term")})
    assert [ax.get_title() for ax in fig.axes] == ["(Intercept)", "x1"]
