"""Reading a Data Exchange HDF5 scan (De Carlo et al., J. Synchrotron Rad. 21 (2014) 1224).

A scan is `/exchange/data` (projections: angles x rows x columns), `/exchange/data_white`
(flats: n x rows x columns), `/exchange/data_dark` (darks: n x rows x columns) and
`/exchange/theta` (one angle per projection, degrees). `open_scan` checks all of that up
front, so a broken file fails before any work with one `InputError` naming the file and what
is wrong; reading afterwards is by blocks of rows (`read_rows`), never the whole volume.
"""

import os
from dataclasses import dataclass

import h5py
import numpy as np

DATA = "/exchange/data"
WHITE = "/exchange/data_white"
DARK = "/exchange/data_dark"
THETA = "/exchange/theta"
# What a dataset folder may hold as its scan.
SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs")


class InputError(Exception):
    """The input cannot be used; `str()` is the whole user-facing reason (`<file>: <what>`)."""


@dataclass
class Scan:
    """An open, checked Data Exchange file. Close it with `close()` (or use `with`)."""

    path: str
    file: h5py.File
    #: (angles, rows, columns) of /exchange/data.
    shape: tuple
    #: /exchange/theta in degrees, float64, one per projection.
    theta_deg: np.ndarray

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.file.close()

    def read_rows(self, first, stop):
        """Projections, flat mean and dark mean of rows `first..stop-1`.

        Returns `(proj, flat, dark)`: proj is (angles, stop-first, columns) in the file's
        dtype; flat and dark are (stop-first, columns) float32 means over the flats and
        darks. Memory: the projection slab dominates, angles * rows * columns * itemsize.
        """
        flat, dark = self.read_flat_dark(first, stop)
        return self.read_projections(0, self.shape[0], first, stop), flat, dark

    def read_flat_dark(self, first, stop):
        """`(flat, dark)`: (stop-first, columns) float32 means of rows `first..stop-1`."""
        flat = np.mean(self.file[WHITE][:, first:stop, :], axis=0, dtype=np.float32)
        dark = np.mean(self.file[DARK][:, first:stop, :], axis=0, dtype=np.float32)
        return flat, dark

    def read_projections(self, start, end, first, stop):
        """Projections `start..end-1` of rows `first..stop-1`: (end-start, stop-first,
        columns) in the file's dtype."""
        return self.file[DATA][start:end, first:stop, :]

    @property
    def chunks(self):
        """The HDF5 chunk shape of /exchange/data (angles, rows, columns), None if contiguous."""
        return self.file[DATA].chunks

    @property
    def itemsize(self):
        """Bytes per projection pixel in the file."""
        return self.file[DATA].dtype.itemsize


def find_file(folder, name=None):
    """The scan file of a dataset folder.

    `name` (the `file` parameter) picks one file inside the folder. Without it the folder
    must hold exactly one file ending in .h5, .hdf5, .hdf or .nxs. Raises `InputError`
    otherwise (no such folder or file, none, or several: their names are listed).
    """
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: no such dataset folder")
    if name:
        path = os.path.normpath(os.path.join(folder, name))
        if os.path.dirname(path) != os.path.normpath(folder) and not path.startswith(os.path.normpath(folder) + os.sep):
            raise InputError(f"{name}: the file must be inside the dataset folder")
        if not os.path.isfile(path):
            raise InputError(f"{path}: no such file in the dataset")
        return path
    found = sorted(f for f in os.listdir(folder) if f.lower().endswith(SUFFIXES) and os.path.isfile(os.path.join(folder, f)))
    if not found:
        raise InputError(f"{folder}: no HDF5 file (.h5, .hdf5, .hdf, .nxs) in the dataset")
    if len(found) > 1:
        raise InputError(f"{folder}: several HDF5 files ({', '.join(found)}); choose one with the file parameter")
    return os.path.join(folder, found[0])


def open_scan(path):
    """Opens and checks a Data Exchange file; returns a `Scan`.

    Raises `InputError` with `<path>: <reason>` when the file is not HDF5 or is truncated,
    lacks one of /exchange/data, data_white, data_dark, theta, or when their shapes
    disagree (3-D data; flats and darks with data's rows and columns; one angle per
    projection; angles finite).
    """
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        reason = "not an HDF5 file" if not h5py.is_hdf5(path) else "unreadable HDF5 file (truncated or damaged)"
        raise InputError(f"{path}: {reason} ({e})") from None
    try:
        for name in (DATA, WHITE, DARK, THETA):
            try:
                item = f.get(name)
            except (OSError, KeyError, RuntimeError) as e:
                raise InputError(f"{path}: cannot read {name} (truncated or damaged file: {e})") from None
            if item is None:
                raise InputError(f"{path}: missing {name}")
            if not isinstance(item, h5py.Dataset):
                raise InputError(f"{path}: {name} is not a dataset")
        data = f[DATA]
        if data.ndim != 3:
            raise InputError(f"{path}: {DATA} has shape {data.shape}, expected (angles, rows, columns)")
        for name in (WHITE, DARK):
            ref = f[name]
            if ref.ndim != 3 or ref.shape[1:] != data.shape[1:] or ref.shape[0] < 1:
                raise InputError(f"{path}: {name} has shape {ref.shape}, expected (n, {data.shape[1]}, {data.shape[2]})")
        try:
            theta = np.asarray(f[THETA][()], dtype=np.float64).ravel()
            # Touch the first and last projection so that a file cut short fails now, not
            # halfway through the volume.
            data[0, 0, :1]
            data[-1, -1, -1:]
        except (OSError, RuntimeError, ValueError) as e:
            raise InputError(f"{path}: unreadable data (truncated or damaged file: {e})") from None
        if theta.size != data.shape[0]:
            raise InputError(f"{path}: {THETA} has {theta.size} angles but {DATA} has {data.shape[0]} projections")
        if not np.all(np.isfinite(theta)):
            raise InputError(f"{path}: {THETA} holds non-finite angles")
        return Scan(path=path, file=f, shape=tuple(data.shape), theta_deg=theta)
    except BaseException:
        f.close()
        raise
