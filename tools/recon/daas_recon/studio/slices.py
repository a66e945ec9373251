"""The loaded scan's slices: a view's values checked, and the slice made from the sinograms
held in memory, with small caches of what does not depend on the centre.

A view is what one slice needs: row, centre, filter, ring removal, angle range, algorithm.
What a centre step reuses: per (row, ring removal) the ring-removed sinogram, per (row, ring
removal, filter, angles) the filtered spectrum, per set of angles the sorted NUFFT points
(`regrid.Gridrec`). `Slices.make` is not thread-safe: the server calls it from one thread.
"""

import collections
import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from .. import pipeline
from . import regrid
from .sharpness import sharpness

#: The studio's algorithms: name -> (label, the batch job's `algorithm` for the same slice).
ALGORITHMS = {
    "fbp": ("FBP, Fourier regridding (fast)", "fbp"),
    "fbp_algotom": ("FBP, algotom (slow, for comparison)", "fbp"),
    "dfi": ("DFI, algotom (slow, for comparison)", "dfi"),
}
#: Entries of each cache (see the module doc); `working_bytes` counts them.
SINOGRAMS, SPECTRA, GRIDS = 4, 3, 2


class Invalid(ValueError):
    """A view's value cannot be used: `field` names it, `str()` says why."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class View:
    """One slice's parameters. Angles in degrees, centre in pixels from the first column."""

    row: int
    centre: float
    filter: str
    ring_removal: str
    angle_from: float
    angle_to: float
    algorithm: str

    def to_json(self):
        return asdict(self)


@dataclass
class Slice:
    """A made slice: image (n, n) float32, its focus figure, the seconds it took to make,
    and its smallest and largest value inside the reconstruction circle."""

    image: np.ndarray
    sharpness: float
    seconds: float
    minimum: float
    maximum: float


class _Lru:
    """At most `size` values by key, the least recently used dropped first."""

    def __init__(self, size):
        self.size, self.items = size, collections.OrderedDict()

    def get(self, key, make):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = make()
        self.items[key] = value
        while len(self.items) > self.size:
            self.items.popitem(last=False)
        return value

    def clear(self):
        self.items.clear()


def working_bytes(angles, columns):
    """Memory the slices need on top of the sinograms (bytes), for the studio's budget.

    The caches when full (`SINOGRAMS` ring-removed sinograms, `SPECTRA` spectra of (angles,
    columns + 1) complex64, `GRIDS` NUFFT plans, `regrid.Gridrec.memory_bytes`), plus the
    largest transient of one slice: algotom's DFI (about 200 bytes per slice pixel: it pads
    to twice the width in complex128), ring removal ("all": about 18 float32 copies of the
    sinogram), or a first regridded slice (its spectrum and plan: about 12 sinogram copies
    and 40 bytes per slice pixel); and 40 bytes per slice pixel for answers on their way
    (the float32 bytes, tornado's buffer, the PNG's percentiles). Measured at 2048 px x 1500
    angles (`bench_studio.py --memory`): 1225 MiB used at most (812 MiB of it DFI's), against
    1484 MiB here.
    """
    sino = angles * columns * 4
    spectrum = angles * (columns + 1) * 8
    pixels = columns * columns
    caches = SINOGRAMS * sino + SPECTRA * spectrum + GRIDS * regrid.Gridrec.memory_bytes(angles, columns)
    transient = max(200 * pixels, 18 * sino, 12 * sino + 40 * pixels)
    return caches + transient + 40 * pixels


