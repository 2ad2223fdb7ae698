"""Arrays of a two-level model, sorted by cluster, and the named checks on them.

Like lme4's ``checkNlevels``/``checkZrank``, each check is a small function with a
precise message; they run once, at the boundary, so the optimiser's hot path can
assume clean arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..exceptions import InputError, ModelError


@dataclass
class ClusterDesign:
    """The arrays of a two-level model, rows sorted by cluster.

    ``y`` (n), ``X`` (n × p fixed-effects design), ``W`` (n × q random-effects design),
    ``starts`` (k + 1 offsets of each cluster's rows), ``order`` (the permutation that
    sorted the caller's rows: ``y_sorted = y_caller[order]``), ``clusters`` (k labels of
    the clusters in sorted order), ``group_name`` (what the error messages call the
    cluster identifier: the column name when ``groups`` was a named Series).
    """

    y: np.ndarray
    X: np.ndarray
    W: np.ndarray
    starts: np.ndarray
    order: np.ndarray
    clusters: np.ndarray
    x_names: list[str]
    w_names: list[str]
    dropped: list[str] = field(default_factory=list)
    wt: np.ndarray | None = None  # frequency weights (identical rows merged), else None
    group_name: str = "groups"

    @property
    def n(self) -> int:
        """Number of observations (merged rows count with their weights)."""
        return self.y.shape[0] if self.wt is None else round(self.wt.sum())

    @property
    def weights(self) -> np.ndarray:
        """Frequency weight of each (possibly merged) row."""
        return np.ones(self.y.shape[0]) if self.wt is None else self.wt

    def compressed(self) -> ClusterDesign:
        """The same model with identical rows of a cluster merged (see compress.py);
        ``self`` if merging does not pay."""
        from .compress import compress_rows

        if self.wt is not None:
            return self
        packed = compress_rows(self.y, self.X, self.W, self.starts)
        if packed is None:
            return self
        y, X, W, starts, wt = packed
        return ClusterDesign(y, X, W, starts, self.order, self.clusters, self.x_names,
                             self.w_names, self.dropped, wt, self.group_name)

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def q(self) -> int:
        return self.W.shape[1]

    @property
    def k(self) -> int:
        return self.starts.shape[0] - 1

    @property
    def sizes(self) -> np.ndarray:
        """Number of observations per cluster."""
        if self.wt is None:
            return np.diff(self.starts)
        return np.add.reduceat(self.wt, self.starts[:-1]).round().astype(np.int64)

    def cluster_index(self) -> np.ndarray:
        """Cluster number (0..k-1) of each sorted row."""
        return np.repeat(np.arange(self.k), self.sizes)


def make_design(
    y: np.ndarray,
    X: np.ndarray,
    W: np.ndarray,
    groups: np.ndarray,
    x_names: list[str] | None = None,
    w_names: list[str] | None = None,
) -> ClusterDesign:
    """Validate the arrays and sort the rows by cluster.

    ``groups`` holds one cluster label per row, of any hashable type; the clusters
    are numbered in the order of their sorted unique labels (as R's factor levels), or,
    for a pandas categorical, in the order of its categories (unused ones dropped, as
    lme4 does). If it is a named pandas Series, the messages call it by its name.
    """
    name = getattr(groups, "name", None)
    group_name = name if isinstance(name, str) else "groups"
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    W = np.asarray(W, dtype=float)
    n = y.shape[0]
    if X.ndim != 2 or W.ndim != 2:
        raise InputError("X and W must be two-dimensional arrays (rows × columns)")
    if X.shape[0] != n or W.shape[0] != n or len(groups) != n:
        raise InputError(
            f"y, X, W and groups must have the same number of rows; got {n}, "
            f"{X.shape[0]}, {W.shape[0]} and {len(groups)}"
        )
    x_names = list(x_names) if x_names is not None else [f"x{j}" for j in range(X.shape[1])]
    w_names = list(w_names) if w_names is not None else [f"w{j}" for j in range(W.shape[1])]
    check_finite(X, x_names, "fixed-effects design")
    check_finite(W, w_names, "random-effects design")
    labels, codes = _factorize(groups, group_name)
    order = np.argsort(codes, kind="stable")
    codes = codes[order]
    counts = np.bincount(codes, minlength=len(labels))
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return ClusterDesign(
        y=np.ascontiguousarray(y[order]),
        X=np.ascontiguousarray(X[order]),
        W=np.ascontiguousarray(W[order]),
        starts=starts,
        order=order,
        clusters=labels,
        x_names=x_names,
        w_names=w_names,
        group_name=group_name,
    )


def _factorize(groups, group_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels in factor-level order and integer codes; a missing label is an error."""
    import pandas as pd

    if not isinstance(groups, pd.Series) and not isinstance(
            getattr(groups, "dtype", None), pd.CategoricalDtype):
        groups = np.asarray(groups)  # a categorical keeps its categories' order below
    dtype = groups.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        # integer labels (the imputation loop's study codes)
        labels, codes = np.unique(np.asarray(groups), return_inverse=True)
        return labels, codes.astype(np.int64)
    s = groups if isinstance(groups, pd.Series) else pd.Series(groups)
    if s.isna().any():
        raise InputError(
            f"the cluster identifier {group_name!r} has {int(s.isna().sum())} missing "
            f"value(s) (first in row {int(np.argmax(s.isna().to_numpy()))}); every row must "
            "belong to a cluster"
        )
    if isinstance(s.dtype, pd.CategoricalDtype):  # the categories' order, as R's levels
        s = s.cat.remove_unused_categories()
        return np.asarray(s.cat.categories), s.cat.codes.to_numpy().astype(np.int64)
    # hash first, then sort the few distinct labels: pd.factorize(sort=True) sorts every
    # row's label (0.5 of a 2 ms formula front end on 3000 string labels)
    codes, labels = pd.factorize(s, sort=False)
    try:
        order = labels.argsort()
    except TypeError:  # labels of mixed types: pandas' own safe sort
        codes, labels = pd.factorize(s, sort=True)
        return np.asarray(labels), codes.astype(np.int64)
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    return np.asarray(labels[order]), rank[codes]


def check_finite(A: np.ndarray, names: list[str], what: str) -> None:
    """Every entry of a design matrix must be finite (no NaN: subset first)."""
    bad = ~np.isfinite(A)
    if bad.any():
        col = int(np.argmax(bad.any(axis=0)))
        rows = bad[:, col]
        values = sorted({str(v) for v in A[rows, col]})
        raise InputError(
            f"{what} column {names[col]!r} has {int(rows.sum())} non-finite value(s) "
            f"{values} (first in row {int(np.argmax(rows))}); the caller must subset to "
            "complete, finite rows (or impute) before fitting"
        )


def check_clusters(design: ClusterDesign) -> None:
    """At least two clusters, and more observations than random effects (lme4's checks)."""
    if design.k < 2:
        raise ModelError(
            f"the grouping factor {design.group_name!r} has {design.k} level(s) "
            f"{[str(c) for c in design.clusters]}; a two-level model needs at least 2 "
            "clusters"
        )
    if design.n <= design.k * design.q:
        raise ModelError(
            f"number of observations (n = {design.n}) <= number of random effects "
            f"(k * q = {design.k} * {design.q} = {design.k * design.q}) for the term "
            f"{_re_term(design)}; the random-effects parameters and the residual variance "
            "are not identifiable — use fewer random slopes (or more data)"
        )


def _re_term(design: ClusterDesign) -> str:
    """The random-effects term in lme4's notation, e.g. ``(1 + x1 | st)``."""
    names = ["1" if nm == "(Intercept)" else nm for nm in design.w_names]
    if "1" not in names:
        names.insert(0, "0")
    return f"({' + '.join(names)} | {design.group_name})"


def check_random_slopes(design: ClusterDesign) -> None:
    """A random slope needs a predictor that varies within at least one cluster,
    and the random-effects design must have full rank overall (cf. mice#223)."""
    W, starts = design.W, design.starts
    for r, name in enumerate(design.w_names):
        col = W[:, r]
        varies = False
        for i in range(design.k):
            seg = col[starts[i] : starts[i + 1]]
            if seg.size and seg.max() - seg.min() > 1e-12 * max(1.0, np.abs(seg).max()):
                varies = True
                break
        intercept_like = np.all(col == col[0])
        if not varies and not intercept_like:
            raise ModelError(
                f"random slope for {name!r}: the predictor is constant within every "
                f"cluster of {design.group_name!r}, so its cluster-specific slope cannot be "
                "told apart from the random intercept; drop it from the random-effects term"
            )
    if np.linalg.matrix_rank(W) < W.shape[1]:
        raise ModelError(
            f"the random-effects design of {_re_term(design)} (columns "
            f"{', '.join(design.w_names)}) is rank deficient: more random effects than the "
            "data identify"
        )


def drop_rank_deficient(design: ClusterDesign) -> list[str]:
    """Drop fixed-effects columns that are linear combinations of earlier ones
    (as lme4 does, with a message); returns the names dropped."""
    X = design.X
    if X.shape[1] == 0:
        return []
    diag = np.abs(np.diag(np.linalg.qr(X, mode="r")))
    tol = max(X.shape) * np.finfo(float).eps * (diag.max() if diag.size else 1.0) * 1e3
    keep = diag > tol
    if keep.all():
        return []
    # confirm greedily in column order so the first of a collinear pair is kept
    kept: list[int] = []
    for j in range(X.shape[1]):
        trial = [*kept, j]
        if np.linalg.matrix_rank(X[:, trial], tol=tol) == len(trial):
            kept.append(j)
    dropped = [design.x_names[j] for j in range(X.shape[1]) if j not in kept]
    design.X = np.ascontiguousarray(X[:, kept])
    design.dropped = dropped
    design.x_names = [design.x_names[j] for j in kept]
    return dropped
