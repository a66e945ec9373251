"""The reconstruction job as the local runtime runs it: `python tools/recon/recon.py ...`.

Each check holds the program against something computed here independently: the tooth's
centre against phase correlation of opposite projections, its slice against
scikit-image's `iradon` on the same corrected sinogram, a simulated scan's centre against
the centre it was simulated with.
"""

import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tifffile

HERE = os.path.dirname(os.path.abspath(__file__))
RECON = os.path.join(os.path.dirname(HERE), "recon.py")
TOOTH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(HERE))), "demo", "tomography", "tooth.h5")
sys.path.insert(0, os.path.dirname(HERE))

sys.path.insert(0, HERE)

import reference as ref  # noqa: E402
from daas_recon import simulate  # noqa: E402
from daas_recon.__main__ import candidates, plan  # noqa: E402
from daas_recon.pipeline import cores  # noqa: E402


def run(tmp, params, data, *extra):
    """Runs the job; returns (exit code, stdout lines, output folder)."""
    out = tmp / f"out-{len(list(tmp.iterdir()))}"
    pfile = tmp / f"params-{len(list(tmp.iterdir()))}.json"
    pfile.write_text(json.dumps(params))
    proc = subprocess.run([sys.executable, RECON, "--parameters", str(pfile), "--data", str(data),
                           "--output", str(out), *extra],
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout.splitlines(), out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A --data folder: the tooth, a simulated scan, and two broken files."""
    root = tmp_path_factory.mktemp("data")
    (root / "tooth").mkdir()
    shutil.copy(TOOTH, root / "tooth" / "tooth.h5")
    (root / "sim").mkdir()
    simulate.simulate(str(root / "sim" / "scan.h5"), size=192, angles=180, rows=16, centre=99.5, noise=0.01, stripes=2)
    (root / "truncated").mkdir()
    blob = open(TOOTH, "rb").read()
    (root / "truncated" / "scan.h5").write_bytes(blob[: len(blob) // 2])
    (root / "notheta").mkdir()
    with h5py.File(TOOTH) as src, h5py.File(root / "notheta" / "scan.h5", "w") as dst:
        for name in ("data", "data_white", "data_dark"):
            dst[f"/exchange/{name}"] = src[f"/exchange/{name}"][()]
    (root / "two").mkdir()
    shutil.copy(TOOTH, root / "two" / "a.h5")
    shutil.copy(TOOTH, root / "two" / "b.h5")
    return root


@pytest.fixture(scope="module")
def tooth_corrected():
    """-log of the flat/dark-corrected tooth projections (angles, rows, columns), and theta (deg)."""
    return ref.corrected(TOOTH)


@pytest.fixture(scope="module")
def tooth_auto(data, tmp_path_factory):
    return run(tmp_path_factory.mktemp("auto"), {"dataset": "tooth"}, data)


def test_automatic_centre_agrees_with_phase_correlation(tooth_auto, tooth_corrected):
    code, lines, out = tooth_auto
    assert code == 0, lines
    summary = json.loads((out / "summary.json").read_text())
    assert summary["centre_method"] == "vo" and summary["device"] == "cpu"
    reference = ref.centre_by_phase_correlation(*tooth_corrected)
    assert abs(summary["centre"] - reference) < 2, (summary["centre"], reference)
    assert 286 < summary["centre"] < 306  # TomoPy's documentation: near 296


def test_log_progress_and_outputs(tooth_auto):
    code, lines, out = tooth_auto
    progress = [line for line in lines if line.startswith("progress ")]
    assert progress[0] == "progress 0/2 rows" and progress[-1] == "progress 2/2 rows", lines
    assert any("no GPU found" in line for line in lines)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outputs"] == ["volume/slice_00000.tif", "volume/slice_00001.tif", "preview.png", "summary.json"]
    for name in summary["outputs"]:
        assert (out / name).is_file(), name
    assert set(summary["seconds"]) >= {"read", "centre", "reconstruct", "write", "total"}
    assert summary["versions"]["algotom"] and summary["versions"]["h5py"]


def test_slice_matches_iradon(tooth_auto, tooth_corrected):
    code, lines, out = tooth_auto
    summary = json.loads((out / "summary.json").read_text())
    proj, theta = tooth_corrected
    ncol = proj.shape[2]
    reference = ref.iradon_slice(proj, theta, summary["centre"])
    ours = tifffile.imread(out / "volume" / "slice_00000.tif")
    assert ours.shape == reference.shape == (ncol, ncol)
    assert ref.correlation(ours, reference) > 0.9


def test_sweep_gives_one_labelled_preview_per_centre(data, tmp_path):
    code, lines, out = run(tmp_path, {"dataset": "tooth", "centre": "sweep", "sweep_from": 286, "sweep_to": 306,
                                      "sweep_step": 2}, data)
    assert code == 0, lines
    summary = json.loads((out / "summary.json").read_text())
    assert summary["centre_method"] == "sweep"
    assert [s["centre"] for s in summary["sweep"]] == list(range(286, 307, 2))
    names = sorted(os.listdir(out / "sweep"))
    assert names == sorted(f"centre_{c}.0.png" for c in range(286, 307, 2))
    assert [s["preview"] for s in summary["sweep"]] == [f"sweep/centre_{c}.0.png" for c in range(286, 307, 2)]
    assert [line for line in lines if line.startswith("progress")][-1] == "progress 11/11 centres"
    assert not (out / "volume").exists()


@pytest.mark.parametrize("dataset, reason", [
    ("truncated", "truncated or damaged"),
    ("notheta", "missing /exchange/theta"),
])
def test_broken_file_fails_at_once_with_the_reason(data, tmp_path, dataset, reason):
    code, lines, out = run(tmp_path, {"dataset": dataset}, data)
    assert code == 2
    path = str(data / dataset / "scan.h5")
    assert lines[-1].startswith(f"error: {path}: ") and reason in lines[-1], lines
    assert not [line for line in lines if line.startswith("progress")]
    assert not (out / "summary.json").exists()


def test_not_hdf5_and_bad_parameters_fail_with_exit_2(data, tmp_path):
    code, lines, _ = run(tmp_path, {"dataset": "two"}, data)
    assert code == 2 and "several HDF5 files (a.h5, b.h5)" in lines[-1]
    code, lines, _ = run(tmp_path, {"dataset": "two", "file": "b.h5", "rows": "range", "first_row": 1,
                                    "last_row": 5}, data)
    assert code == 2 and "rows 1 to 5 are not inside the scan's rows 0 to 1" in lines[-1], lines
    code, lines, _ = run(tmp_path, {"dataset": "tooth", "algorithm": "art"}, data)
    assert code == 2 and lines[-1].startswith("error: ") and "algorithm" in lines[-1], lines
    text_file = data / "text"
    text_file.mkdir(exist_ok=True)
    (text_file / "scan.h5").write_text("not HDF5\n")
    code, lines, _ = run(tmp_path, {"dataset": "text"}, data)
    assert code == 2 and "not an HDF5 file" in lines[-1], lines


def test_blockwise_volume_equals_one_block(data, tmp_path):
    with h5py.File(data / "sim" / "scan.h5") as f:
        known = f["/process/simulation"].attrs["centre"]
    one_code, one_lines, one = run(tmp_path, {"dataset": "sim"}, data, "--memory-mib", "100000")
    assert one_code == 0, one_lines
    # 1 MiB is below what the interpreter alone holds: one row per block.
    code, lines, blocks = run(tmp_path, {"dataset": "sim", "output_format": "hdf5"}, data, "--memory-mib", "1")
    assert code == 0, lines
    a, b = (json.loads((o / "summary.json").read_text()) for o in (one, blocks))
    assert (a["rows_per_block"], b["rows_per_block"]) == (16, 1)
    # With room, the rows go to worker processes (one per core); at 1 MiB, none.
    assert (a["workers"], b["workers"]) == ((cores() if cores() > 1 else 0), 0)
    assert abs(a["centre"] - known) <= 0.5 and a["centre"] == b["centre"]
    with h5py.File(blocks / "volume.h5") as f:
        volume = f["/exchange/data"][()]
    stack = np.stack([tifffile.imread(one / "volume" / f"slice_{r:05d}.tif") for r in range(16)])
    assert volume.shape == stack.shape == (16, 192, 192)
    np.testing.assert_array_equal(volume, stack)


def test_plan_follows_the_limit():
    # 1000 angles x 2048 columns of uint16: 3.9 MiB per row.
    w_small, small = plan(1024, 1000, 2048, 2, 2048, 1)
    w_large, large = plan(4096, 1000, 2048, 2, 2048, 1)
    assert (w_small, w_large) == (0, 0) and 1 <= small < large
    assert large - small == pytest.approx(3072 / 3.9, rel=0.05)
    # Workers when there is room for them, and only for enough slices.
    assert plan(8192, 1000, 2048, 2, 2048, 4)[0] == 4
    assert plan(8192, 1000, 2048, 2, 8, 4)[0] == 0
    assert plan(8192, 1000, 2048, 2, 2048, 4, gpu=True)[0] == 0
    assert plan(8192, 1000, 2048, 2, 2048, 4, max_workers=0)[0] == 0
    assert plan(8192, 1000, 2048, 2, 2048, 4, max_workers=3)[0] == 3
    assert candidates({"sweep_from": 286, "sweep_to": 306, "sweep_step": 2}) == list(range(286, 307, 2))
    assert candidates({"sweep_from": 1, "sweep_to": 2, "sweep_step": 0.25}) == [1, 1.25, 1.5, 1.75, 2]
