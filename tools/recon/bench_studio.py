#!/usr/bin/env python3
"""`make bench-studio`: the reconstruction studio's speed in a real browser, and its memory.

1. Speed: the studio (`studio.py --port`) on (a) the tooth (demo/tomography/tooth.h5: 181
   projections x 640 px) and (b) a simulated scan (daas_recon.simulate: 1500 projections x
   2048 px, 4 rows; --angles, --size to change). Debian's chromium, headless, driven by
   playwright-core (tests/e2e/node_modules; `bench_studio.mjs`), steps the centre slider
   --steps times (default 40) with the keyboard, waiting for each slice to be drawn. The
   table gives p50 and p95 of the page's own measure (slider change to slice drawn:
   window.studioTimings) and of the studio's X-Seconds (request to answer ready), with the
   machine's load average before and after.
2. Memory (--memory): the slices' working memory against the estimate the studio budgets
   with (`slices.working_bytes`): every ring removal, filter, algorithm and a second angle
   range made once at 2048 px x 1500 angles, in a fresh process; peak resident memory over
   what the process held with the rows loaded.

Scratch files go to --workdir (default a fresh folder in $TMPDIR), removed at the end unless
--keep. On the 2-core development machine the run takes about three minutes.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOOTH = os.path.join(ROOT, "demo", "tomography", "tooth.h5")
sys.path.insert(0, HERE)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, p):
    """The p-th percentile (0 to 100), nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))] if ordered else float("nan")


def studio_run(data, dataset, steps, screenshot):
    """Starts the studio on `dataset`, runs the browser; returns (result dict, start seconds)."""
    port = free_port()
    params = os.path.join(data, f"{dataset}.json")
    with open(params, "w") as f:
        json.dump({"dataset": dataset}, f)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "studio.py"), "--port", str(port),
                             "--base-url", "/sessions/bench/", "--parameters", params, "--data", data],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("listening on"):
                break
        else:
            sys.exit(f"the studio did not start ({proc.wait()}):\n" + "\n".join(lines))
        start_s = time.monotonic() - started
        node = subprocess.run(["node", os.path.join(HERE, "bench_studio.mjs"), f"http://127.0.0.1:{port}/sessions/bench/",
                               str(steps)] + (["--screenshot", screenshot] if screenshot else []),
                              capture_output=True, text=True, timeout=1800)
        if node.returncode != 0 or not node.stdout.strip():
            sys.exit(f"the browser run failed ({node.returncode}):\n{node.stdout[-3000:]}{node.stderr[-3000:]}")
        result = json.loads(node.stdout.splitlines()[-1])
        if result["errors"]:
            sys.exit("the page reported errors:\n" + "\n".join(result["errors"]))
        return result, start_s
    finally:
        proc.terminate()
        proc.wait(timeout=60)


MEMORY_PROBE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from daas_recon import dataexchange as dx
from daas_recon import memory
from daas_recon.studio import load as loading, regrid
from daas_recon.studio.app import png
from daas_recon.studio.slices import Slices, working_bytes
import numpy as np

before = memory.rss_mib()
with dx.open_scan(sys.argv[2]) as scan:
    angles, rows, columns = scan.shape
    sinograms = loading.load(scan, 0, rows - 1, loading.Progress(None))
    slices = Slices(sinograms, 0, scan.theta_deg)
regrid.prepare(columns)


def hwm_mib():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM:"))


# The peak from here on: reset the high-water mark (Linux >= 4.0), so loading does not count.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
held = memory.rss_mib()
base = slices.default_view(columns / 2)
steps = []
for ring in ("none", "sorting", "filtering", "all"):
    for row in range(min(rows, 2)):
        steps.append({"row": row, "ring_removal": ring})
for f in ("hamming", "none", "parzen"):
    steps.append({"filter": f})
steps += [{"angle_to": base.angle_to / 2}, {"angle_from": base.angle_to / 4}, {"algorithm": "fbp_algotom"},
          {"algorithm": "dfi"}]
for values in steps:
    image = slices.make(slices.check(values, base)).image
    body = png(image)
    raw = np.ascontiguousarray(image, dtype="<f4").tobytes()
    del image, body, raw
