"""Loading a scan's rows into memory once, and whether they fit.

What is held: the flat/dark corrected `-log` projections as float32, one sinogram per
detector row, (rows, angles, columns), made with the batch job's own steps
(`pipeline.flat_dark`, `pipeline.minus_log`). The file is read in blocks of at most 64 MiB
along the axis its HDF5 chunks allow (blocks of projections, or of rows when each chunk holds
every angle of a row), so no chunk is read twice. Progress goes to stdout and, as one line
replaced atomically, to $DAAS_PROGRESS_FILE, at most once a second.
"""

import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from .. import memory, pipeline
from .slices import working_bytes

MIB = 1 << 20
GIB = 1 << 30
#: Bytes of float32 per block read, at most; a block's reading and correction hold about four
#: times that, so a block is also at most a fifth of the slices' working memory, which the
#: budget counts and which is not in use while loading.
BLOCK_BYTES = 64 * MIB
#: The share of the session's memory (and of the machine's free memory) the studio plans to
#: use; the rest is slack for what the estimate misses (the allocator, the libraries).
SHARE = 0.75


class Stopped(Exception):
    """The load was stopped (the studio is shutting down)."""


@dataclass
class Budget:
    """Whether rows of a scan fit in memory. Bytes throughout; None where nothing is known.

    session: the session's memory ($DAAS_MEMORY_MIB, the cgroup); free: the machine's free
    memory; held: what this process held when the budget was taken; budget: what the
    sinograms and the slices may use, min(SHARE * session - held, SHARE * free);
    per_row: one row's sinogram; working: the slices' working memory (`working_bytes`).
    """

    session: int | None
    free: int | None
    held: int
    budget: int | None
    per_row: int
    working: int

    def needed(self, rows):
        """Bytes `rows` rows need in memory, with the working memory."""
        return rows * self.per_row + self.working

    def rows_fit(self, total_rows, replaced=0):
        """How many rows fit (0 to total_rows), when `replaced` bytes now held (rows loaded
        before, which a new load drops first) are given back."""
        if self.budget is None:
            return total_rows
        return int(max(0, min(total_rows, (self.budget + replaced - self.working) // self.per_row)))

    def to_json(self):
        return {"session_bytes": self.session, "free_bytes": self.free, "held_bytes": self.held,
                "budget_bytes": self.budget, "per_row_bytes": self.per_row, "working_bytes": self.working}


def budget(angles, columns):
    """The Budget of a scan of `angles` x `columns` for this process now."""
    session, free = memory.session_mib(), memory.free_mib()
    held = int(memory.rss_mib() * MIB)
    limits = []
    if session is not None:
        limits.append(int(SHARE * session * MIB) - held)
    if free is not None:
        limits.append(int(SHARE * free * MIB))
    return Budget(session=session * MIB if session is not None else None, free=free * MIB if free is not None else None,
                  held=held, budget=min(limits) if limits else None, per_row=angles * columns * 4,
                  working=working_bytes(angles, columns))


def size_text(count):
    """Bytes as people read them, in decimal units: '340 kB', '12.3 MB', '1.2 GB'."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


def gib_text(count):
    """Bytes in GiB with one decimal (two below 1 GiB): '3.4 GiB', '0.25 GiB'."""
    gib = count / GIB
    return f"{gib:.1f} GiB" if gib >= 1 else f"{gib:.2f} GiB"


class Progress:
    """Progress lines: printed, and written to `path` (if any) by replacing it atomically.

    `__call__(line, force)` shows a line at most once a second unless forced; `line` is the
    last one shown (the state's progress), `fraction` the part of the load done (0 to 1).
    """

    def __init__(self, path):
        self.path = path or None
        self.line, self.fraction, self._last = "", 0.0, -1e9

    @contextlib.contextmanager
    def ongoing(self, line, every=5.0):
        """Shows `line` now and, until the block ends, again every `every` seconds with the
        time so far (`<line> (12 s)`): daas takes a start whose progress file has not
        changed for 30 s as stuck, and a step such as Vo's centre can take longer."""
        self(line, force=True)
        done = threading.Event()
        started = time.monotonic()

        def beat():
            while not done.wait(every):
                self(f"{line} ({time.monotonic() - started:.0f} s)", force=True)

        thread = threading.Thread(target=beat, name="progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def __call__(self, line, force=False, fraction=None):
        if fraction is not None:
            self.fraction = fraction
        now = time.monotonic()
        if not force and now - self._last < 1.0:
            return
        self._last = now
        self.line = line
        print(line, flush=True)
        if self.path:
            # A temporary file in the same folder, renamed over the old one: a reader sees
            # the old line or the new one, never half a line.
            folder = os.path.dirname(os.path.abspath(self.path))
            tmp = os.path.join(folder, f".{os.path.basename(self.path)}.{os.getpid()}.tmp")
            try:
                with open(tmp, "w") as f:
                    f.write(line + "\n")
                os.replace(tmp, self.path)
            except OSError as e:  # progress is a courtesy: never fail the load for it
                print(f"warning: cannot write the progress file {self.path}: {e}", file=sys.stderr, flush=True)


def load(scan, first, last, progress, name=None, stopping=None):
    """Rows first..last (inclusive) of an open `dataexchange.Scan`, as sinograms.

    Returns (rows, angles, columns) float32 `-log` of the flat/dark corrected projections,
    each row as `pipeline.flat_dark` and `pipeline.minus_log` make it in the batch job.
    progress: a `Progress`, told `loading <name>: 1.2 of 3.4 GB read, about 12 s left`.
    stopping: a `threading.Event`; once set, the load ends between two blocks with `Stopped`.
    Raises OSError (h5py) when the file cannot be read.
    """
    angles, _, columns = scan.shape
    rows = last - first + 1
    name = name or os.path.basename(scan.path)
    out = np.empty((rows, angles, columns), dtype=np.float32)
    flat, dark = scan.read_flat_dark(first, last + 1)
    # algotom replaces zeros of flat - dark by the mean of what it is given: per row in the
    # batch job. Blocks of several rows would take the mean over the block, so a scan with
    # such pixels is corrected row by row.
    row_by_row = bool(np.any(flat - dark == 0))
    total = angles * rows * columns * scan.itemsize
    done, started = 0, time.monotonic()

    def tell(force=False):
        elapsed = time.monotonic() - started
        left = elapsed / done * (total - done) if done else None
        tail = f", about {left:.0f} s left" if left is not None and done < total else ""
        progress(f"loading {name}: {size_text(done)} of {size_text(total)} read{tail}", force=force,
                 fraction=done / total if total else 1.0)

    def correct(raw, row_start, row_stop):
        if not row_by_row:
            return pipeline.minus_log(pipeline.flat_dark(raw, flat[row_start:row_stop], dark[row_start:row_stop]))
        return np.stack([pipeline.minus_log(pipeline.flat_dark(raw[:, i], flat[row_start + i], dark[row_start + i]))
                         for i in range(row_stop - row_start)], axis=1)

    tell(force=True)
    block_bytes = max(4 * MIB, min(BLOCK_BYTES, working_bytes(angles, columns) // 5))
    chunks = scan.chunks
    if chunks is not None and chunks[0] >= angles:
        # Each chunk holds every angle of a few rows: read whole rows.
        step = _multiple(max(1, block_bytes // (angles * columns * 4)), chunks[1])
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            raw = scan.read_projections(0, angles, first + start, first + stop)
            out[start:stop] = correct(raw, start, stop).transpose(1, 0, 2)
            done += raw.nbytes
            del raw
            tell()
            if stopping is not None and stopping.is_set():
                raise Stopped("the studio is stopping")
    else:
        step = max(1, block_bytes // (rows * columns * 4))
        if chunks is not None:
            step = _multiple(step, chunks[0])
        for start in range(0, angles, step):
            stop = min(angles, start + step)
            raw = scan.read_projections(start, stop, first, last + 1)
            out[:, start:stop] = correct(raw, 0, rows).transpose(1, 0, 2)
            done += raw.nbytes
            del raw
            tell()
            if stopping is not None and stopping.is_set():
                raise Stopped("the studio is stopping")
    tell(force=True)
    return out


def _multiple(count, unit):
    """count rounded up to a multiple of unit (a chunk's extent)."""
    return -(-count // unit) * unit
