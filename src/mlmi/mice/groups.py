"""Imputation by group (``by=``): the whole multilevel imputation runs separately within
each level of a fully observed grouping variable.

Imputing within treatment arms keeps every association with treatment in the
imputations — effect modification (treatment × covariate interactions) included — which
one joint model without the interaction would shrink towards zero. The price: each arm's
models are fitted to that arm's participants only.

Decisions about columns (types and category levels, exclusions, study-level variables)
are made once on the whole data, so that the groups' imputations fit together. Within a
group a study is what it contributes to that group: a study with fewer than
``MIN_PER_ARM`` participants in an arm is named in a warning and stays in that arm's
model, where its random effects are drawn mostly from the between-study distribution
(its few participants carry little information about its own intercept); a study with
no participants in an arm has nothing to impute there. An arm observed in fewer than two
studies cannot have a multilevel model and is an error naming the arm.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .._progress import Progress
from .._threads import single_threaded_blas
from ..exceptions import ImputationWarning, InputError, MLMIError
from .imputed import Imputed
from .setup import Plan, make_plan

#: fewer participants of a study in one group than this are named in a warning
MIN_PER_ARM = 5


def _subset_args(args: dict, incomplete: set[str]) -> dict:
    """The arguments of make_plan restricted to the variables a group has to impute."""
    out = dict(args)
    if isinstance(args.get("method"), dict):
        out["method"] = {v: name for v, name in args["method"].items() if v in incomplete}
    if args.get("random"):
        out["random"] = {v: s for v, s in args["random"].items() if v in incomplete}
    pm = args.get("predictor_matrix")
    if pm is not None:
        out["predictor_matrix"] = pm.loc[[v for v in pm.index if v in incomplete]]
    for arg in ("sampler", "psi_draw", "limits"):
        if isinstance(args.get(arg), dict):
            out[arg] = {v: x for v, x in args[arg].items() if v in incomplete}
    if args.get("visit_sequence") is not None:
        out["visit_sequence"] = [v for v in args["visit_sequence"] if v in incomplete]
    return out


def impute_by(data: pd.DataFrame, cluster: str, by: str, exclude, args: dict, *, m: int,
              maxit: int, seed, n_jobs: int, scheduler, progress: bool) -> Imputed:
    """:func:`mlmi.impute` with ``by=``: one imputation per level of ``by``, combined."""
    from . import _collect, _report, _run_chains, _run_chains_dask

    if not isinstance(data, pd.DataFrame):
        raise InputError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    if not isinstance(by, str) or by not in data.columns:
        raise InputError(f"by={by!r} is not a column of data")
    if by == cluster:
        raise InputError(f"by={by!r} is the cluster column; imputation by group needs a "
                         "participant-level grouping such as the treatment arm")
    if data[by].isna().any():
        raise InputError(f"by={by!r} has {int(data[by].isna().sum())} missing value(s); the "
                         "grouping variable must be fully observed")
    if args.get("derived") and by in args["derived"]:
        raise InputError(f"by={by!r} is a derived variable")
    exclude = [exclude] if isinstance(exclude, str) else list(exclude or [])
    if by in exclude:
        raise InputError(f"by={by!r} is also in exclude")
    whole = make_plan(data, cluster, exclude=[*exclude, by], **args)
    whole.excluded[by] = "by= (constant within each group)"
    whole.notes[:] = [n for n in whole.notes if not n.startswith(f"column {by!r}")]
    whole.by = by
    levels = [v.item() if isinstance(v, np.generic) else v
              for v in sorted(pd.unique(data[by]), key=lambda v: (str(type(v)), v))]
    if len(levels) < 2:
        raise InputError(f"by={by!r} has a single value {levels[0]!r}: nothing to split")
    positions = []
    plans = []
    frame = whole.data  # with any new derived columns
    for g in levels:
        rows = np.flatnonzero((frame[by] == g).to_numpy())
        sub = frame.iloc[rows]
        sizes = sub[cluster].value_counts()
        few = sizes[sizes < MIN_PER_ARM]
        if few.size:
            whole.warnings.append(
                f"by={by!r}, group {g!r}: {few.size} stud{'y has' if few.size == 1 else 'ies have'}"
                f" fewer than {MIN_PER_ARM} participants in this group ("
                + ", ".join(f"{k}: {v}" for k, v in few.sort_index().items())
                + "); they stay in the group's model, their random effects drawn mostly "
                "from the between-study distribution"
            )
        sub_args = _subset_args(args, {v for v, miss in whole.missing.items()
                                       if miss[rows].any()})
        if whole.derived:  # new derived columns exist in frame: do not add them again
            sub_args["derived"] = {d: e.text for d, e in whole.derived.items()}
        try:
            plan = make_plan(sub, cluster, fixed=whole, **sub_args)
        except MLMIError as exc:
            raise type(exc)(f"by={by!r}, group {g!r} ({rows.size} participants): {exc}"
                            ) from exc
        plan.by = by
        whole.warnings.extend(f"by={by!r}, group {g!r}: {w}" for w in plan.warnings)
        positions.append(rows)
        plans.append(plan)
    for message in whole.warnings:
        warnings.warn(message, ImputationWarning, stacklevel=3)
    group_seeds = np.random.SeedSequence(seed).spawn(len(levels))
    total = sum(m * maxit * len(p.visit_sequence) for p in plans)
    bar = Progress(total, enabled=progress, label="impute")
    results = []
    try:
        with single_threaded_blas():
            for plan, gs in zip(plans, group_seeds, strict=True):
                seeds = gs.spawn(m)
                if scheduler is not None:
                    results.append(_run_chains_dask(plan, seeds, maxit, scheduler, bar))
                else:
                    results.append(_run_chains(plan, seeds, maxit, n_jobs, bar))
    finally:
        bar.close()
    parts = [_collect(plan, res, m, maxit, seed) for plan, res in zip(plans, results,
                                                                          strict=True)]
    imputed = _combine(whole, parts, levels, positions, m, maxit, seed)
    report = _report(imputed)
    if report:
        warnings.warn(report, ImputationWarning, stacklevel=3)
    return imputed


def _one_value_per_study(whole: Plan, var: str, full: np.ndarray, group_of: np.ndarray
                         ) -> None:
    """A study-level variable has one value per study across the groups too: a study's
    observed value where any member (in any group) has it, else the value drawn in the
    group with most of the study's members (each group imputed the study on its own)."""
    from .sampler import get_values

    miss = whole.missing[var]
    current = get_values(whole, whole.work, var)
    n_groups = int(group_of.max()) + 1
    harmonised = 0
    for k in np.unique(whole.codes[miss]):
        in_study = whole.codes == k
        rows = np.flatnonzero(in_study & miss)
        observed = current[in_study & ~miss]
        if observed.size:
            full[:, rows] = observed[0]
            continue
        sizes = np.bincount(group_of[in_study], minlength=n_groups)
        source = rows[group_of[rows] == int(np.argmax(sizes))][0]
        if np.unique(group_of[rows]).size > 1:
            harmonised += 1
        full[:, rows] = full[:, [source]]
    if harmonised:
        whole.notes.append(
            f"study-level {var!r}: {harmonised} stud{'y' if harmonised == 1 else 'ies'} "
            f"imputed in more than one group of by={whole.by!r} take the value drawn in the "
            "group with most of their members")


