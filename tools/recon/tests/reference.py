"""Independent references for the reconstruction's checks, computed without daas_recon:
the centre of rotation by phase correlation of opposite projections (scikit-image), and
the slice by scikit-image's `iradon` on the same flat/dark-corrected sinogram.

Used by tests/test_recon.py, and as a program by daas's API test of the job
(tests/api/recon.rs): `reference.py SCAN.h5 --centre C --slice SLICE.tif` prints
`{"centre": ..., "correlation": ...}` (the reference centre, and the correlation of the
slice with the reference slice at C).
"""

import argparse
import json

import h5py
import numpy as np
import scipy.ndimage as ndi
import tifffile
from skimage.registration import phase_cross_correlation
from skimage.transform import iradon


def corrected(path):
    """-log of the flat/dark-corrected projections (angles, rows, columns), and theta (deg)."""
    with h5py.File(path) as f:
        proj = f["/exchange/data"][()].astype(np.float64)
        flat = f["/exchange/data_white"][()].mean(axis=0)
        dark = f["/exchange/data_dark"][()].mean(axis=0)
        theta = f["/exchange/theta"][()]
    return -np.log(np.clip((proj - dark) / (flat - dark), 1e-6, None)), theta


def centre_by_phase_correlation(proj, theta):
    """The 0-degree projection against the mirrored one nearest 180 degrees: their shift is
    2 * centre - (columns - 1)."""
    opposite = int(np.argmin(np.abs(theta - 180.0)))
    shift, _, _ = phase_cross_correlation(proj[0], proj[opposite][:, ::-1], upsample_factor=20)
    return (proj.shape[2] - 1 + shift[1]) / 2


def iradon_slice(proj, theta, centre, row=0):
    """Row `row` reconstructed by scikit-image's `iradon` (ramp filter) about `centre`."""
    ncol = proj.shape[2]
    # iradon puts the axis at column ncol // 2: move the sinogram there first.
    sino = ndi.shift(proj[:, row, :], (0, ncol // 2 - centre), mode="nearest")
    return iradon(sino.T, theta=theta, filter_name="ramp", circle=True)


def correlation(ours, reference):
    """Pearson correlation inside the reconstruction circle (the corners are not data)."""
    n = reference.shape[0]
    yy, xx = np.mgrid[:n, :n]
    inside = (xx - n / 2) ** 2 + (yy - n / 2) ** 2 < (0.45 * n) ** 2
    return float(np.corrcoef(ours[inside], reference[inside])[0, 1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scan")
    parser.add_argument("--centre", type=float, required=True, help="the centre the slice was reconstructed at")
    parser.add_argument("--slice", required=True, help="a TIFF of row 0 reconstructed by the job")
    args = parser.parse_args()
    proj, theta = corrected(args.scan)
    reference = iradon_slice(proj, theta, args.centre)
    print(json.dumps({"centre": centre_by_phase_correlation(proj, theta),
                      "correlation": correlation(tifffile.imread(args.slice), reference)}))


if __name__ == "__main__":
    main()
