"""Slices reconstructed in worker processes, one CPU core each, results in order.

algotom's CPU back-projector must run on one thread (see `pipeline.reconstruct`) and holds
the GIL, so the cores are used by processes: each worker corrects and reconstructs whole
slices. `Pool.map_ordered` keeps at most two tasks per worker in flight, so memory stays
bounded: the caller sizes the pool with `plan` (a worker holds the libraries, about
`WORKER_MIB`, plus one slice's working arrays).
"""

import collections
import concurrent.futures as cf
import multiprocessing as mp
import time

#: Resident memory of a worker once numpy, scipy, h5py, numba and algotom are imported
#: (measured: 190 to 260 MiB with algotom 1.7.0 on Python 3.11).
WORKER_MIB = 260
#: Fewer slices than this are reconstructed in the job's own process: starting a worker
#: (importing the libraries, ~2 s) costs more than it saves.
MIN_SLICES = 16


def _init():
    import numba

    numba.set_num_threads(1)


def _row(raw, flat, dark, ring, centre, theta_rad, algorithm, filt, iterations):
    """Correct and reconstruct one raw sinogram; returns (slice, correct s, reconstruct s)."""
    from . import pipeline

    t0 = time.monotonic()
    trans = pipeline.correct(raw, flat, dark, ring)
    t1 = time.monotonic()
    image = pipeline.reconstruct(trans, centre, theta_rad, algorithm, filt, iterations, False)
    return image, t1 - t0, time.monotonic() - t1


def _centre(trans, centre, theta_rad, algorithm, filt, iterations):
    """Reconstruct one corrected sinogram at one centre; returns (slice, 0, reconstruct s)."""
    from . import pipeline

    t1 = time.monotonic()
    image = pipeline.reconstruct(trans, centre, theta_rad, algorithm, filt, iterations, False)
    return image, 0.0, time.monotonic() - t1


row_task, centre_task = _row, _centre


class Pool:
    """`workers` processes (spawned: no fork of a process with threads and open HDF5 files)."""

    def __init__(self, workers):
        self.workers = workers
        self.executor = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init)

    def map_ordered(self, fn, tasks):
        """Yields fn(*task) for each task of the iterable, in order, two per worker in flight."""
        pending = collections.deque()
        for task in tasks:
            pending.append(self.executor.submit(fn, *task))
            if len(pending) >= 2 * self.workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self):
        self.executor.shutdown(wait=True, cancel_futures=True)


def in_process(fn, tasks):
    """The same as `Pool.map_ordered`, in this process."""
    for task in tasks:
        yield fn(*task)
