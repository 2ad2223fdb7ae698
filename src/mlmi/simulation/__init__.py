"""The paper's simulation study: data-generating design, amputation, runs and reports."""

from .design import ALPHA, LAMBDA, OMEGA, ampute, generate, truth

__all__ = ["ALPHA", "LAMBDA", "OMEGA", "ampute", "generate", "truth"]
