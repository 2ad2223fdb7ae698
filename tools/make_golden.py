"""Regenerate the golden masters of seeded imputations (tests/fixtures/golden/).

Run only when a change is meant to move the numbers, and say why in the commit:
    python tools/make_golden.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from golden_cases import cases  # noqa: E402


def main() -> None:
    out = ROOT / "tests" / "fixtures" / "golden"
    out.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, make in cases().items():
        arrays[name] = make()
        print(f"{name}: {arrays[name].size} values")
    np.savez_compressed(out / "golden.npz", **arrays)


if __name__ == "__main__":
    main()
