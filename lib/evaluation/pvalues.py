"""p-values: printing them no more precisely than a bootstrap resolves, and Holm's adjustment."""
from __future__ import annotations

import math

import numpy as np


def format_p(p: float, n_boot: int | None = None, is_bound: bool = False) -> str:
    """A p-value as text, never more precise than the bootstrap can resolve.

    ``is_bound`` (returned next to every bootstrap p here) prints an upper bound: "< 0.0002" for a
    two-sided p with no replicate across zero at B=10,000 (p = 2/B, the smallest non-zero
    estimate), "< 0.0001" for a one-sided one (p = 1/B). With ``n_boot`` the number of decimals is
    that of 1/B (at least 3); a p of 0 (e.g. from code that did not flag it) prints as "< 2/B".
    Without ``n_boot`` (t-tests): 3 decimals, "< 0.001" below. NaN or None prints as "".
    """
    if p is None or math.isnan(p):
        return ""
    if n_boot:
        decimals = max(3, math.ceil(math.log10(n_boot)))
        if is_bound:
            return f"< {p:.{decimals}f}"
        if p <= 0:
            return f"< {2 / n_boot:.{decimals}f}"
        return f"{p:.{decimals}f}"
    if is_bound:
        return f"< {p:.3g}"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"



def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN left out of the family and kept
    NaN): adjusted p_(i) = max over j <= i of min(1, (m - j + 1) p_(j)), in ascending order."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    idx = np.flatnonzero(ok)[np.argsort(p[ok], kind="stable")]
    adjusted = np.minimum(1.0, (m - np.arange(m)) * p[idx])
    out[idx] = np.maximum.accumulate(adjusted)
    return out

