"""The numerical steps, each one call into a maintained library.

- flat/dark correction: `algotom.prep.correction.flat_field_correction`;
- stripe (ring) removal: `algotom.prep.removal` (Vo, Atwood, Drakopoulos, Opt. Express 26
  (2018) 28396, https://doi.org/10.1364/OE.26.028396);
- centre of rotation: `algotom.prep.calculation.find_center_vo` (Vo, Atwood, Drakopoulos,
  Opt. Express 22 (2014) 19078, https://doi.org/10.1364/OE.22.019078);
- `-log` and reconstruction: `algotom.rec.reconstruction` (`fbp_reconstruction`,
  `dfi_reconstruction`, and `astra_reconstruction`, which drives the ASTRA Toolbox's
  FBP_CUDA / SIRT_CUDA, or its CPU SIRT, van Aarle et al., Opt. Express 24 (2016) 25129).

Conventions: a sinogram is (angles, columns); angles are radians here; a centre is in pixels
from the first detector column; a reconstructed slice is (columns, columns) float32 in
attenuation per pixel, masked outside the reconstruction circle.
"""

import os
import warnings

import numba
import numpy as np

import algotom.prep.calculation as calc
import algotom.prep.correction as corr
import algotom.prep.removal as remo
import algotom.rec.reconstruction as rec

#: The `filter` parameter's values (schema.json) and the `ring_removal` parameter's.
FILTERS = ("hann", "hamming", "blackman", "bartlett", "parzen", "none")
RING_REMOVALS = ("sorting", "filtering", "all", "none")
# Window names of the `filter` parameter in algotom's and in ASTRA's spelling.
_ALGOTOM_FILTER = {"none": None, "hann": "hann", "hamming": "hamming", "blackman": "blackman",
                   "bartlett": "bartlett", "parzen": "parzen"}
_ASTRA_FILTER = {"none": "ram-lak", "hann": "hann", "hamming": "hamming", "blackman": "blackman",
                 "bartlett": "bartlett", "parzen": "parzen"}