def _pooled_trace(parts: list[Imputed]) -> pd.DataFrame:
    """The trace (mean and SD of a variable's imputed values per chain and iteration) of
    the whole data, exactly, from the groups' means, SDs and numbers of imputed values."""
    frames = []
    for p in parts:
        n = {v: int(miss.sum()) for v, miss in p.plan.missing.items()}
        frames.append(p.chains.assign(n=p.chains["variable"].map(n)))
    long = pd.concat(frames, ignore_index=True)
    long["sum"] = long["n"] * long["mean"]
    long["ss"] = (long["n"] - 1).clip(lower=0) * long["sd"].fillna(0.0) ** 2 \
        + long["n"] * long["mean"] ** 2
    keys = ["variable", "iteration", "chain"]
    agg = long.groupby(keys, sort=False)[["n", "sum", "ss"]].sum().reset_index()
    agg["mean"] = agg["sum"] / agg["n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (agg["ss"] - agg["n"] * agg["mean"] ** 2) / (agg["n"] - 1)
    agg["sd"] = np.sqrt(var.clip(lower=0)).where(agg["n"] > 1)
    return agg[[*keys, "mean", "sd"]]


def _combine(whole: Plan, parts: list[Imputed], levels, positions, m: int, maxit: int,
             seed) -> Imputed:
    """One Imputed of the whole data from the groups' imputations."""
    n = len(whole.data)
    group_of = np.empty(n, dtype=np.int64)
    for g, rows in enumerate(positions):
        group_of[rows] = g
    imputations = {}
    for var in whole.output_variables:
        full = np.full((m, n), np.nan)
        for part, rows in zip(parts, positions, strict=True):
            if var in part.imputations:
                full[:, rows[part.plan.missing[var]]] = part.imputations[var]
        if var in whole.level2:
            _one_value_per_study(whole, var, full, group_of)
        imputations[var] = full[:, whole.missing[var]]
        if np.isnan(imputations[var]).any():  # a variable no group imputed
            raise MLMIError(f"{var!r}: {int(np.isnan(imputations[var][0]).sum())} missing "
                            "value(s) not imputed by any group")
    chains = _pooled_trace(parts)
    diag = pd.concat([p.diagnostics.assign(**{"group": g}) for p, g in zip(parts, levels,
                                                                           strict=True)],
                     ignore_index=True)
    return Imputed(plan=whole, m=m, maxit=maxit, seed=seed, imputations=imputations,
                   chains=chains, diagnostics=diag,
                   records=[rec for p in parts for rec in p.records])
