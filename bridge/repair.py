"""Non-finite pixels never reach a renderer: one NaN in `color` would otherwise turn a generator's whole
output into NaN for that frame and, through its context (KV cache), for every later frame until a reset.
NaN and +-inf in float channels become 0; the count goes back to the client as `repaired`."""
from __future__ import annotations

import numpy as np

# |x| bit patterns at or above these are inf or NaN (exponent all ones)
_NONFINITE_BITS = {np.dtype(np.float16): (np.uint16, 0x7FFF, 0x7C00)}


def _all_finite(a: np.ndarray) -> bool:
    bits = _NONFINITE_BITS.get(a.dtype.newbyteorder("="))
    if bits is not None:  # float16: an integer max is ~3x faster than np.isfinite on emulated halves
        u, mask, inf = bits
        return int(np.bitwise_and(a.view(u), mask).max()) < inf
    return bool(np.isfinite(a).all())


def repair_non_finite(pixels: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """(pixels with every non-finite float replaced by 0, how many were replaced). Arrays that need no
    repair come back as they are; a read-only one that does is copied first. One pass per float channel
    when everything is finite (the usual case)."""
    repaired = 0
    out = pixels
    for name, a in pixels.items():
        if a.dtype.kind != "f" or a.size == 0 or _all_finite(a):
            continue
        bad = ~np.isfinite(a)
        if not a.flags.writeable:
            a = a.copy()
        a[bad] = 0
        repaired += int(bad.sum())
        if out is pixels:
            out = dict(pixels)
        out[name] = a
    return out, repaired
