"""Writes a simulated parallel-beam scan as Data Exchange HDF5, with a known centre.

    python -m daas_recon.simulate OUT.h5 [--size N] [--angles A] [--rows R] [--centre C]
        [--flats F] [--darks D] [--noise X] [--stripes K] [--seed S]

The phantom is algotom's face phantom (`algotom.util.simulation.make_face_phantom`, N x N),
projected by `make_sinogram` (Fourier slice theorem) over A angles in [0, 180) degrees,
moved so that the rotation axis sits at column C (scipy.ndimage.shift), turned into an X-ray
image (`convert_to_Xray_image`), optionally with stripe artefacts (`add_stripe_artifact`)
and Gaussian noise (`add_noise`). Row r is the same phantom with its attenuation scaled by
0.5 + 0.5 r / R, so that the rows differ while the projection is computed once (it is
linear). Counts: dark 100, flat 100 + 20000, projections dark + 20000 * transmission, as
uint16; F flats and D darks. /process/simulation holds centre, size and phantom.

Memory: one sinogram (A x N float64) and one block of 64 rows of uint16 projections.
"""

import argparse
import sys

import h5py
import numpy as np
import scipy.ndimage as ndi

import algotom.util.simulation as sim

DARK, BEAM = 100.0, 20000.0


def simulate(out, size=512, angles=360, rows=8, centre=None, flats=10, darks=10, noise=0.0, stripes=0, seed=0):
    """Writes the scan to `out` (see the module doc); returns the centre (pixels).

    size: detector columns and phantom width (>= 16); angles: projections over
    [0, 180) degrees; rows: detector rows; centre: the rotation axis in pixels from the
    first column, default size // 2, must lie in the middle half of the detector
    (ValueError otherwise); noise: noise level relative to the mean count (0: none);
    stripes: how many partial stripe artefacts (ring artefacts in the slice) to add.
    """
    if size < 16 or angles < 2 or rows < 1:
        raise ValueError("size must be >= 16, angles >= 2, rows >= 1")
    # make_sinogram puts the axis at column size // 2 (it pads to an odd width).
    mid = float(size // 2)
    centre = mid if centre is None else float(centre)
    if abs(centre - mid) > size / 4:
        raise ValueError(f"centre {centre:g} is not in the middle half of the detector ({size / 4:g} to {3 * size / 4:g})")
    rng = np.random.default_rng(seed)
    np.random.seed(seed)  # algotom's add_noise and stripe positions use the global generator
    theta = np.linspace(0.0, 180.0, angles, endpoint=False)
    phantom = sim.make_face_phantom(size)
    sino = sim.make_sinogram(phantom, np.deg2rad(theta))
    sino = ndi.shift(sino, (0, centre - mid), order=3, mode="nearest")
    # Scale so that the thickest part attenuates to ~e^-2 at the densest row.
    scale = 2.0 / max(float(np.max(sino)), 1e-6)
    positions = rng.integers(size // 4, 3 * size // 4, size=stripes)
    with h5py.File(out, "w") as f:
        data = f.create_dataset("/exchange/data", shape=(angles, rows, size), dtype=np.uint16,
                                chunks=(angles, 1, size) if angles * size * 2 < 16 << 20 else (1, rows, size))
        f.create_dataset("/exchange/data_white", data=np.full((flats, rows, size), DARK + BEAM, dtype=np.uint16))
        f.create_dataset("/exchange/data_dark", data=np.full((darks, rows, size), DARK, dtype=np.uint16))
        f.create_dataset("/exchange/theta", data=theta)
        group = f.create_group("/process/simulation")
        group.attrs.update({"centre": centre, "size": size, "phantom": "algotom face phantom", "seed": seed})
        block = 64
        for start in range(0, rows, block):
            stop = min(rows, start + block)
            slab = np.empty((angles, stop - start, size), dtype=np.uint16)
            for i, row in enumerate(range(start, stop)):
                weight = 0.5 + 0.5 * row / max(rows - 1, 1)
                trans = np.exp(-sino * scale * weight)
                for pos in positions:
                    trans = sim.add_stripe_artifact(trans, 2, int(pos), strength_ratio=0.2, stripe_type="partial")
                counts = DARK + BEAM * trans
                if noise > 0:
                    counts = sim.add_noise(counts, noise_ratio=noise)
                slab[:, i, :] = np.clip(np.round(counts), 0, 65535)
            data[:, start:stop, :] = slab
    return centre


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m daas_recon.simulate", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the HDF5 file to write")
    p.add_argument("--size", type=int, default=512, help="detector columns (the phantom is size x size)")
    p.add_argument("--angles", type=int, default=360, help="projections over [0, 180) degrees")
    p.add_argument("--rows", type=int, default=8, help="detector rows")
    p.add_argument("--centre", type=float, default=None, help="rotation axis in pixels; default size // 2")
    p.add_argument("--flats", type=int, default=10)
    p.add_argument("--darks", type=int, default=10)
    p.add_argument("--noise", type=float, default=0.0, help="noise level relative to the mean count, e.g. 0.02")
    p.add_argument("--stripes", type=int, default=0, help="partial stripe artefacts to add (rings in the slice)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        centre = simulate(a.out, a.size, a.angles, a.rows, a.centre, a.flats, a.darks, a.noise, a.stripes, a.seed)
    except ValueError as e:
        print(f"error: {e}", flush=True)
        return 2
    print(f"wrote {a.out}: {a.angles} projections of {a.rows} rows x {a.size} columns, centre {centre:g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
