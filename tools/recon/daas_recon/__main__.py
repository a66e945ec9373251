"""The reconstruction job: `python -m daas_recon --parameters P --data D --output O`.

Reads the parameters (JSON, checked against tools/recon/schema.json), the dataset's Data
Exchange file under D, and writes under O: the volume (`volume/slice_RRRRR.tif` or
`volume.h5`), `preview.png` (middle slice), or for a centre sweep `sweep/centre_C.png`
per candidate, and last `summary.json`.

stdout is the job's log, line by line and flushed: plain sentences, `progress D/T rows`
(or `progress D/T centres`), and on failure one last line `error: <file>: <reason>`.
Exit codes: 0 done; 2 the input or the parameters cannot be used; 1 anything else.

Memory: the projections are read in blocks of rows sized so that the whole process stays
under `--memory-mib` (default: half of the memory available to it: the session's memory
as daas gives it in $DAAS_MEMORY_MIB, the cgroup's limit, what the machine has free);
each slice is written as soon as it is made, so the volume is never held.
"""

import argparse
import json
import os
import sys
import time
import traceback
import warnings
from importlib import metadata

import numpy as np

from . import __version__
from . import dataexchange as dx
from . import memory, outputs, workers

SCHEMA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "schema.json")
MAX_CANDIDATES = 201


class ParameterError(Exception):
    """A parameter cannot be used; the message says which and why."""


def log(line):
    print(line, flush=True)


def _warning_to_log(message, category, filename, lineno, file=None, line=None):
    log(f"warning: {message}")


def load_parameters(path, schema_path=SCHEMA):
    """Reads and checks the parameters; returns the dict with defaults filled in.

    path: a JSON file, or None for the JSON text in $DAAS_PARAMETERS (how the Kubernetes
    runtime passes them). schema_path: the JSON Schema (default schema.json; the studio's is
    studio_schema.json). Raises ParameterError (unreadable, not JSON, or not valid against
    the schema, with the first error's field and message).
    """
    try:
        if path is None:
            path = "$DAAS_PARAMETERS"
            if "DAAS_PARAMETERS" not in os.environ:
                raise ParameterError("no parameters: give --parameters FILE or set DAAS_PARAMETERS")
            params = json.loads(os.environ["DAAS_PARAMETERS"])
        else:
            with open(path) as f:
                params = json.load(f)
    except (OSError, ValueError) as e:
        raise ParameterError(f"{path}: cannot read the parameters ({e})") from None
    if not isinstance(params, dict):
        raise ParameterError(f"{path}: the parameters must be a JSON object")
    with open(schema_path) as f:
        schema = json.load(f)
    try:
        import jsonschema
    except ImportError:  # checked by the portal already; the program still runs
        jsonschema = None
    if jsonschema is not None:
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(params), key=lambda e: list(e.path))
        if errors:
            where = ".".join(str(p) for p in errors[0].path) or "parameters"
            raise ParameterError(f"{path}: {where}: {errors[0].message}")
    for name, prop in schema["properties"].items():
        if "default" in prop:
            params.setdefault(name, prop["default"])
    return params


