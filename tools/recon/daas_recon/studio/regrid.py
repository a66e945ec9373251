"""Filtered back-projection in Fourier space by regridding ("gridrec"): the studio's slices.

By the Fourier slice theorem, the 1-D Fourier transform of the projection at angle theta is
the slice's 2-D transform along the line through the origin at theta. So filtered
back-projection is: ramp-filter and window each projection's spectrum, lay it on its line,
and take one inverse 2-D transform of the whole plane. The lines' points are not on a
Cartesian grid, so that last step is a type-1 non-uniform FFT, FINUFFT's `nufft2d1`
(Barnett, Magland, af Klinteberg, SIAM J. Sci. Comput. 41 (2019) C479), to a relative
precision of 1e-4. This is gridrec as used at PSI TOMCAT (Marone and Stampanoni, J.
Synchrotron Rad. 19 (2012) 1029; Dowd et al., Proc. SPIE 3772 (1999) 224).

The centre of rotation only moves each projection, which is a phase on its spectrum; the
points depend only on the angles. So `Gridrec` sorts the points once (a FINUFFT plan per set
of angles) and `Gridrec.spectrum` keeps everything that does not depend on the centre: a
centre step costs one phase multiply and one NUFFT execution.

Conventions as in `daas_recon.pipeline`: a sinogram is (angles, columns) of `-log` values, a
centre is in pixels from the first detector column, a slice is (columns, columns) float32
with algotom's orientation, masked outside the reconstruction circle as algotom masks it
(`make_circle_mask(columns, 1.0)`). Scale: attenuation per pixel, as algotom's
`fbp_reconstruction` except that each projection weighs pi / (projections per 180
degrees); algotom uses pi / (angles - 1), 0.6 % more for 181 angles. Checked against
algotom's FBP in tests/test_studio.py.
"""

import functools
import threading
import time

import numpy as np
import scipy.fft

import algotom.rec.reconstruction as rec
import algotom.util.utility as util

from .. import pipeline

#: FINUFFT's requested relative precision. 1e-4 is far below what a display shows and lets
#: FINUFFT use its 1.25 upsampling, which is 2 to 3 times faster than 2 (measured at 2048 px).
EPS = 1e-4
#: FFTW's planner flags as FINUFFT takes them (its `fftw` option).
FFTW_MEASURE, FFTW_ESTIMATE = 0, 64
#: Slices at least this wide get a measured FFTW plan (`prepare`).
MEASURED_FROM = 1024
# Widths whose FFTW plans are measured in this process (`prepare`).
_prepared = set()
_prepared_lock = threading.Lock()


def device():
    """Where slices are made: always "cpu" here (see `gridrec_gpu`)."""
    return "cpu"


def gridrec_gpu(*_args, **_kwargs):
    """The seam for a GPU path, not built: raises NotImplementedError.

    What would go here: cufinufft (FINUFFT's CUDA library) with the very same call as
    `Gridrec` (`cufinufft.Plan(1, (n, n), eps=1e-4, isign=1, dtype="complex64")`, `setpts`
    with the points, `execute` with the spectrum times the centre's phase, arrays on the
    GPU through CuPy), or ASTRA's FBP_CUDA on the sinogram as `pipeline.reconstruct` does
    for the batch job. No GPU was available where the studio was written, so only the
    CPU path exists; `device()` says "cpu".
    """
    raise NotImplementedError("the studio has no GPU path (see regrid.gridrec_gpu)")


