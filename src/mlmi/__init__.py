"""mlmi — multilevel multiple imputation for individual participant data meta-analysis.

Chained-equation imputation in which every incomplete variable gets a two-level
model (logistic, Poisson or linear mixed model) whose study-specific random effects
are drawn from their posterior for studies where the variable is sporadically
missing and from their prior where it is systematically missing (Jolani 2025).
"""

__version__ = "0.1.0.dev0"

from .glmm import GLMMResult, fit_glmm

__all__ = ["GLMMResult", "__version__", "fit_glmm"]
