"""mlmi — multilevel multiple imputation for individual participant data meta-analysis.

Chained-equation imputation in which every incomplete variable gets a two-level
model (logistic, Poisson or linear mixed model) whose study-specific random effects
are drawn from their posterior for studies where the variable is sporadically
missing and from their prior where it is systematically missing (Jolani 2025).

    imputed = mlmi.impute(data, "study", random={"alcohol": ["smoking"]}, seed=1)
    fits = imputed.analyze("smoking ~ alcohol + comorb + (1 + alcohol | study)", "binomial")
    fits.pool()
"""

__version__ = "0.1.0.dev0"

from ._jit import invalidate_stale_caches

invalidate_stale_caches()  # before any compiled kernel is imported

from .analysis import CompleteCase, MultipleFits, complete_case  # noqa: E402
from .glmm import GLMMResult, fit_glmm  # noqa: E402
from .mice import Imputed, impute  # noqa: E402

__all__ = [
    "CompleteCase",
    "GLMMResult",
    "Imputed",
    "MultipleFits",
    "__version__",
    "complete_case",
    "datasets",
    "fit_glmm",
    "impute",
    "plots",
    "simulation",
]


def __getattr__(name: str):
    """``mlmi.plots``, ``mlmi.simulation`` and ``mlmi.datasets`` load on first use, so
    ``import mlmi`` does not pull in matplotlib (nor does every worker process)."""
    if name in ("datasets", "plots", "simulation"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

