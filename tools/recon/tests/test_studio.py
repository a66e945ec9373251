"""The reconstruction studio: its numerics held against independent references, and its
server as daas runs it (a subprocess on a free port or a Unix socket).

- the Fourier regridding FBP against algotom's FBP on a simulated phantom (same slice within
  a small relative error, same scale and orientation), and the phantom at its known centre;
- the focus figure peaks at a simulated scan's centre, and on the tooth near Vo's centre;
- the loaded sinograms are the batch job's corrected `-log` rows;
- the routes: state, slices (f32, PNG) with their headers, 400s, the shared view, guests,
  the batch job's parameters, the memory refusal and `api/load`, the progress file, the
  socket's mode, exit codes;
- the page in Debian's chromium (tools/recon/bench_studio.mjs --check), where it is.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import h5py
import numpy as np
import pytest
import scipy.ndimage as ndi

HERE = os.path.dirname(os.path.abspath(__file__))
RECON_DIR = os.path.dirname(HERE)
STUDIO = os.path.join(RECON_DIR, "studio.py")
ROOT = os.path.dirname(os.path.dirname(RECON_DIR))
TOOTH = os.path.join(ROOT, "demo", "tomography", "tooth.h5")
sys.path.insert(0, RECON_DIR)

import algotom.rec.reconstruction as rec  # noqa: E402
import algotom.util.simulation as sim  # noqa: E402
import algotom.util.utility as util  # noqa: E402
import numba  # noqa: E402

from daas_recon import dataexchange as dx  # noqa: E402
from daas_recon import pipeline, simulate  # noqa: E402
from daas_recon.studio import load as loading  # noqa: E402
from daas_recon.studio import regrid  # noqa: E402
from daas_recon.studio.slices import Invalid, Slices, working_bytes  # noqa: E402


def relative_error(ours, reference, mask):
    return float(np.linalg.norm((ours - reference)[mask]) / np.linalg.norm(reference[mask]))


def loaded(path, first=None, last=None):
    """(Slices of rows first..last, scan shape) through the studio's own loader."""
    with dx.open_scan(path) as scan:
        first = 0 if first is None else first
        last = scan.shape[1] - 1 if last is None else last
        sinograms = loading.load(scan, first, last, loading.Progress(None))
        return Slices(sinograms, first, scan.theta_deg), scan.shape


# -- numerics --------------------------------------------------------------------------------

