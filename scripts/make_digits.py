"""Regenerate estbench/kinds/sbvae/digits.npz, the 8x8 digits of the ``sbvae`` kind, from the copy
that scikit-learn bundles (``sklearn.datasets.load_digits``: the 1,797 images of the test set of
UCI "Optical Recognition of Handwritten Digits", Alpaydin & Kaynak 1998; provenance and licence in
estbench/kinds/sbvae/README.md).

    pip install scikit-learn        # into any environment; estbench never imports it
    python scripts/make_digits.py   # writes estbench/kinds/sbvae/digits.npz

The file holds ``intensities`` [1797, 64] uint8 in 0..16 (row-major 8x8, as scikit-learn orders
the pixels) and ``labels`` [1797] uint8, in scikit-learn's order. It is written byte for byte
reproducibly (a fixed zip timestamp), so regenerating it leaves git with nothing to commit.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "estbench" / "kinds" / "sbvae" / "digits.npz"


def main() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.asarray(digits.data)
    if pixels.shape != (1797, 64) or not np.array_equal(pixels, np.round(pixels)):
        raise SystemExit(f"unexpected digits data: shape {pixels.shape}")
    if pixels.min() < 0 or pixels.max() > 16:
        raise SystemExit(f"intensities outside 0..16: {pixels.min()}..{pixels.max()}")
    arrays = {
        "intensities": pixels.astype(np.uint8),
        "labels": np.asarray(digits.target).astype(np.uint8),
    }
    with zipfile.ZipFile(OUT, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, a, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, buf.getvalue())
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): {pixels.shape[0]} images")


if __name__ == "__main__":
    main()
