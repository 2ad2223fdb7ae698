"""Seeded imputations and a simulation replication equal their golden masters
(tests/fixtures/golden, made by tools/make_golden.py) to 1e-10: a change that moves a
number fails here and must regenerate the masters on purpose."""

from pathlib import Path

import numpy as np
import pytest

from golden_cases import cases

GOLDEN = Path(__file__).parent / "fixtures" / "golden" / "golden.npz"


@pytest.mark.parametrize("name", sorted(cases()))
def test_golden_master(name):
    expected = np.load(GOLDEN)[name]
    got = cases()[name]()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10, equal_nan=True)
