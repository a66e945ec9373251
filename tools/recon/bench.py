#!/usr/bin/env python3
"""`make bench-recon`: the reconstruction job's speed and memory, on simulated scans.

1. Speed: a simulated 2048-column scan (360 angles over 180 degrees, 2 rows; --angles to
   change) reconstructed by the job (`recon.py`, algorithm fbp, centre given) beside
   scikit-image's `iradon` on the same flat/dark-corrected, -log sinogram: seconds per
   slice each, and their ratio. DFI (algotom) too, unless --no-dfi.
2. Memory: a scan whose reconstructed volume (float32) is four times the memory limit the
   job is given (default 400 rows x 1024 x 1024 = 1600 MiB against --memory-mib 400), as
   one HDF5 volume: the job's peak resident memory (getrusage of the child) against the limit.

On the 2-core development machine the whole run takes about four minutes. Scratch files go
to --workdir (default a fresh folder in $TMPDIR), removed at the end unless --keep.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import scipy.ndimage as ndi

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from daas_recon import simulate  # noqa: E402


def job(data, dataset, out, params, *extra):
    """Runs the job as the local runtime does; returns (summary, wall seconds, child peak RSS MiB)."""
    pfile = os.path.join(os.path.dirname(out), os.path.basename(out) + ".json")
    with open(pfile, "w") as f:
        json.dump({"dataset": dataset, **params}, f)
    # A fresh launcher per job: its RUSAGE_CHILDREN peak is this job's (the job and its
    # worker processes, the largest of them), not an earlier, larger job's.
    launcher = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
                "sys.stderr.write('peak_kib %d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", launcher, sys.executable, os.path.join(HERE, "recon.py"),
                           "--parameters", pfile, "--data", data, "--output", out, *extra],
                          capture_output=True, text=True)
    wall = time.monotonic() - t
    if proc.returncode != 0:
        sys.exit(f"the job failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    peak_kib = int(proc.stderr.rsplit("peak_kib ", 1)[1].split()[0])
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    return summary, wall, peak_kib / 1024


def speed(work, size, angles, dfi, device="cpu"):
    from skimage.transform import iradon
    import tifffile

    data = os.path.join(work, "data")
    os.makedirs(os.path.join(data, "speed"))
    scan = os.path.join(data, "speed", "scan.h5")
    centre = simulate.simulate(scan, size=size, angles=angles, rows=2, noise=0.01)
    print(f"speed: simulated {angles} projections x 2 rows x {size} columns, centre {centre:g}", flush=True)
    rows = 2
    results = {}
    for algorithm in ["fbp"] + (["dfi"] if dfi else []):
        summary, wall, _ = job(data, "speed", os.path.join(work, f"out-{algorithm}"),
                               {"algorithm": algorithm, "centre": "given", "centre_value": centre, "ring_removal": "none"},
                               "--device", "cpu" if algorithm == "dfi" else device)
        per_slice = (summary["seconds"]["reconstruct"] + summary["seconds"]["correct"]) / rows
        results[algorithm] = (per_slice, wall, summary)

    with h5py.File(scan) as f:
        proj = f["/exchange/data"][:, 0, :].astype(np.float64)
        flat = f["/exchange/data_white"][:, 0, :].mean(axis=0)
        dark = f["/exchange/data_dark"][:, 0, :].mean(axis=0)
        theta = f["/exchange/theta"][()]
    t = time.monotonic()
    sino = -np.log(np.clip((proj - dark) / (flat - dark), 1e-6, None))
    sino = ndi.shift(sino, (0, size // 2 - centre), mode="nearest")
    reference = iradon(sino.T, theta=theta, filter_name="ramp", circle=True)
    iradon_s = time.monotonic() - t

    ours = tifffile.imread(os.path.join(work, "out-fbp", "volume", "slice_00000.tif"))
    yy, xx = np.mgrid[:size, :size]
    inside = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (0.45 * size) ** 2
    corr = float(np.corrcoef(ours[inside], reference[inside])[0, 1])
    # 360 angles undersample a 2048-px slice ~9 times: the two differ in noise and streaks,
    # which a 4-px Gaussian takes away; what is left is the structure.
    smooth = float(np.corrcoef(ndi.gaussian_filter(ours, 4)[inside], ndi.gaussian_filter(reference, 4)[inside])[0, 1])

    print(f"\none {size}-px slice, {angles} angles, {os.cpu_count()} CPU cores "
          f"(flat/dark correction and reconstruction, per slice):")
    fbp = results["fbp"][0]
    label = "algotom, CPU" if device == "cpu" else "ASTRA FBP_CUDA, GPU"
    print(f"  {'daas_recon fbp (' + label + ')':32}{fbp:8.2f} s/slice   (job wall time {results['fbp'][1]:.1f} s for 2 rows, "
          f"with start-up)")
    if "dfi" in results:
        print(f"  daas_recon dfi (algotom, CPU)   {results['dfi'][0]:8.2f} s/slice")
    print(f"  scikit-image iradon             {iradon_s:8.2f} s/slice")
    print(f"  ratio iradon / daas_recon fbp   {iradon_s / fbp:8.1f} x   (slices correlate {corr:.3f}; {smooth:.4f} smoothed)")
    return {"size": size, "angles": angles, "fbp_s_per_slice": round(fbp, 3), "iradon_s_per_slice": round(iradon_s, 3),
            "ratio": round(iradon_s / fbp, 2), "correlation": round(corr, 4), "correlation_smoothed": round(smooth, 4),
            "dfi_s_per_slice": round(results["dfi"][0], 3) if "dfi" in results else None}


def memory(work, limit_mib, size, angles):
    rows = int(4 * limit_mib * 1024 * 1024 // (size * size * 4))
    data = os.path.join(work, "data")
    os.makedirs(os.path.join(data, "memory"))
    t = time.monotonic()
    centre = simulate.simulate(os.path.join(data, "memory", "scan.h5"), size=size, angles=angles, rows=rows)
    volume_mib = rows * size * size * 4 / (1024 * 1024)
    print(f"\nmemory: simulated {angles} projections x {rows} rows x {size} columns in {time.monotonic() - t:.0f} s; "
          f"volume {volume_mib:.0f} MiB = {volume_mib / limit_mib:.1f} x the limit of {limit_mib} MiB", flush=True)
    summary, wall, peak = job(data, "memory", os.path.join(work, "out-memory"),
                              {"centre": "given", "centre_value": centre, "output_format": "hdf5"},
                              "--memory-mib", str(limit_mib), "--device", "cpu")
    print(f"  blocks of {summary['rows_per_block']} rows; {rows} slices in {wall:.0f} s "
          f"({summary['seconds']['reconstruct'] / rows:.2f} s/slice reconstruction)")
    print(f"  peak resident memory {peak:.0f} MiB (limit {limit_mib} MiB: "
          f"{'within' if peak <= limit_mib else 'OVER'}; the job's own count {summary['peak_rss_mib']:.0f} MiB)")
    return {"limit_mib": limit_mib, "volume_mib": round(volume_mib), "rows": rows, "size": size, "angles": angles,
            "rows_per_block": summary["rows_per_block"], "peak_rss_mib": round(peak), "seconds": round(wall, 1)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=2048, help="columns of the speed scan")
    p.add_argument("--angles", type=int, default=360, help="projections of the speed scan")
    p.add_argument("--no-dfi", action="store_true", help="leave out DFI")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                   help="where the job's fbp runs in the speed run (gpu: needs requirements-gpu.txt and a GPU)")
    p.add_argument("--memory-mib", type=int, default=400, help="the limit given to the job in the memory run")
    p.add_argument("--memory-size", type=int, default=1024, help="columns of the memory scan")
    p.add_argument("--memory-angles", type=int, default=180, help="projections of the memory scan")
    p.add_argument("--only", choices=["speed", "memory"], default=None, help="run one of the two")
    p.add_argument("--workdir", default=None)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    a = p.parse_args()
    work = a.workdir or tempfile.mkdtemp(prefix="daas-bench-recon-")
    os.makedirs(work, exist_ok=True)
    try:
        figures = {}
        if a.only in (None, "speed"):
            figures["speed"] = speed(work, a.size, a.angles, not a.no_dfi, a.device)
        if a.only in (None, "memory"):
            figures["memory"] = memory(work, a.memory_mib, a.memory_size, a.memory_angles)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