peak = hwm_mib()
print(json.dumps({"angles": angles, "columns": columns, "rows": rows, "before_mib": before, "held_mib": held,
                  "peak_mib": peak, "sinograms_mib": sinograms.nbytes / 2**20,
                  "working_estimate_mib": working_bytes(angles, columns) / 2**20}))
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40, help="centre steps per scan (default 40)")
    p.add_argument("--size", type=int, default=2048, help="columns of the simulated scan (default 2048)")
    p.add_argument("--angles", type=int, default=1500, help="projections of the simulated scan (default 1500)")
    p.add_argument("--rows", type=int, default=4, help="rows of the simulated scan (default 4)")
    p.add_argument("--memory", action="store_true", help="also measure the slices' working memory")
    p.add_argument("--only", choices=["tooth", "simulated"], help="one scan only")
    p.add_argument("--screenshots", default=None, help="a folder for a screenshot of each page")
    p.add_argument("--workdir", default=None)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    if not shutil.which("node") or not os.path.isdir(os.path.join(ROOT, "tests", "e2e", "node_modules", "playwright-core")):
        sys.exit("needs node and tests/e2e/node_modules (make deps)")

    from daas_recon import simulate

    work = args.workdir or tempfile.mkdtemp(prefix="daas-bench-studio-")
    data = os.path.join(work, "data")
    rows = []
    try:
        if args.screenshots:
            os.makedirs(args.screenshots, exist_ok=True)
        scans = []
        if args.only in (None, "tooth"):
            os.makedirs(os.path.join(data, "tooth"), exist_ok=True)
            shutil.copy(TOOTH, os.path.join(data, "tooth", "tooth.h5"))
            scans.append(("tooth", "tooth (real, APS 2-BM)"))
        if args.only in (None, "simulated") or args.memory:
            os.makedirs(os.path.join(data, "simulated"), exist_ok=True)
            scan = os.path.join(data, "simulated", "scan.h5")
            t = time.monotonic()
            centre = simulate.simulate(scan, size=args.size, angles=args.angles, rows=args.rows,
                                       centre=args.size / 2 + 6.5, noise=0.01)
            print(f"simulated {args.angles} projections x {args.rows} rows x {args.size} px, centre {centre:g} "
                  f"({time.monotonic() - t:.0f} s)", flush=True)
            if args.only in (None, "simulated"):
                scans.append(("simulated", "simulated"))
        for dataset, label in scans:
            load_before = os.getloadavg()[0]
            shot = os.path.join(args.screenshots, f"{dataset}.png") if args.screenshots else None
            result, start_s = studio_run(data, dataset, args.steps, shot)
            load_after = os.getloadavg()[0]
            browser, server = result["browser_ms"], [s * 1000 for s in result["server_s"]]
            width = {"tooth": 640}.get(dataset, args.size)
            angles = {"tooth": 181}.get(dataset, args.angles)
            rows.append((label, f"{width} x {angles}", len(browser), percentile(browser, 50), percentile(browser, 95),
                         percentile(server, 50), percentile(server, 95), start_s, load_before, load_after))
            print(f"{label}: done ({len(browser)} steps)", flush=True)

        print()
        print("| scan | slice px x angles | steps | browser p50 ms | browser p95 ms | server p50 ms | server p95 ms "
              "| start s | load avg before/after |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for label, shape, n, b50, b95, s50, s95, start_s, l0, l1 in rows:
            print(f"| {label} | {shape} | {n} | {b50:.0f} | {b95:.0f} | {s50:.0f} | {s95:.0f} | {start_s:.0f} "
                  f"| {l0:.2f} / {l1:.2f} |")
        print(f"\nbrowser: slider change to slice drawn (window.studioTimings); server: X-Seconds; "
              f"{os.cpu_count()} CPUs; start: studio launched to listening (load, Vo's centre, FFTW plan).")

        if args.memory:
            proc = subprocess.run([sys.executable, "-c", MEMORY_PROBE, HERE, os.path.join(data, "simulated", "scan.h5")],
                                  capture_output=True, text=True, timeout=3600)
            if proc.returncode != 0:
                sys.exit(f"the memory probe failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
            m = json.loads(proc.stdout.splitlines()[-1])
            used = m["peak_mib"] - m["held_mib"]
            print(f"\nmemory at {m['columns']} px x {m['angles']} angles: rows held {m['sinograms_mib']:.0f} MiB; "
                  f"working memory used {used:.0f} MiB (peak {m['peak_mib']:.0f} MiB over {m['held_mib']:.0f} MiB "
                  f"held), estimated {m['working_estimate_mib']:.0f} MiB "
                  f"({'within' if used <= m['working_estimate_mib'] else 'OVER'} the estimate)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    main()