def cores():
    """CPU cores this process may use (its affinity, so a container's limit counts)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def find_gpu():
    """Whether ASTRA can reconstruct on an NVIDIA GPU here.

    Returns `(True, description)` or `(False, why not)`; never raises. ASTRA comes from
    tools/recon/requirements-gpu.txt, which the CPU install leaves out.
    """
    try:
        import astra
    except ImportError:
        return False, "astra-toolbox is not installed"
    except OSError as e:  # the CUDA runtime libraries are missing
        return False, f"astra-toolbox cannot load ({e})"
    try:
        if not astra.use_cuda():
            return False, "ASTRA sees no CUDA device"
        try:
            info = astra.get_gpu_info()
        except Exception:  # older ASTRA: the device is there, its name is not
            info = "CUDA device 0"
        return True, f"ASTRA {astra.__version__} on {info}"
    except Exception as e:
        return False, f"ASTRA's CUDA check failed ({e})"


def have_astra():
    """Whether the ASTRA Toolbox imports (its CPU algorithms need no GPU, only its libraries)."""
    try:
        import astra  # noqa: F401
        return True
    except (ImportError, OSError):
        return False


def flat_dark(proj, flat, dark):
    """Flat/dark correction (`algotom.prep.correction.flat_field_correction`).

    proj: raw counts, a sinogram (angles, columns) or a block of projections (angles, rows,
    columns); flat, dark: the matching means, (columns,) or (rows, columns). Returns the
    transmission, float32, proj's shape: ~1 in the beam and < 1 in the sample.
    """
    return np.asarray(corr.flat_field_correction(proj, flat, dark), dtype=np.float32)


def remove_rings(transmission, ring_removal):
    """Stripe (ring) removal on one transmission sinogram (angles, columns).

    ring_removal: "sorting" (`remove_stripe_based_sorting`, size 21), "filtering"
    (`remove_stripe_based_filtering`, sigma 3, size 21), "all" (`remove_all_stripe`: large,
    partial and dead stripes) or "none" (the input is returned as it is). Returns float32
    (angles, columns). Raises ValueError for another name.
    """
    trans = transmission
    if ring_removal == "sorting":
        trans = remo.remove_stripe_based_sorting(trans, size=21)
    elif ring_removal == "filtering":
        trans = remo.remove_stripe_based_filtering(trans, sigma=3, size=21)
    elif ring_removal == "all":
        trans = remo.remove_all_stripe(trans, snr=3.0, la_size=51, sm_size=21)
    elif ring_removal != "none":
        raise ValueError(f"unknown ring removal {ring_removal!r}")
    return np.asarray(trans, dtype=np.float32)


def correct(sinogram, flat, dark, ring_removal):
    """Flat/dark correction and stripe removal of one sinogram (`flat_dark`, `remove_rings`).

    sinogram: (angles, columns) raw counts; flat, dark: (columns,) means. Returns the
    transmission (angles, columns) float32, ~1 in the beam and < 1 in the sample; the `-log`
    is taken by the reconstruction (`apply_log`). Raises ValueError for an unknown
    ring_removal.
    """
    return remove_rings(flat_dark(sinogram, flat, dark), ring_removal)


def minus_log(transmission):
    """`-log` of a transmission, float32, as algotom's reconstructors take it (`apply_log`):
    values <= 0 (a dead pixel, a dark count above the flat) count as 1, so give 0."""
    trans = np.asarray(transmission, dtype=np.float32)
    return -np.log(np.where(trans > 0, trans, np.float32(1.0)))


def find_centre(transmission, theta_deg):
    """Centre of rotation by Vo's method (`algotom.prep.calculation.find_center_vo`).

    transmission: (angles, columns) corrected sinogram; theta_deg: the angles in degrees.
    The method needs a 180-degree sinogram: from a wider scan only the projections within
    180 degrees of the first are used. Searches the middle eighth of the detector
    (algotom's default, width/2 +- width/16) to 0.25 px. Returns the centre in pixels.
    """
    keep = (theta_deg - theta_deg[0]) < 180.0
    sino = transmission[keep] if keep.sum() >= 2 else transmission
    return float(calc.find_center_vo(sino, step=0.25, ncore=cores()))


def reconstruct(transmission, centre, theta_rad, algorithm, filter_name="hann", iterations=100, gpu=False):
    """One slice from one corrected sinogram.

    transmission: (angles, columns) float32 from `correct`; centre in pixels (inside the
    detector, else ValueError); theta_rad: (angles,) radians. algorithm: "fbp" (algotom's
    FBP with a numba back-projector on CPU; ASTRA FBP_CUDA when gpu), "dfi" (algotom's direct
    Fourier inversion, CPU only), "sirt" (ASTRA: SIRT_CUDA when gpu, else ASTRA's CPU SIRT,
    `iterations` of them; ValueError when ASTRA is not installed). Returns (columns, columns)
    float32.
    """
    ncol = transmission.shape[1]
    if not 0 <= centre < ncol:
        raise ValueError(f"centre {centre:g} is outside the detector (0 to {ncol - 1})")
    # algotom's reconstructors take -log in place of values <= 0 only after a warning;
    # the transmission is copied so that the caller's sinogram stays as it was.
    sino = np.array(transmission, dtype=np.float32, copy=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*values <= 0.0.*")
        if algorithm == "fbp" and not gpu:
            # algotom 1.7.0's CPU back-projector (back_projection_cpu) runs its angles in a
            # numba prange that adds into one shared image: with more than one thread,
            # updates are lost and the slice changes from run to run (up to ~6 % of its
            # maximum on the tooth). One thread is exact, and on 2 cores no slower.
            numba.set_num_threads(1)
            out = rec.fbp_reconstruction(sino, centre, angles=theta_rad, filter_name=_ALGOTOM_FILTER[filter_name],
                                         apply_log=True, gpu=False, ncore=cores())
        elif algorithm == "dfi":
            out = rec.dfi_reconstruction(sino, centre, angles=theta_rad, filter_name=_ALGOTOM_FILTER[filter_name],
                                         apply_log=True, ncore=cores())
        elif algorithm in ("fbp", "sirt"):
            if not gpu and not have_astra():
                raise ValueError("algorithm sirt needs the ASTRA Toolbox (tools/recon/requirements-gpu.txt), "
                                 "which is not installed here; use fbp or dfi")
            method = {"fbp": "FBP", "sirt": "SIRT"}[algorithm] + ("_CUDA" if gpu else "")
            out = rec.astra_reconstruction(sino, centre, angles=theta_rad, method=method,
                                           num_iter=iterations if algorithm == "sirt" else 1,
                                           filter_name=_ASTRA_FILTER[filter_name], apply_log=True, ncore=1)
        else:
            raise ValueError(f"unknown algorithm {algorithm!r}")
    return np.asarray(out, dtype=np.float32)