def memory_limit_mib():
    """The default memory bound (MiB): half of what is available (`memory.available_mib`),
    at least 256; 2048 where nothing says what is available."""
    available = memory.available_mib()
    return max(256, available // 2) if available is not None else 2048


def plan(limit_mib, angles, columns, itemsize, slices, cores, gpu=False, max_workers=None):
    """How to stay under limit_mib: returns (workers, rows per block).

    A block holds the raw projections of its rows (angles * columns * itemsize each).
    Reconstructing one slice needs its float sinograms and the padded FFTs of the filter
    (about 40 bytes per sinogram pixel, measured with algotom 1.7.0) and a few slice-sized
    images (16 bytes per pixel); 96 MiB of slack covers the libraries' own allocations.
    What the process holds now (the interpreter and libraries, ~250 MiB) is taken off first.
    Workers (see `workers`; 0: slices are made in this process) are used on the CPU when
    there are at least `workers.MIN_SLICES` slices, one per core, as many as fit: each
    costs `workers.WORKER_MIB` plus one slice's working memory, and two tasks in flight
    (a raw sinogram and a slice each). Rows per block is at least 1 (then the limit may be
    exceeded: the caller says so). max_workers (--workers) caps the workers; 0: none.
    """
    mib = 1024 * 1024
    per_slice = angles * (columns * 1.3) * 40 + columns * columns * 16
    per_row = angles * columns * itemsize
    budget = limit_mib * mib - memory.rss_mib() * mib - 96 * mib
    use = 0
    if not gpu and cores > 1 and slices >= workers.MIN_SLICES:
        for w in range(min(cores, cores if max_workers is None else max_workers), 1, -1):
            need = w * (workers.WORKER_MIB * mib + per_slice) + 2 * w * (per_row + columns * columns * 4)
            if budget - need >= per_row:
                use = w
                break
    if use:
        budget -= use * (workers.WORKER_MIB * mib + per_slice) + 2 * use * (per_row + columns * columns * 4)
    else:
        budget -= per_slice
    return use, max(1, int(budget // per_row))


def candidates(params):
    """The centres of a sweep: sweep_from to sweep_to (included) by sweep_step, 2 decimals."""
    start, stop, step = float(params["sweep_from"]), float(params["sweep_to"]), float(params.get("sweep_step", 1))
    if stop < start:
        raise ParameterError(f"sweep_to ({stop:g}) is below sweep_from ({start:g})")
    count = int(np.floor((stop - start) / step + 1e-9)) + 1
    if count > MAX_CANDIDATES:
        raise ParameterError(f"the sweep has {count} candidates; at most {MAX_CANDIDATES} (raise sweep_step)")
    return [round(start + i * step, 2) for i in range(count)]


class Progress:
    """Prints `progress D/T <unit>` at most once a second, and always the last one."""

    def __init__(self, total, unit):
        self.total, self.unit, self.last = total, unit, 0.0

    def __call__(self, done):
        now = time.monotonic()
        if done == self.total or now - self.last >= 1.0:
            self.last = now
            log(f"progress {done}/{self.total} {self.unit}")


def versions():
    """Versions of the libraries that did the work (None for one not installed)."""
    out = {"python": sys.version.split()[0], "daas_recon": __version__}
    for dist in ("numpy", "scipy", "h5py", "algotom", "numba", "tifffile", "pillow", "astra-toolbox", "cupy-cuda12x"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def run(args):
    """The job; returns the exit code. Raises InputError / ParameterError for exit 2."""
    started = time.monotonic()
    seconds = {"open": 0.0, "read": 0.0, "correct": 0.0, "centre": 0.0, "reconstruct": 0.0, "write": 0.0}
    params = load_parameters(args.parameters)
    dataset = params["dataset"]
    if dataset in ("", ".", "..") or "/" in dataset:
        raise ParameterError(f"dataset {dataset!r}: a dataset is one folder name under {args.data}")
    path = dx.find_file(os.path.join(args.data, dataset), params.get("file"))

    t = time.monotonic()
    scan = dx.open_scan(path)
    seconds["open"] = time.monotonic() - t
    with scan:
        angles, nrows, ncols = scan.shape
        log(f"{path}: {angles} projections of {nrows} rows x {ncols} columns ({scan.file[dx.DATA].dtype}), "
            f"angles {scan.theta_deg.min():g} to {scan.theta_deg.max():g} degrees")
        if params["rows"] == "range":
            first, last = int(params["first_row"]), int(params["last_row"])
            if not 0 <= first <= last < nrows:
                raise dx.InputError(f"{path}: rows {first} to {last} are not inside the scan's rows 0 to {nrows - 1}")
        else:
            first, last = 0, nrows - 1
        middle = first + (last - first) // 2
        theta_rad = np.deg2rad(scan.theta_deg)

        algorithm, ring, filt = params["algorithm"], params["ring_removal"], params["filter"]
        iterations = int(params["iterations"])
        # algotom, numba and scipy take seconds to import: only once the input has passed,
        # so that a broken file or parameter fails at once.
        from . import pipeline

        gpu = False
        if args.device != "cpu":
            gpu, why = pipeline.find_gpu()
            if gpu:
                log(f"GPU found: {why}")
            elif args.device == "gpu":
                raise ParameterError(f"--device gpu: no GPU ({why})")
            else:
                log(f"no GPU found ({why}): reconstructing on the CPU")
        else:
            log("--device cpu: reconstructing on the CPU")
        if gpu and algorithm == "dfi":
            log("dfi has no GPU implementation: reconstructing on the CPU")
            gpu = False
        if algorithm == "sirt" and not gpu and not pipeline.have_astra():
            raise ParameterError("algorithm sirt needs the ASTRA Toolbox (tools/recon/requirements-gpu.txt), "
                                 "which is not installed here; use fbp or dfi")
        device = "gpu" if gpu else "cpu"
        log(f"algorithm {algorithm}" + (f", {iterations} iterations" if algorithm == "sirt" else f", filter {filt}")
            + f", ring removal {ring}, {pipeline.cores()} CPU cores")

        def sinogram_of(row):
            t = time.monotonic()
            proj, flat, dark = scan.read_rows(row, row + 1)
            seconds["read"] += time.monotonic() - t
            t = time.monotonic()
            trans = pipeline.correct(proj[:, 0, :], flat[0], dark[0], ring)
            seconds["correct"] += time.monotonic() - t
            return trans

        def slice_of(trans, centre):
            t = time.monotonic()
            image = pipeline.reconstruct(trans, centre, theta_rad, algorithm, filt, iterations, gpu)
            seconds["reconstruct"] += time.monotonic() - t
            return image

        def in_process_row(raw, flat, dark, ring_, centre, theta, algorithm_, filt_, iterations_):
            t0 = time.monotonic()
            trans = pipeline.correct(raw, flat, dark, ring_)
            t1 = time.monotonic()
            image = pipeline.reconstruct(trans, centre, theta, algorithm_, filt_, iterations_, gpu)
            return image, t1 - t0, time.monotonic() - t1

        os.makedirs(args.output, exist_ok=True)
        summary = {
            "dataset": dataset,
            "file": os.path.relpath(path, os.path.join(args.data, dataset)),
            "shape": {"angles": angles, "rows": nrows, "columns": ncols},
            "rows": [first, last],
            "algorithm": algorithm,
            "iterations": iterations if algorithm == "sirt" else None,
            "filter": filt if algorithm != "sirt" else None,
            "ring_removal": ring,
            "device": device,
            # With the defaults filled in: what the portal prefills to run it again.
            "parameters": params,
        }
        written = []

        if params["centre"] == "sweep":
            centres = candidates(params)
            for c in centres:
                if not 0 <= c < ncols:
                    raise ParameterError(f"sweep centre {c:g} is outside the detector (0 to {ncols - 1})")
            log(f"centre sweep: {len(centres)} candidates from {centres[0]:g} to {centres[-1]:g} on row {middle}")
            trans = sinogram_of(middle)
            limit = args.memory_mib if args.memory_mib is not None else memory_limit_mib()
            nworkers, _ = plan(limit, angles, ncols, scan.itemsize, len(centres), pipeline.cores(), gpu, args.workers)
            progress = Progress(len(centres), "centres")
            progress.last = -1e9
            log(f"progress 0/{len(centres)} centres")
            sweep = []
            pool = workers.Pool(nworkers) if nworkers else None
            try:
                if pool:
                    log(f"{nworkers} worker processes")
                    tasks = ((trans, c, theta_rad, algorithm, filt, iterations) for c in centres)
                    results = pool.map_ordered(workers.centre_task, tasks)
                else:
                    results = ((slice_of(trans, c), 0.0, 0.0) for c in centres)
                for i, (c, (image, _, rec_s)) in enumerate(zip(centres, results)):
                    seconds["reconstruct"] += rec_s
                    t = time.monotonic()
                    name = outputs.write_sweep_preview(args.output, c, image)
                    seconds["write"] += time.monotonic() - t
                    sweep.append({"centre": c, "preview": name})
                    written.append(name)
                    progress(i + 1)
            finally:
                if pool:
                    pool.close()
            summary["workers"] = nworkers
            summary.update({"centre": None, "centre_method": "sweep", "sweep": sweep})
        else:
            if params["centre"] == "given":
                centre, method = float(params["centre_value"]), "given"
                if not 0 <= centre < ncols:
                    raise ParameterError(f"centre_value {centre:g} is outside the detector (0 to {ncols - 1})")
            else:
                trans = sinogram_of(middle)
                t = time.monotonic()
                centre, method = pipeline.find_centre(trans, scan.theta_deg), "vo"
                seconds["centre"] = time.monotonic() - t
            log(f"centre {centre:.2f} ({method})")

            limit = args.memory_mib if args.memory_mib is not None else memory_limit_mib()
            total = last - first + 1
            nworkers, block = plan(limit, angles, ncols, scan.itemsize, total, pipeline.cores(), gpu, args.workers)
            if block == 1 and nworkers == 0 and plan(limit, angles, ncols, scan.itemsize, 1, 1)[1] == 1:
                log(f"warning: {limit} MiB may be too little even for one row at a time")
            block = min(block, total)
            log(f"memory limit {limit} MiB: blocks of {block} rows"
                + (f", {nworkers} worker processes" if nworkers else ""))
            writer = outputs.VolumeWriter(args.output, params["output_format"], first, total, ncols, centre)
            progress = Progress(total, "rows")
            progress.last = -1e9
            log(f"progress 0/{total} rows")
            done, preview = 0, None
            pool = workers.Pool(nworkers) if nworkers else None
            try:
                for start in range(first, last + 1, block):
                    stop = min(start + block, last + 1)
                    t = time.monotonic()
                    proj, flat, dark = scan.read_rows(start, stop)
                    seconds["read"] += time.monotonic() - t
                    tasks = ((np.ascontiguousarray(proj[:, i, :]), flat[i], dark[i], ring, centre, theta_rad,
                              algorithm, filt, iterations) for i in range(stop - start))
                    if pool:
                        results = pool.map_ordered(workers.row_task, tasks)
                    else:
                        results = (in_process_row(*task) for task in tasks)
                    for i, (image, corr_s, rec_s) in enumerate(results):
                        seconds["correct"] += corr_s
                        seconds["reconstruct"] += rec_s
                        t = time.monotonic()
                        writer.write(start + i, image)
                        seconds["write"] += time.monotonic() - t
                        if start + i == middle:
                            preview = image
                        done += 1
                        progress(done)
                    del proj, flat, dark, tasks, results
            finally:
                if pool:
                    pool.close()
                t = time.monotonic()
                writer.close()
                seconds["write"] += time.monotonic() - t
            written += writer.paths
            t = time.monotonic()
            written.append(outputs.write_preview(args.output, preview))
            seconds["write"] += time.monotonic() - t
            summary.update({"centre": round(centre, 3), "centre_method": method, "preview": "preview.png",
                            "volume": writer.volume, "memory_mib": limit, "rows_per_block": block,
                            "workers": nworkers})
            log(f"wrote {total} slices to {os.path.join(args.output, writer.volume)}")

    seconds["total"] = time.monotonic() - started
    summary["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    summary["peak_rss_mib"] = round(memory.peak_rss_mib(), 1)
    if summary.get("workers"):
        # The largest worker's peak (each worker is one of these).
        summary["worker_peak_rss_mib"] = round(memory.children_peak_rss_mib(), 1)
    summary["versions"] = versions()
    summary["outputs"] = written + ["summary.json"]
    outputs.write_summary(args.output, summary)
    log(f"done in {seconds['total']:.1f} s (peak memory {summary['peak_rss_mib']:.0f} MiB)")
    return 0


def parser():
    p = argparse.ArgumentParser(prog="python -m daas_recon", description=__doc__.split("\n\n")[0])
    p.add_argument("--parameters", default=None,
                   help="JSON parameters file, valid against tools/recon/schema.json; default: the JSON in $DAAS_PARAMETERS")
    p.add_argument("--data", default="/data", help="folder holding one folder per dataset (read-only); default /data")
    p.add_argument("--output", default=None,
                   help="folder for the volume, previews and summary.json; default $HOME/jobs/$DAAS_SESSION_ID")
    p.add_argument("--memory-mib", type=int, default=None,
                   help="bound on the process's memory; default half the available memory ($DAAS_MEMORY_MIB, cgroup, free)")
    p.add_argument("--workers", type=int, default=None,
                   help="at most this many worker processes on the CPU (default: one per core, as memory allows; 0: none)")
    p.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                   help="auto: the GPU when ASTRA finds one, else the CPU (the default); gpu: fail without one")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    warnings.showwarning = _warning_to_log
    if args.output is None:
        if not os.environ.get("DAAS_SESSION_ID"):
            log("error: no output folder: give --output or set DAAS_SESSION_ID (and HOME)")
            return 2
        args.output = os.path.join(os.path.expanduser("~"), "jobs", os.environ["DAAS_SESSION_ID"])
    try:
        return run(args)
    except (dx.InputError, ParameterError) as e:
        log(f"error: {e}")
        return 2
    except Exception as e:  # the last line is the reason the portal shows
        traceback.print_exc(file=sys.stdout)
        log(f"error: {type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