class Slices:
    """Slices of the rows held in memory.

    sinograms: (rows, angles, columns) float32 `-log` values of rows first_row.. (the studio's
    load); theta_deg: (angles,) the scan's angles in degrees; nthreads: FINUFFT's and the
    FFT's threads (default: every core this process may use).
    """

    def __init__(self, sinograms, first_row, theta_deg, nthreads=None):
        self.sinograms = sinograms
        self.first_row = int(first_row)
        self.last_row = self.first_row + sinograms.shape[0] - 1
        self.columns = sinograms.shape[2]
        self.theta_deg = np.asarray(theta_deg, dtype=np.float64)
        self.nthreads = nthreads or pipeline.cores()
        self._sinograms = _Lru(SINOGRAMS)
        self._spectra = _Lru(SPECTRA)
        self._grids = _Lru(GRIDS)

    def default_view(self, centre):
        """The view to start from: the middle row, `centre`, and the batch job's defaults
        (filter hann, ring removal sorting, algorithm fbp), every angle."""
        return View(row=(self.first_row + self.last_row) // 2, centre=float(centre), filter="hann",
                    ring_removal="sorting", angle_from=float(self.theta_deg.min()),
                    angle_to=float(self.theta_deg.max()), algorithm="fbp")

    def check(self, values, base):
        """A View from `values` (a mapping of field names to strings or numbers, as a query or
        a JSON body gives them), the fields it lacks taken from `base` (a View). Raises
        Invalid (field, why) for a value that cannot be used."""
        fields = base.to_json()
        for name in fields:
            if name in values and values[name] is not None:
                fields[name] = values[name]
        try:
            row = int(fields["row"])
        except (TypeError, ValueError):
            raise Invalid("row", f"row {fields['row']!r} is not a whole number") from None
        if not self.first_row <= row <= self.last_row:
            raise Invalid("row", f"row {row} is not loaded (rows {self.first_row} to {self.last_row} are)")
        numbers = {}
        for name in ("centre", "angle_from", "angle_to"):
            try:
                numbers[name] = float(fields[name])
            except (TypeError, ValueError):
                raise Invalid(name, f"{name} {fields[name]!r} is not a number") from None
            if not math.isfinite(numbers[name]):
                raise Invalid(name, f"{name} must be finite")
        if not 0 <= numbers["centre"] < self.columns:
            raise Invalid("centre", f"centre {numbers['centre']:g} is outside the detector (0 to {self.columns - 1})")
        for name, allowed in (("filter", pipeline.FILTERS), ("ring_removal", pipeline.RING_REMOVALS),
                              ("algorithm", tuple(ALGORITHMS))):
            if fields[name] not in allowed:
                raise Invalid(name, f"unknown {name.replace('_', ' ')} {fields[name]!r}: one of {', '.join(allowed)}")
        count = self._angles(numbers["angle_from"], numbers["angle_to"]).size
        if count < 2:
            raise Invalid("angle_to", f"angles {numbers['angle_from']:g} to {numbers['angle_to']:g} degrees hold "
                                      f"{count} projection{'s' if count != 1 else ''}; at least 2 are needed")
        return View(row=row, centre=numbers["centre"], filter=fields["filter"], ring_removal=fields["ring_removal"],
                    angle_from=numbers["angle_from"], angle_to=numbers["angle_to"], algorithm=fields["algorithm"])

    def auto_centre(self, row):
        """The centre of `row` as the batch job's "centre auto" finds it (pixels): Vo's
        method (`pipeline.find_centre`) on the transmission after ring removal "sorting",
        the job's default. The ring-removed sinogram stays in the cache for the first view."""
        trans = pipeline.remove_rings(np.exp(-self.sinograms[row - self.first_row]), "sorting")
        self._sinograms.get((row, "sorting"), lambda: pipeline.minus_log(trans))
        return pipeline.find_centre(trans, self.theta_deg)

    def _angles(self, start, end):
        """Indices of the projections from `start` to `end` degrees, both included."""
        tol = 1e-6
        return np.flatnonzero((self.theta_deg >= start - tol) & (self.theta_deg <= end + tol))

    def sinogram(self, row, ring_removal):
        """The -log sinogram of `row` after ring removal: (angles, columns) float32 (the held
        array itself for "none"). Vo's removal works on transmission, as in the batch job."""
        held = self.sinograms[row - self.first_row]
        if ring_removal == "none":
            return held
        return self._sinograms.get((row, ring_removal), lambda: pipeline.minus_log(
            pipeline.remove_rings(np.exp(-held), ring_removal)))

    def make(self, view):
        """The slice of a checked View: a Slice. Seconds include the cache misses."""
        started = time.perf_counter()
        chosen = self._angles(view.angle_from, view.angle_to)
        sino = self.sinogram(view.row, view.ring_removal)
        if view.algorithm == "fbp":
            key = chosen.tobytes()
            grid = self._grids.get(key, lambda: regrid.Gridrec(np.deg2rad(self.theta_deg[chosen]), self.columns,
                                                               self.nthreads))
            spectrum = self._spectra.get((view.row, view.ring_removal, view.filter, key),
                                         lambda: grid.spectrum(sino[chosen], view.filter))
            image = grid.image(spectrum, view.centre)
        else:
            # algotom's reconstructors take transmission (they apply -log themselves).
            trans = np.exp(-sino[chosen])
            image = pipeline.reconstruct(trans, view.centre, np.deg2rad(self.theta_deg[chosen]),
                                         ALGORITHMS[view.algorithm][1], view.filter)
        mask = regrid.circle(self.columns)
        inside = np.min(image, where=mask, initial=np.inf), np.max(image, where=mask, initial=-np.inf)
        figure = sharpness(image)
        return Slice(image=image, sharpness=figure, seconds=time.perf_counter() - started,
                     minimum=float(inside[0]) if np.isfinite(inside[0]) else 0.0,
                     maximum=float(inside[1]) if np.isfinite(inside[1]) else 0.0)

    def clear(self):
        """Drops the caches (their memory goes back once no slice uses it)."""
        self._sinograms.clear()
        self._spectra.clear()
        self._grids.clear()