@pytest.mark.parametrize("size, centre", [(256, 128.0), (256, 131.5), (255, 124.25)])
def test_regridding_agrees_with_algotom_fbp(size, centre):
    angles = 360
    theta = np.deg2rad(np.linspace(0.0, 180.0, angles, endpoint=False))
    phantom = sim.make_face_phantom(size)
    phantom[size // 5:size // 4, size * 2 // 3:size * 3 // 4] += 0.5  # the face is symmetric; this is not
    sino = sim.make_sinogram(phantom, theta)
    sino = ndi.shift(sino, (0, centre - size // 2), order=3, mode="nearest").astype(np.float32)
    ours = regrid.reconstruct(sino, centre, theta, "hann")
    numba.set_num_threads(1)  # as pipeline.reconstruct runs it (exact on one thread)
    # algotom weighs each projection pi / (angles - 1); the studio pi / angles (module doc).
    theirs = rec.fbp_reconstruction(sino.copy(), centre, angles=theta, filter_name="hann", apply_log=False,
                                    gpu=False) * (angles - 1) / angles
    assert ours.shape == theirs.shape == (size, size) and ours.dtype == np.float32
    # Inside the circle both measured (beyond it algotom adds nothing, the studio the
    # edge-padded projections).
    inside = util.make_circle_mask(size, min(centre, size - centre) / (0.5 * size) - 0.02) > 0
    error = relative_error(ours, theirs, inside)
    assert error < 0.03
    scale = float(np.sum(ours[inside] * theirs[inside]) / np.sum(theirs[inside] ** 2))
    assert abs(scale - 1) < 0.01
    # Orientation: a flipped or transposed slice would be far off.
    for wrong in (ours[::-1], ours[:, ::-1], ours.T):
        assert relative_error(wrong, theirs, inside) > 3 * error
    # Outside algotom's reconstruction circle: 0, as algotom masks it.
    assert not np.any(ours[~regrid.circle(size)])


def test_regridding_finds_the_phantom_at_its_known_centre(tmp_path):
    size, centre = 256, 131.5
    simulate.simulate(str(tmp_path / "scan.h5"), size=size, angles=360, rows=1, centre=centre)
    slices, _ = loaded(str(tmp_path / "scan.h5"))
    phantom = sim.make_face_phantom(size)
    inside = regrid.circle(size)

    def correlation(c):
        view = slices.default_view(c)
        image = slices.make(view.__class__(**{**view.to_json(), "ring_removal": "none"})).image
        return float(np.corrcoef(image[inside], phantom[inside])[0, 1])

    at_centre = correlation(centre)
    assert at_centre > 0.95
    assert correlation(centre - 3) < at_centre - 0.05 and correlation(centre + 3) < at_centre - 0.05


@pytest.mark.parametrize("size, angles, centre, noise", [(384, 360, 180.25, 0.02), (512, 360, 200.0, 0.02)])
def test_sharpness_peaks_at_the_simulated_centre(tmp_path, size, angles, centre, noise):
    simulate.simulate(str(tmp_path / "scan.h5"), size=size, angles=angles, rows=1, centre=centre, noise=noise)
    slices, _ = loaded(str(tmp_path / "scan.h5"))
    base = slices.default_view(centre)
    candidates = np.arange(centre - 6, centre + 6.01, 0.25)
    figures = [slices.make(slices.check({"centre": c, "ring_removal": "none"}, base)).sharpness for c in candidates]
    best = float(candidates[int(np.argmax(figures))])
    assert abs(best - centre) <= 1.0, (best, centre)


@pytest.fixture(scope="module")
def tooth():
    return loaded(TOOTH)


def test_tooth_sharpness_peaks_near_vo_and_the_automatic_centre_is_the_jobs(tooth):
    slices, _ = tooth
    with h5py.File(TOOTH) as f:
        raw = f["/exchange/data"][:, 0, :]
        flat = f["/exchange/data_white"][:, 0, :].mean(axis=0, dtype=np.float32)
        dark = f["/exchange/data_dark"][:, 0, :].mean(axis=0, dtype=np.float32)
        theta = f["/exchange/theta"][()]
    # The batch job's "centre auto" on row 0 (its ring removal default, sorting).
    vo = pipeline.find_centre(pipeline.correct(raw, flat, dark, "sorting"), theta)
    assert abs(slices.auto_centre(0) - vo) <= 0.25
    base = slices.default_view(vo)
    candidates = np.arange(280.0, 310.01, 0.5)
    figures = [slices.make(slices.check({"centre": c}, base)).sharpness for c in candidates]
    best = float(candidates[int(np.argmax(figures))])
    assert abs(best - vo) <= 2.0, (best, vo)


def test_loaded_rows_are_the_jobs_corrected_sinograms(tooth, tmp_path):
    slices, shape = tooth
    assert slices.sinograms.shape == (shape[1], shape[0], shape[2]) and slices.sinograms.dtype == np.float32
    with h5py.File(TOOTH) as f:
        for row in range(shape[1]):
            raw = f["/exchange/data"][:, row, :]
            flat = f["/exchange/data_white"][:, row, :].mean(axis=0, dtype=np.float32)
            dark = f["/exchange/data_dark"][:, row, :].mean(axis=0, dtype=np.float32)
            expected = pipeline.minus_log(pipeline.correct(raw, flat, dark, "none"))
            np.testing.assert_array_equal(slices.sinograms[row], expected)
    # A file chunked by rows (each chunk every angle of one row) is read by rows: the same.
    simulate.simulate(str(tmp_path / "rows.h5"), size=64, angles=90, rows=6, noise=0.01)
    with dx.open_scan(str(tmp_path / "rows.h5")) as scan:
        assert scan.chunks[0] == 90
        part = loading.load(scan, 2, 4, loading.Progress(None))
        raw, flat, dark = scan.read_rows(2, 5)
    for i in range(3):
        np.testing.assert_array_equal(part[i], pipeline.minus_log(pipeline.correct(raw[:, i], flat[i], dark[i], "none")))


def test_views_are_checked(tooth):
    slices, _ = tooth
    base = slices.default_view(295.0)
    assert (base.row, base.filter, base.ring_removal, base.algorithm) == (0, "hann", "sorting", "fbp")
    view = slices.check({"centre": "296.25", "row": "1", "angle_to": "90"}, base)
    assert (view.centre, view.row, view.angle_to, view.filter) == (296.25, 1, 90.0, "hann")
    for values, field in [({"centre": "640"}, "centre"), ({"centre": "-1"}, "centre"), ({"centre": "x"}, "centre"),
                          ({"row": "2"}, "row"), ({"row": "0.5"}, "row"), ({"filter": "shepp"}, "filter"),
                          ({"ring_removal": "wavelet"}, "ring_removal"), ({"algorithm": "sirt"}, "algorithm"),
                          ({"angle_from": "10", "angle_to": "10.5"}, "angle_to"), ({"angle_to": "nan"}, "angle_to")]:
        with pytest.raises(Invalid) as raised:
            slices.check(values, base)
        assert raised.value.field == field, values


def test_slow_algorithms_and_a_partial_angle_range(tooth):
    slices, _ = tooth
    base = slices.default_view(295.0)
    fast = slices.make(slices.check({"ring_removal": "none"}, base)).image
    inside = regrid.circle(fast.shape[0])
    for algorithm in ("fbp_algotom", "dfi"):
        other = slices.make(slices.check({"ring_removal": "none", "algorithm": algorithm}, base)).image
        assert np.corrcoef(fast[inside], other[inside])[0, 1] > 0.9, algorithm
    half = slices.make(slices.check({"ring_removal": "none", "angle_to": "90"}, base))
    assert half.image.shape == fast.shape and np.isfinite(half.image).all()


def test_working_memory_is_counted():
    # The caches alone, at 2048 px x 1500 angles: sinograms, spectra, two NUFFT plans.
    assert working_bytes(1500, 2048) > 4 * 1500 * 2048 * 4 + 4 * 1500 * 2049 * 8 + 2 * 16 * 2560**2
    assert working_bytes(181, 640) < 200 * 2**20


def test_progress_replaces_its_file_atomically(tmp_path, capsys):
    path = tmp_path / "progress"
    progress = loading.Progress(str(path))
    progress("loading a.h5: 1.0 of 3.0 GB read, about 2 s left")
    progress("loading a.h5: 1.5 of 3.0 GB read, about 1 s left")  # within the second: not shown
    assert path.read_text() == "loading a.h5: 1.0 of 3.0 GB read, about 2 s left\n"
    progress("ready", force=True)
    assert path.read_text() == "ready\n"
    assert os.listdir(tmp_path) == ["progress"]
    assert capsys.readouterr().out.splitlines() == ["loading a.h5: 1.0 of 3.0 GB read, about 2 s left", "ready"]
    assert loading.size_text(1_234_000_000) == "1.2 GB" and loading.size_text(926_720) == "926.7 kB"
    # A long step keeps the file fresh (daas takes a line older than 30 s as a stuck start).
    with progress.ongoing("finding the centre", every=0.05):
        time.sleep(0.3)
    assert path.read_text().startswith("finding the centre (0 s)")


def test_where_to_listen(monkeypatch):
    from daas_recon.studio import server

    monkeypatch.delenv("DAAS_PORT", raising=False)
    args = server.parser().parse_args(["--port", "8000"])
    server.where_to_listen(args)
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    with pytest.raises(server.ParameterError):
        server.where_to_listen(server.parser().parse_args([]))
    # Kubernetes: $DAAS_PORT on every interface, under $DAAS_BASE_URL.
    monkeypatch.setenv("DAAS_PORT", "8080")
    monkeypatch.setenv("DAAS_BASE_URL", "/sessions/x")
    args = server.parser().parse_args([])
    server.where_to_listen(args)
    assert (args.host, args.port, server.normalise_base(args.base_url)) == ("0.0.0.0", 8080, "/sessions/x/")


# -- the server --------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The studio as daas starts it, on a free port; `lines` is its stdout so far."""

    def __init__(self, data, params, tmp, env=None, base="/sessions/abc/", socket_path=None):
        (tmp / "parameters.json").write_text(json.dumps(params))
        self.port = None if socket_path else free_port()
        self.base, self.socket_path = base, socket_path
        self.progress = tmp / "progress"
        where = ["--socket", str(socket_path)] if socket_path else ["--port", str(self.port)]
        self.proc = subprocess.Popen(
            [sys.executable, STUDIO, *where, "--base-url", base, "--parameters", str(tmp / "parameters.json"),
             "--data", str(data)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "DAAS_SESSION_ID": "abc", "DAAS_PROGRESS_FILE": str(self.progress), **(env or {})})
        self.lines = []
        self.listening = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("listening on"):
                self.listening.set()

    def wait(self, timeout=120):
        deadline = time.monotonic() + timeout
        while not self.listening.is_set():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the studio did not start ({self.proc.poll()}):\n" + "\n".join(self.lines))
            time.sleep(0.05)
        return self

    def request(self, method, path, body=None, headers=None):
        """(status, headers, body bytes)."""
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json"} if data else {}
        hdrs.update(headers or {})
        if self.socket_path:
            conn = UnixConnection(str(self.socket_path))
            conn.request(method, self.base + path, body=data, headers=hdrs)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{self.base}{path}", data=data, method=method,
                                     headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def json(self, method, path, body=None, headers=None):
        status, _, data = self.request(method, path, body, headers)
        return status, json.loads(data)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "tooth").mkdir()
    shutil.copy(TOOTH, root / "tooth" / "tooth.h5")
    (root / "rows").mkdir()
    simulate.simulate(str(root / "rows" / "scan.h5"), size=512, angles=360, rows=48, centre=260.0, noise=0.01)
    return root


@pytest.fixture(scope="module")
def studio(data, tmp_path_factory):
    """The studio on the tooth, on a Unix socket as daas runs it; stopped at the end: exit
    0 and the socket gone."""
    tmp = tmp_path_factory.mktemp("studio")
    server = Server(data, {"dataset": "tooth"}, tmp, socket_path=tmp / "server.sock").wait()
    yield server
    assert server.stop() == 0
    assert not (tmp / "server.sock").exists() and server.lines[-1] == "stopping (SIGTERM)"


OWNER = {"X-Daas-User": "alice", "X-Daas-Name": "Alice%20M%C3%BCller", "X-Daas-Role": "owner",
         "X-Daas-Portal": "http://localhost:8080"}
GUEST = {"X-Daas-User": "gus", "X-Daas-Name": "Gus", "X-Daas-Role": "guest"}


def test_state_says_what_is_loaded_and_who_asks(studio):
    status, state = studio.json("GET", "api/state", headers=OWNER)
    assert status == 200 and state["state"] == "ready"
    assert state["scan"]["file"] == "tooth.h5" and state["scan"]["rows_loaded"] == [0, 1]
    assert (state["scan"]["angles"], state["scan"]["rows"], state["scan"]["columns"]) == (181, 2, 640)
    assert state["scan"]["bytes_held"] == 181 * 2 * 640 * 4 and state["scan"]["device"].startswith("cpu")
    assert 286 < state["centre_auto"] < 306 and state["centre_auto_row"] == 0
    assert state["view"]["centre"] == state["centre_auto"] and state["view"]["algorithm"] == "fbp"
    assert state["user"] == {"user": "alice", "name": "Alice Müller", "role": "owner"}
    assert state["portal"] == "http://localhost:8080" and state["session"] == "abc"
    assert state["owner"] == {"user": "alice", "name": "Alice Müller"}
    assert {"fbp", "fbp_algotom", "dfi"} == {a["name"] for a in state["choices"]["algorithm"]}
    # The progress file: its last line, replaced atomically (no temporary file left).
    assert studio.progress.read_text().startswith("ready: rows 0 to 1 of tooth.h5")
    assert sorted(os.listdir(studio.progress.parent)) == ["parameters.json", "progress", "server.sock"]
    assert any(line.startswith("loading tooth.h5: ") and line.endswith(" read") for line in studio.lines)


def test_slice_as_float32_and_png(studio):
    status, headers, body = studio.request("GET", "api/slice?row=1&centre=296.25&filter=hamming&ring_removal=none")
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"
    assert (headers["X-Width"], headers["X-Height"]) == ("640", "640")
    image = np.frombuffer(body, dtype="<f4").reshape(640, 640)
    assert np.isfinite(image).all() and float(headers["X-Max"]) == pytest.approx(image.max())
    assert 0 < float(headers["X-Sharpness"]) < 1 and float(headers["X-Seconds"]) > 0
    # The same slice as made here from the same loaded rows.
    slices, _ = loaded(TOOTH)
    view = slices.check({"row": 1, "centre": 296.25, "filter": "hamming", "ring_removal": "none"},
                        slices.default_view(296.25))
    np.testing.assert_allclose(image, slices.make(view).image, atol=1e-6)
    status, headers, body = studio.request("GET", "api/slice?centre=296.25&format=png")
    assert status == 200 and headers["Content-Type"] == "image/png" and body[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image
    import io
    png = Image.open(io.BytesIO(body))
    assert png.size == (640, 640) and png.mode == "L" and "X-Sharpness" in headers


@pytest.mark.parametrize("query, field, words", [
    ("centre=640", "centre", "outside the detector (0 to 639)"),
    ("row=2", "row", "row 2 is not loaded (rows 0 to 1 are)"),
    ("filter=shepp", "filter", "unknown filter 'shepp'"),
    ("ring_removal=x", "ring_removal", "unknown ring removal"),
    ("algorithm=sirt", "algorithm", "unknown algorithm 'sirt'"),
    ("angle_from=5&angle_to=5.5", "angle_to", "at least 2 are needed"),
    ("format=jpeg", "format", "f32 or png"),
    ("centre=abc", "centre", "is not a number"),
])
def test_bad_values_are_400_with_a_message(studio, query, field, words):
    status, answer = studio.json("GET", f"api/slice?{query}")
    assert status == 400
    assert answer["error"]["code"] == "invalid" and answer["error"]["field"] == field
    assert words in answer["error"]["message"]


def test_shared_view_round_trip_and_guests(studio):
    status, answer = studio.json("POST", "api/view", {"row": 1, "centre": 297.5, "filter": "parzen",
                                                      "ring_removal": "filtering", "angle_from": 0, "angle_to": 179,
                                                      "algorithm": "fbp"}, headers=OWNER)
    assert status == 200 and answer["view"]["centre"] == 297.5 and answer["view_by"]["name"] == "Alice Müller"
    status, state = studio.json("GET", "api/state", headers=GUEST)
    assert state["view"] == answer["view"] and state["view_version"] == answer["view_version"]
    assert state["user"]["role"] == "guest"
    # A slice without values is the shared view's.
    _, h_shared, shared = studio.request("GET", "api/slice", headers=GUEST)
    _, _, explicit = studio.request("GET", "api/slice?row=1&centre=297.5&filter=parzen&ring_removal=filtering"
                                           "&angle_from=0&angle_to=179&algorithm=fbp")
    assert shared == explicit
    # Guests may look, not change.
    status, refused = studio.json("POST", "api/view", {"centre": 290}, headers=GUEST)
    assert status == 403 and refused["error"]["code"] == "forbidden"
    status, refused = studio.json("POST", "api/load", {"first_row": 0, "last_row": 0}, headers=GUEST)
    assert status == 403
    status, bad = studio.json("POST", "api/view", {"centre": 1000}, headers=OWNER)
    assert status == 400 and bad["error"]["field"] == "centre"
    assert studio.json("GET", "api/state")[1]["view"]["centre"] == 297.5


def test_parameters_for_the_reconstruction_job(studio):
    import jsonschema

    studio.json("POST", "api/view", {"row": 0, "centre": 296.25, "filter": "hamming", "ring_removal": "all",
                                     "angle_from": 0, "angle_to": 179.00552486187846, "algorithm": "dfi"})
    status, answer = studio.json("GET", "api/parameters")
    assert status == 200 and answer["image"] == "Tomography reconstruction"
    params = answer["parameters"]
    assert params == {"dataset": "tooth", "centre": "given", "centre_value": 296.25, "filter": "hamming",
                      "ring_removal": "all", "algorithm": "dfi"}
    with open(os.path.join(RECON_DIR, "schema.json")) as f:
        jsonschema.Draft202012Validator(json.load(f)).validate(params)
    assert "notes" not in answer
    studio.json("POST", "api/view", {"angle_to": 90, "algorithm": "fbp_algotom"})
    answer = studio.json("GET", "api/parameters")[1]
    assert answer["parameters"]["algorithm"] == "fbp" and "every angle" in answer["notes"][0]


def test_page_static_files_and_unknown_paths(studio):
    status, headers, body = studio.request("GET", "")
    assert status == 200 and b'<script src="static/studio.js" defer></script>' in body
    assert "script-src 'self'" in headers["Content-Security-Policy"] and b"<script>" not in body
    for name in ("studio.js", "studio.css"):
        assert studio.request("GET", f"static/{name}")[0] == 200
    status, answer = studio.json("GET", "api/nothing")
    assert status == 404 and answer["error"]["code"] == "not_found"


def test_too_large_then_a_range_of_rows(data, tmp_path):
    # 1 MiB: not even one row fits; the state says so and gives the figures.
    (tmp_path / "a").mkdir()
    tiny = Server(data, {"dataset": "rows"}, tmp_path / "a", env={"DAAS_MEMORY_MIB": "1"}).wait()
    try:
        state = tiny.json("GET", "api/state")[1]
        assert state["state"] == "too_large" and state["memory"]["rows_fit"] == 0
        assert "not even one row fits" in state["message"] and state["scan"]["rows_loaded"] is None
        assert tiny.json("GET", "api/slice")[0] == 503
        assert tiny.json("GET", "api/parameters")[0] == 503
        held = state["memory"]["held_bytes"]
        per_row, working = state["memory"]["per_row_bytes"], state["memory"]["working_bytes"]
        assert tiny.progress.read_text().startswith("the scan needs ")
        assert "not even one row fits" in "\n".join(tiny.lines)
    finally:
        assert tiny.stop() == 0
    # Memory for about half of the 48 rows: the studio serves at once, without loading.
    mib = int((held + working + 24 * per_row) / loading.SHARE / 2**20) + 1
    (tmp_path / "b").mkdir()
    server = Server(data, {"dataset": "rows"}, tmp_path / "b", env={"DAAS_MEMORY_MIB": str(mib)}).wait()
    try:
        state = server.json("GET", "api/state")[1]
        assert state["state"] == "too_large", state["message"]
        fit = state["memory"]["rows_fit"]
        assert 4 <= fit < 48, fit
        assert f"{fit} of its 48 rows fit" in state["message"]
        assert not any(line.startswith("loading scan.h5") for line in server.lines)
        status, refused = server.json("POST", "api/load", {"first_row": 0, "last_row": 47})
        assert status == 400 and refused["error"]["field"] == "last_row" and "rows fit" in refused["error"]["message"]
        assert server.json("POST", "api/load", {"first_row": 40, "last_row": 50})[0] == 400
        fit = server.json("GET", "api/state")[1]["memory"]["rows_fit"]  # as the page asks before it posts
        first, last = 10, 10 + fit // 2 - 1
        status, state = server.json("POST", "api/load", {"first_row": first, "last_row": last})
        assert status == 202 and state["state"] == "loading"
        deadline = time.monotonic() + 60
        while state["state"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.2)
            state = server.json("GET", "api/state")[1]
        assert state["state"] == "ready", state
        assert state["scan"]["rows_loaded"] == [first, last] and state["view"]["row"] == (first + last) // 2
        assert abs(state["centre_auto"] - 260.0) <= 1.0
        assert server.request("GET", f"api/slice?row={last}")[0] == 200
        assert server.json("GET", f"api/slice?row={last + 1}")[0] == 400
        params = server.json("GET", "api/parameters")[1]["parameters"]
        assert (params["rows"], params["first_row"], params["last_row"]) == ("range", first, last)
        # The progress file went through the load to its end.
        assert server.progress.read_text().startswith(f"ready: rows {first} to {last} of scan.h5")
        assert any(line.startswith("loading scan.h5: ") for line in server.lines)
    finally:
        assert server.stop() == 0


def test_unix_socket_mode(studio):
    path = studio.socket_path
    assert stat.S_ISSOCK(os.stat(path).st_mode) and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert studio.request("GET", "../other/api/state")[0] == 404


@pytest.mark.parametrize("params, words", [
    ({}, "dataset"),
    ({"dataset": "nothing"}, "no such dataset folder"),
    ({"dataset": "tooth", "rows": "range", "first_row": 1, "last_row": 5}, "rows 1 to 5 are not inside"),
    ({"dataset": "tooth", "algorithm": "fbp"}, "Additional properties"),
])
def test_unusable_parameters_exit_2(data, tmp_path, capsys, params, words):
    from daas_recon.studio import server

    (tmp_path / "p.json").write_text(json.dumps(params))
    code = server.main(["--port", str(free_port()), "--parameters", str(tmp_path / "p.json"), "--data", str(data)])
    out = capsys.readouterr().out
    assert code == 2
    assert out.splitlines()[-1].startswith("error: ") and words in out.splitlines()[-1], out


# -- the page in a browser ----------------------------------------------------------------------

def test_page_in_chromium(data, tmp_path):
    node = shutil.which("node")
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    playwright = os.path.join(ROOT, "tests", "e2e", "node_modules", "playwright-core")
    if not (node and os.path.exists(chromium) and os.path.isdir(playwright)):
        pytest.skip("needs node, chromium and tests/e2e/node_modules (make deps)")
    # A range of rows in the parameters: loaded from the start (row 1 of the tooth's 2).
    server = Server(data, {"dataset": "tooth", "rows": "range", "first_row": 1, "last_row": 1}, tmp_path).wait()
    try:
        state = server.json("GET", "api/state")[1]
        assert state["scan"]["rows_loaded"] == [1, 1] and state["view"]["row"] == 1
        params = server.json("GET", "api/parameters")[1]["parameters"]
        assert (params["rows"], params["first_row"], params["last_row"]) == ("range", 1, 1)
        proc = subprocess.run([node, os.path.join(RECON_DIR, "bench_studio.mjs"),
                               f"http://127.0.0.1:{server.port}{server.base}", "5", "--check"],
                              capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.splitlines()[-1])
    finally:
        assert server.stop() == 0
    assert out["errors"] == []
    assert len(out["browser_ms"]) == 5 and len(out["server_s"]) == 5
    checks = out["checks"]
    # Five ArrowRight presses: 1.25 px to the right of the automatic centre.
    assert checks["centre_field"] == pytest.approx(295.0 + 1.25)
    assert f"centre {checks['centre_field']:.2f}" in checks["readout"]
    # Five quick changes: one request in flight at a time, only the newest drawn.
    quick = checks["quick_steps"]
    assert quick["most"] == 1 and quick["drawn"] == 1 and f"centre {quick['last']:.2f}" in quick["readout"]
    assert checks["shared_centre"] == quick["last"] and 1 <= checks["tries"] <= 5
    assert checks["guest_note"].startswith("You are watching: you see ")
    assert checks["guest_use_parameters_hidden"] and checks["guest_centre"] == quick["last"]
    assert checks["guest_followed"] == quick["last"] - 2
