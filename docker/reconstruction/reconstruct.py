"""Filtered back-projection of the sinograms of one dataset.

Parameters (DAAS_PARAMETERS, JSON): {"dataset": "<name under /datasets>" (DAAS_DATASETS),
"output": "<folder under $HOME>", "center": <rotation axis, pixels; optional>,
"filter": "ramp" | "shepp-logan" | "hann" (optional)}.
Input: an HDF5 file with /exchange/data (projections: angle, row, column) and
/exchange/theta (degrees), as written by the beamline (Data Exchange format).
"""
import json
import os
import pathlib
import sys

import h5py
import numpy as np
import tifffile
from skimage.transform import iradon


def main() -> int:
    params = json.loads(os.environ.get("DAAS_PARAMETERS", "{}"))
    source = pathlib.Path(os.environ.get("DAAS_DATASETS", "/datasets")) / params["dataset"]
    files = sorted(source.glob("*.h5")) if source.is_dir() else [source]
    if not files:
        print(f"no HDF5 file in {source}", file=sys.stderr)
        return 2
    out = pathlib.Path(os.environ["HOME"]) / params.get("output", "reconstruction")
    out.mkdir(parents=True, exist_ok=True)
    with h5py.File(files[0], "r") as f:
        projections = f["/exchange/data"]
        theta = np.asarray(f["/exchange/theta"])
        rows = projections.shape[1]
        for row in range(rows):
            sinogram = np.asarray(projections[:, row, :], dtype=np.float32).T
            if "center" in params:
                shift = int(round(sinogram.shape[0] / 2 - float(params["center"])))
                sinogram = np.roll(sinogram, shift, axis=0)
            slice_ = iradon(sinogram, theta=theta, filter_name=params.get("filter", "ramp"), circle=True)
            tifffile.imwrite(out / f"slice_{row:05d}.tif", slice_.astype(np.float32))
            print(f"progress {row + 1}/{rows}", flush=True)
    print(f"wrote {rows} slices to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
