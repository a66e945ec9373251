"""What a job leaves in its output folder; every path returned is relative to that folder.

- `volume/slice_RRRRR.tif`: one 32-bit float TIFF per slice (tifffile), RRRRR the detector
  row (0-based, 5 digits); or `volume.h5`: `/exchange/data` (slices, columns, columns)
  float32, chunked by slice, with attributes `first_row` and `centre`;
- `preview.png`, and for a sweep `sweep/centre_<C>.png` (C with one or two decimals,
  e.g. centre_296.0.png, centre_296.25.png): 8-bit greyscale (Pillow), contrast stretched
  between the 0.5th and 99.5th percentiles of the slice;
- `summary.json`, written last, so its presence means the job finished.
"""

import json
import os

import h5py
import numpy as np
import tifffile
from PIL import Image


def centre_label(centre):
    """296 -> '296.0', 296.25 -> '296.25': at least one decimal, at most two."""
    text = f"{centre:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def to_8bit(image):
    """A slice as 8-bit grey (uint8, same shape), stretched between its 0.5th and 99.5th
    percentiles: how every preview (and the studio's PNG) is windowed."""
    lo, hi = np.percentile(image, (0.5, 99.5))
    scaled = np.clip((image - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    return np.round(scaled * 255).astype(np.uint8)


def _png(path, image):
    Image.fromarray(to_8bit(image), mode="L").save(path, optimize=True)


def write_preview(folder, image):
    """Writes `preview.png` from a (columns, columns) slice; returns its path."""
    _png(os.path.join(folder, "preview.png"), image)
    return "preview.png"


def write_sweep_preview(folder, centre, image):
    """Writes `sweep/centre_<C>.png`; returns its path."""
    os.makedirs(os.path.join(folder, "sweep"), exist_ok=True)
    name = f"sweep/centre_{centre_label(centre)}.png"
    _png(os.path.join(folder, name), image)
    return name


def write_summary(folder, summary):
    """Writes `summary.json` (via a temporary file, so a reader never sees half of it)."""
    tmp = os.path.join(folder, ".summary.json.tmp")
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    os.replace(tmp, os.path.join(folder, "summary.json"))


class VolumeWriter:
    """Writes slices one at a time as a TIFF stack or into one HDF5 volume."""

    def __init__(self, folder, fmt, first_row, count, columns, centre):
        self.folder, self.fmt, self.first_row = folder, fmt, first_row
        self.paths = []
        if fmt == "tiff":
            self.volume = "volume/"
            os.makedirs(os.path.join(folder, "volume"), exist_ok=True)
            self.h5 = None
        elif fmt == "hdf5":
            self.volume = "volume.h5"
            self.h5 = h5py.File(os.path.join(folder, "volume.h5"), "w")
            data = self.h5.create_dataset("/exchange/data", shape=(count, columns, columns), dtype=np.float32,
                                          chunks=(1, columns, columns))
            data.attrs["first_row"] = first_row
            data.attrs["centre"] = centre
            self.paths.append("volume.h5")
        else:
            raise ValueError(f"unknown output format {fmt!r}")

    def write(self, row, image):
        """Writes the slice of detector row `row`."""
        if self.h5 is None:
            name = f"volume/slice_{row:05d}.tif"
            tifffile.imwrite(os.path.join(self.folder, name), image.astype(np.float32))
            self.paths.append(name)
        else:
            self.h5["/exchange/data"][row - self.first_row] = image

    def close(self):
        if self.h5 is not None:
            self.h5.close()
            self.h5 = None