def ramp(length, filter_name):
    """The filter on the rfft bins of a projection padded to `length`: (length // 2 + 1,).

    The ramp is the transform of Kak and Slaney's band-limited spatial kernel (Principles of
    Computerized Tomographic Imaging, 1988, ch. 3, eq. 61: 1/4 at 0, 0 at even offsets,
    -1/(pi n)^2 at odd ones), the kernel algotom's `make_2d_ramp_window` uses: unlike |k|
    sampled at the bins it keeps the band's small mean near k = 0, so the slice has no
    offset ("dishing"). The window is algotom's `make_smoothing_window` (scipy's windows
    over the whole band; "none": the plain ramp), so filters mean the same as in the batch
    job. Raises ValueError for an unknown filter.
    """
    if filter_name not in pipeline.FILTERS:
        raise ValueError(f"unknown filter {filter_name!r}")
    offsets = np.arange(length)
    offsets[offsets > length // 2] -= length  # circular: 0, 1, ..., -2, -1
    kernel = np.zeros(length)
    kernel[0] = 0.25
    odd = np.abs(offsets) % 2 == 1
    kernel[odd] = -1.0 / (np.pi * offsets[odd]) ** 2
    response = np.fft.rfft(kernel).real
    window = rec.make_smoothing_window(None if filter_name == "none" else filter_name, length)
    # The window is laid out like algotom's (zero frequency at length // 2).
    return response * np.fft.ifftshift(window)[: length // 2 + 1]


def angle_weight(theta_rad):
    """Weight of one projection in the back-projection sum (radians).

    The angular step (median of the sorted steps) times 180 degrees over the span covered,
    when that span is more than 180 degrees: each direction of a 360-degree scan is seen
    twice. A range narrower than 180 degrees keeps the step, so a partial range's values
    stay comparable with the full one's (it is a limited-angle slice, not a rescaled one).
    """
    theta = np.sort(np.asarray(theta_rad, dtype=np.float64))
    step = float(np.median(np.diff(theta))) if theta.size > 1 else np.pi
    span = float(theta[-1] - theta[0]) + step
    return step * min(1.0, np.pi / span) if span > 0 else step


def prepare(columns, nthreads=None):
    """Measures FFTW's plan for slices `columns` wide, once per process (seconds, at once
    when done before). FINUFFT's default FFTW plan (FFTW_ESTIMATE) makes its 2-D FFT the
    slowest step (2560^2 for 2048 px: 75 to 130 ms against 30 to 40 ms measured); measuring
    takes 2 s (640 px) to 16 s (2048 px, on 2 busy cores), and FFTW keeps what it learnt
    (its wisdom) for every later plan of that size in the process. The studio calls this
    while it loads; a `Gridrec` made before uses the estimated plan. Below `MEASURED_FROM`
    columns the estimated plan is kept: its FFT takes a few ms there."""
    import finufft

    with _prepared_lock:
        if columns in _prepared or columns < MEASURED_FROM:
            return 0.0
        started = time.perf_counter()
        finufft.Plan(1, (columns, columns), eps=EPS, isign=1, dtype="complex64",
                     nthreads=nthreads or pipeline.cores(), upsampfac=1.25, fftw=FFTW_MEASURE)
        _prepared.add(columns)
        return time.perf_counter() - started


@functools.lru_cache(maxsize=4)
def circle(columns):
    """The reconstruction circle of a (columns, columns) slice, bool: algotom's
    `make_circle_mask(columns, 1.0)` (radius columns // 2 about pixel columns // 2)."""
    return util.make_circle_mask(columns, 1.0) > 0


class Gridrec:
    """Slices of one detector width from sinograms over one set of angles.

    Holds the sorted NUFFT points (`finufft.Plan`) and two buffers; not thread-safe: use
    one from one thread at a time. Memory (bytes, A angles, n columns, M = n + 1 rfft bins
    of the 2n-padded projection): the points 8 A M and FINUFFT's sort 8 A M, the spectrum
    buffer 8 A M, the output 8 n^2, FINUFFT's fine grid (1.25 n)^2 complex64 and FFTW's
    work beside it (`memory_bytes`).
    """

    def __init__(self, theta_rad, columns, nthreads=None):
        import finufft

        theta = np.asarray(theta_rad, dtype=np.float64)
        if theta.ndim != 1 or theta.size < 2:
            raise ValueError("at least 2 angles are needed")
        self.columns = n = int(columns)
        self.angles = theta.size
        self.nthreads = nthreads or pipeline.cores()
        # Zero padding to twice the width keeps the circular convolution of the filter from
        # wrapping around; the edge values (as algotom pads) keep a sample wider than the
        # field of view from a bright rim.
        self.length = scipy.fft.next_fast_len(2 * n, real=True)
        self.left = (self.length - n) // 2
        bins = self.length // 2 + 1
        self.freq = np.arange(bins) / self.length  # cycles per pixel
        omega = 2 * np.pi * self.freq
        # Output axis 0 is the slice's row (y), axis 1 its column (x); algotom's
        # back-projector reads column x cos(theta) - y sin(theta) + centre of the projection.
        self._ky = np.ascontiguousarray((-np.sin(theta)[:, None] * omega).astype(np.float32).ravel())
        self._kx = np.ascontiguousarray((np.cos(theta)[:, None] * omega).astype(np.float32).ravel())
        self._plan = finufft.Plan(1, (n, n), eps=EPS, isign=1, dtype="complex64", nthreads=self.nthreads,
                                  upsampfac=1.25, fftw=FFTW_MEASURE if n in _prepared else FFTW_ESTIMATE)
        self._plan.setpts(self._ky, self._kx)
        self._coef = np.empty((self.angles, bins), dtype=np.complex64)
        self._out = np.empty((n, n), dtype=np.complex64)
        self.weight = angle_weight(theta)
        # FINUFFT's modes run from -n/2: pixel p sits at p - n // 2, whereas algotom's
        # centre pixel is (n - 1) / 2; for even n that is half a pixel, a phase per point.
        self._half = 0.5 if n % 2 == 0 else 0.0
        self.mask = circle(n)

    @staticmethod
    def memory_bytes(angles, columns):
        """What one `Gridrec` holds (bytes), for the studio's memory budget."""
        bins = columns + 1
        fine = int(np.ceil(1.25 * columns)) + 16
        return 8 * angles * bins * 3 + 8 * columns * columns + 16 * fine * fine

    def spectrum(self, sinogram, filter_name):
        """The filtered spectra of a sinogram, ready for any centre: (angles, bins) complex64.

        sinogram: (angles, columns) `-log` values, the angles of this Gridrec. Raises
        ValueError for another shape or an unknown filter.
        """
        sino = np.asarray(sinogram, dtype=np.float32)
        if sino.shape != (self.angles, self.columns):
            raise ValueError(f"sinogram {sino.shape}, expected ({self.angles}, {self.columns})")
        padded = np.pad(sino, ((0, 0), (self.left, self.length - self.columns - self.left)), mode="edge")
        spec = scipy.fft.rfft(padded, axis=1, workers=self.nthreads)
        del padded
        # The slice is real: the negative frequencies are the positive ones' conjugates,
        # so each bin but 0 and the Nyquist one counts twice and the real part is taken.
        weights = ramp(self.length, filter_name) * (self.weight / self.length)
        weights[1:self.length - self.length // 2] *= 2.0
        spec *= weights.astype(np.float32)
        if self._half:
            shift = self._half * (self._ky + self._kx).reshape(spec.shape)
            spec *= np.exp(1j * shift).astype(np.complex64)
        return spec

    def image(self, spectrum, centre):
        """The slice about `centre` (pixels from the first column): (columns, columns) float32,
        0 outside the reconstruction circle. spectrum: from `spectrum`."""
        phase = np.exp(2j * np.pi * self.freq * (centre + self.left)).astype(np.complex64)
        np.multiply(spectrum, phase, out=self._coef)
        self._plan.execute(self._coef.reshape(-1), out=self._out)
        return np.multiply(self._out.real, self.mask)


def reconstruct(sinogram, centre, theta_rad, filter_name="hann", nthreads=None):
    """One slice, once: `Gridrec(theta_rad, columns).image(spectrum(sinogram), centre)`.

    sinogram: (angles, columns) `-log` values; centre in pixels; theta_rad: (angles,).
    Returns (columns, columns) float32. Raises ValueError (a centre outside the detector,
    an unknown filter, a shape that does not match).
    """
    columns = np.shape(sinogram)[1]
    if not 0 <= centre < columns:
        raise ValueError(f"centre {centre:g} is outside the detector (0 to {columns - 1})")
    grid = Gridrec(theta_rad, columns, nthreads)
    return grid.image(grid.spectrum(sinogram, filter_name), centre)
