"""The studio's state and its web application (tornado): what `server.main` runs once the
parameters and the input have passed (importing algotom takes seconds: a broken input fails
before). The routes and the contract with daas are in `server`'s module doc; each handler's
doc says what it answers.
"""

import concurrent.futures as cf
import io
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
import urllib.parse

import numpy as np

from .. import dataexchange as dx
from .. import pipeline
from . import load as loading
from . import regrid
from .slices import ALGORITHMS, Invalid, Slices

HERE = os.path.dirname(os.path.abspath(__file__))
STATIC = os.path.join(HERE, "static")
#: The job image whose parameters `api/parameters` offers (its name in daas's catalogue).
JOB_IMAGE = "Tomography reconstruction"
ROLES = ("owner", "user", "guest", "support", "admin")


def log(line):
    print(line, flush=True)


class Studio:
    """What the studio holds and what every page shares; the handlers' one state.

    `state` is "loading", "ready", "too_large" or "failed" (`message` says why). Changed by
    the loading thread and the event loop under `lock`; the slices are made on `executor`
    (one thread: each slice uses every core, and loading runs there too, so a load never
    overlaps a slice and the old rows are gone before new ones are read).
    """

    def __init__(self, params, path, scan, progress, session_id=""):
        self.params, self.path, self.scan, self.progress = params, path, scan, progress
        self.dataset = params["dataset"]
        self.file = params.get("file") or os.path.basename(path)
        self.session_id = session_id
        self.lock = threading.Lock()
        self.executor = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="slices")
        self.stopping = threading.Event()
        self.state, self.message = "loading", None
        self.slices = None
        self.rows = None  # [first, last] loaded
        self.centre_auto = None
        self.view, self.view_version, self.view_by = None, 0, None
        self.owner = None
        angles, nrows, columns = scan.shape
        self.budget = loading.budget(angles, columns)
        self.requested = None  # [first, last] the budget was asked about

    # -- loading -------------------------------------------------------------------------

    def fits(self, first, last):
        """Whether rows first..last fit; refreshes the budget (what is held changes)."""
        angles, _, columns = self.scan.shape
        self.budget = loading.budget(angles, columns)
        self.requested = [first, last]
        need = self.budget.needed(last - first + 1)
        return self.budget.budget is None or need <= self.budget.budget

    def too_large(self, first, last):
        """Enters "too_large" for rows first..last (nothing is loaded)."""
        with self.lock:
            self.state, self.message = "too_large", None
        log(self.memory_message(self.budget, 0))
        # daas shows the first 200 characters of the progress file's line.
        self.progress(f"the scan needs {loading.gib_text(self.budget.needed(last - first + 1))} in memory: "
                      f"{self.budget.rows_fit(self.scan.shape[1])} of its {self.scan.shape[1]} rows fit; "
                      "choose rows in the studio", force=True)

    def memory_message(self, budget, held):
        """Why the requested rows are not loaded, with what fits (`budget` now, `held`: the
        bytes of rows loaded now, which a new load gives back)."""
        first, last = self.requested
        rows = last - first + 1
        nrows = self.scan.shape[1]
        have = budget.session if budget.session is not None else budget.free
        where = "the session has" if budget.session is not None else "this machine has free"
        fit = budget.rows_fit(nrows, held)
        text = (f"The scan needs {loading.gib_text(budget.needed(rows))} in memory "
                f"({rows} row{'s' if rows != 1 else ''} and the slices' working memory), {where} "
                f"{loading.gib_text(have or 0)}, of which the studio plans to use "
                f"{loading.gib_text(max(0, budget.budget + held))} ({round(loading.SHARE * 100)} %, less the "
                f"{loading.gib_text(budget.held - held)} it holds already)")
        if fit == 0:
            return text + ": not even one row fits."
        return text + f": {fit} of its {nrows} rows fit; choose a range of rows."

    def load(self, first, last):
        """Loads rows first..last (inclusive), finds the automatic centre, starts the view.

        Runs on the executor (or before the server listens). Raises what loading raises;
        the state is "ready" after, "failed" if it raised (the caller decides the rest).
        """
        with self.lock:
            self.state, self.message = "loading", None
            self.slices, self.rows, self.centre_auto = None, None, None
        try:
            name = os.path.basename(self.path)
            sinograms = loading.load(self.scan, first, last, self.progress, name=name, stopping=self.stopping)
            slices = Slices(sinograms, first, self.scan.theta_deg)
            middle = (first + last) // 2
            with self.progress.ongoing(f"finding the centre of rotation (Vo's method) on row {middle}"):
                # FFTW's measured plan (regrid.prepare) meanwhile: both take seconds on big scans.
                fft = threading.Thread(target=regrid.prepare, args=(self.scan.shape[2],), name="fftw-plan")
                fft.start()
                try:
                    centre = slices.auto_centre(middle)
                finally:
                    fft.join()
            with self.lock:
                self.slices, self.rows, self.centre_auto = slices, [first, last], centre
                self.view = slices.default_view(round(centre * 4) / 4)
                self.view_version += 1
                self.view_by = None
                self.state, self.message = "ready", None
            self.progress(f"ready: rows {first} to {last} of {name} in memory "
                          f"({loading.size_text(sinograms.nbytes)}), centre {centre:.2f} (Vo)", force=True)
        except BaseException as e:
            with self.lock:
                self.state = "failed"
                self.message = str(e) if isinstance(e, (dx.InputError, loading.Stopped)) else \
                    f"loading rows {first} to {last} failed: {type(e).__name__}: {e}"
                self.slices = None
            raise

    def load_in_background(self, first, last):
        """Starts loading rows first..last on the executor; the state says how it goes."""
        with self.lock:
            self.state, self.message = "loading", None
            self.progress.fraction = 0.0
            self.progress.line = f"loading rows {first} to {last}"
            self.slices = None

        def run():
            try:
                self.load(first, last)
            except loading.Stopped:
                pass
            except Exception:
                traceback.print_exc(file=sys.stdout)
                log(f"error: {self.message}")

        self.executor.submit(run)

    # -- what the pages see ----------------------------------------------------------------

    def to_json(self, who):
        angles, nrows, columns = self.scan.shape
        portal = who.pop("portal", None)
        # Fresh: what this process holds changes, and the rows that fit with it.
        budget = self.budget = loading.budget(angles, columns)
        with self.lock:
            slices = self.slices
            held = slices.sinograms.nbytes if slices is not None else 0
            message = self.memory_message(budget, held) if self.state == "too_large" else self.message
            answer = {
                "state": self.state,
                "message": message,
                "progress": {"line": self.progress.line, "fraction": round(self.progress.fraction, 4)}
                if self.state == "loading" else None,
                "session": self.session_id,
                "scan": {
                    "dataset": self.dataset,
                    "file": self.file,
                    "angles": angles,
                    "rows": nrows,
                    "columns": columns,
                    "rows_loaded": self.rows,
                    "angle_range": [float(self.scan.theta_deg.min()), float(self.scan.theta_deg.max())],
                    "bytes_held": held,
                    "device": f"{regrid.device()} ({pipeline.cores()} cores)",
                },
                "centre_auto": self.centre_auto,
                "centre_auto_row": (self.rows[0] + self.rows[1]) // 2 if self.rows else None,
                "view": self.view.to_json() if self.view is not None else None,
                "view_version": self.view_version,
                "view_by": self.view_by,
                "owner": self.owner,
                "memory": {
                    **budget.to_json(),
                    "needed_bytes": budget.needed(self.requested[1] - self.requested[0] + 1) if self.requested else None,
                    # Rows that fit besides what is loaded now (a new range replaces it).
                    "rows_fit": budget.rows_fit(nrows, held),
                    "requested_rows": self.requested,
                },
                "user": who,
                "portal": portal,
                "choices": {
                    "filter": list(pipeline.FILTERS),
                    "ring_removal": list(pipeline.RING_REMOVALS),
                    "algorithm": [{"name": k, "label": v[0]} for k, v in ALGORITHMS.items()],
                },
            }
        return answer

    def parameters(self):
        """The batch job's parameters (tools/recon/schema.json) for the shared view, or None
        before there is one. What the job cannot do (an angle range) is said in `notes`."""
        with self.lock:
            view, rows = self.view, self.rows
        if view is None:
            return None
        params = {"dataset": self.dataset}
        if self.params.get("file"):
            params["file"] = self.params["file"]
        params.update({"centre": "given", "centre_value": round(view.centre, 2), "filter": view.filter,
                       "ring_removal": view.ring_removal, "algorithm": ALGORITHMS[view.algorithm][1]})
        nrows = self.scan.shape[1]
        if rows != [0, nrows - 1]:
            params.update({"rows": "range", "first_row": rows[0], "last_row": rows[1]})
        notes = []
        lo, hi = float(self.scan.theta_deg.min()), float(self.scan.theta_deg.max())
        # The page shows angles to two decimals: a range within 0.01 degree of the scan's is all of it.
        if view.angle_from > lo + 0.01 or view.angle_to < hi - 0.01:
            notes.append(f"the view uses angles {view.angle_from:g} to {view.angle_to:g} degrees; "
                         "the reconstruction job uses every angle")
        answer = {"image": JOB_IMAGE, "parameters": params}
        if notes:
            answer["notes"] = notes
        return answer


# -- the web part -------------------------------------------------------------------------

def make_app(studio, base_url):
    """The tornado Application of `studio`, its routes under base_url ("/" or "/x/.../")."""
    import tornado.web

    class Handler(tornado.web.RequestHandler):
        def set_default_headers(self):
            self.set_header("X-Content-Type-Options", "nosniff")
            self.set_header("Referrer-Policy", "same-origin")
            self.set_header("Cache-Control", "no-store")

        def who(self):
            """{user, name, role, portal} from daas's headers (the owner when there are none)."""
            headers = self.request.headers
            user = headers.get("X-Daas-User", "")
            name = urllib.parse.unquote(headers.get("X-Daas-Name", "")) or user
            role = headers.get("X-Daas-Role", "owner" if not user else "guest")
            if role not in ROLES:
                role = "guest"
            portal = headers.get("X-Daas-Portal", "")
            if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+", portal):
                portal = None
            if role == "owner" and user:
                studio.owner = {"user": user, "name": name}
            return {"user": user, "name": name, "role": role, "portal": portal}

        def fail(self, status, code, message, field=None):
            error = {"code": code, "message": message}
            if field:
                error["field"] = field
            self.set_status(status)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"error": error}))

        def write_error(self, status_code, **kwargs):
            if "exc_info" in kwargs and status_code >= 500:
                traceback.print_exception(*kwargs["exc_info"], file=sys.stdout)
            code = {404: "not_found", 405: "invalid"}.get(status_code, "internal" if status_code >= 500 else "invalid")
            message = self._reason if status_code < 500 else "the studio failed; its log says why"
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"error": {"code": code, "message": message}}))

        def json_body(self):
            try:
                body = json.loads(self.request.body or b"{}")
            except ValueError:
                body = None
            if not isinstance(body, dict):
                self.fail(400, "invalid", "the body must be a JSON object")
                return None
            return body

        def change_request(self):
            """Who asks and the JSON body of a request that changes the studio; `(who, None)`
            after answering 403 to a guest or 400 to a body that is not a JSON object."""
            who = self.who()
            if who["role"] == "guest":
                self.fail(403, "forbidden", "guests watch: only members who may control change the studio")
                return who, None
            return who, self.json_body()

        def send_json(self, value, status=200):
            self.set_status(status)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(value))

    class Page(Handler):
        """`GET {base}`: the page (static/index.html)."""

        def get(self):
            who = self.who()
            frame = f" {who['portal']}" if who["portal"] else ""
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.set_header("Content-Security-Policy",
                            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                            f"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'{frame}")
            with open(os.path.join(STATIC, "index.html"), "rb") as f:
                self.finish(f.read())

    class State(Handler):
        """`GET {base}api/state`: the studio's state, the shared view and who is asking."""

        def get(self):
            self.send_json(studio.to_json(self.who()))

    class SliceHandler(Handler):
        """`GET {base}api/slice?row=&centre=&filter=&ring_removal=&angle_from=&angle_to=
        &algorithm=&format=`: one slice. Missing values are the shared view's. format=f32
        (default): little-endian float32, columns x columns, with X-Width, X-Height,
        X-Sharpness, X-Seconds (server time, from the request to the answer ready), X-Min,
        X-Max (inside the reconstruction circle); format=png: 8-bit greyscale between the
        0.5th and 99.5th percentiles, the same headers. A request whose client went away
        while it waited is skipped."""

        gone = False

        def on_connection_close(self):
            self.gone = True

        async def get(self):
            started = time.perf_counter()
            with studio.lock:
                slices, base, state = studio.slices, studio.view, studio.state
            if state != "ready" or slices is None:
                return self.fail(503, "unavailable", f"no slices yet: the studio is {state.replace('_', ' ')}")
            values = {k: self.get_query_argument(k) for k in self.request.query_arguments}
            fmt = values.pop("format", "f32")
            if fmt not in ("f32", "png"):
                return self.fail(400, "invalid", f"unknown format {fmt!r}: f32 or png", "format")
            try:
                view = slices.check(values, base)
            except Invalid as e:
                return self.fail(400, "invalid", str(e), e.field)

            def work():
                if self.gone:
                    return None
                made = slices.make(view)
                if fmt == "f32":
                    body = np.ascontiguousarray(made.image, dtype="<f4").tobytes()
                else:
                    body = png(made.image)
                return made, body

            import tornado.ioloop

            try:
                result = await tornado.ioloop.IOLoop.current().run_in_executor(studio.executor, work)
            except ValueError as e:  # a reconstructor refused these values (algotom's checks)
                return self.fail(400, "invalid", str(e))
            if result is None or self.gone:
                return
            made, body = result
            n = made.image.shape[0]
            self.set_header("Content-Type", "application/octet-stream" if fmt == "f32" else "image/png")
            for name, value in (("X-Width", n), ("X-Height", n), ("X-Sharpness", f"{made.sharpness:.6f}"),
                                ("X-Seconds", f"{time.perf_counter() - started:.4f}"),
                                ("X-Compute-Seconds", f"{made.seconds:.4f}"),
                                ("X-Min", repr(made.minimum)), ("X-Max", repr(made.maximum))):
                self.set_header(name, str(value))
            self.finish(body)

    class ViewHandler(Handler):
        """`POST {base}api/view` {row, centre, filter, ring_removal, angle_from, angle_to,
        algorithm} (missing values: the current view's): sets the shared view; answers
        {view, view_version, view_by}. 403 for a guest."""

        def post(self):
            who, body = self.change_request()
            if body is None:
                return
            with studio.lock:
                slices, base = studio.slices, studio.view
            if slices is None:
                return self.fail(503, "unavailable", "nothing is loaded yet")
            try:
                view = slices.check(body, base)
            except Invalid as e:
                return self.fail(400, "invalid", str(e), e.field)
            with studio.lock:
                studio.view, studio.view_version = view, studio.view_version + 1
                studio.view_by = {"user": who["user"], "name": who["name"]}
                answer = {"view": view.to_json(), "view_version": studio.view_version, "view_by": studio.view_by}
            self.send_json(answer)

    class LoadHandler(Handler):
        """`POST {base}api/load` {first_row, last_row}: loads those rows instead (in the
        background: 202 and the state, which then says "loading"). 400 for rows outside the
        scan or more than fit, 409 while loading, 403 for a guest."""

        def post(self):
            who, body = self.change_request()
            if body is None:
                return
            nrows = studio.scan.shape[1]
            try:
                first, last = int(body.get("first_row")), int(body.get("last_row"))
            except (TypeError, ValueError):
                return self.fail(400, "invalid", "first_row and last_row must be whole numbers", "first_row")
            if not 0 <= first <= last < nrows:
                return self.fail(400, "invalid", f"rows {first} to {last} are not inside the scan's rows 0 to {nrows - 1}",
                                 "first_row" if not 0 <= first < nrows else "last_row")
            with studio.lock:
                if studio.state == "loading":
                    return self.fail(409, "conflict", "the studio is loading already")
                held = studio.slices.sinograms.nbytes if studio.slices is not None else 0
            # What is held now goes before the new rows come: it does not count against them.
            angles, _, columns = studio.scan.shape
            budget = loading.budget(angles, columns)
            fit = budget.rows_fit(nrows, held)
            if last - first + 1 > fit:
                return self.fail(400, "invalid", f"rows {first} to {last} need "
                                 f"{loading.gib_text(budget.needed(last - first + 1))} in memory; {fit} rows fit",
                                 "last_row")
            studio.budget, studio.requested = budget, [first, last]
            studio.load_in_background(first, last)
            self.send_json(studio.to_json(who), status=202)

    class Parameters(Handler):
        """`GET {base}api/parameters`: {"image": "Tomography reconstruction", "parameters":
        {...}} for "Use these parameters" (the batch job's names, from the shared view);
        503 before a view exists."""

        def get(self):
            answer = studio.parameters()
            if answer is None:
                return self.fail(503, "unavailable", f"no view yet: the studio is {studio.state.replace('_', ' ')}")
            self.send_json(answer)

    class NotFound(Handler):
        def prepare(self):
            self.fail(404, "not_found", "no such page in the studio")

    class Static(tornado.web.StaticFileHandler):
        def set_default_headers(self):
            self.set_header("X-Content-Type-Options", "nosniff")

    base = re.escape(base_url)
    routes = [
        (base, Page),
        (base + r"static/(.*)", Static, {"path": STATIC}),
        (base + r"api/state", State),
        (base + r"api/slice", SliceHandler),
        (base + r"api/view", ViewHandler),
        (base + r"api/load", LoadHandler),
        (base + r"api/parameters", Parameters),
    ]
    if base_url != "/":
        routes.append((re.escape(base_url[:-1]), tornado.web.RedirectHandler, {"url": base_url}))
    return tornado.web.Application(routes, default_handler_class=NotFound, compress_response=False)


def png(image):
    """An 8-bit greyscale PNG of a slice (bytes), windowed as the batch job's previews."""
    from PIL import Image

    from ..outputs import to_8bit

    buf = io.BytesIO()
    Image.fromarray(to_8bit(image), mode="L").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def serve(studio, args, base_url):
    """Listens and serves until SIGTERM or SIGINT; returns the exit code."""
    import asyncio
    import logging

    import tornado.httpserver
    import tornado.netutil

    logging.getLogger("tornado.access").setLevel(logging.WARNING)

    async def run():
        server = tornado.httpserver.HTTPServer(make_app(studio, base_url), max_buffer_size=1 << 20)
        try:
            if args.socket:
                server.add_socket(tornado.netutil.bind_unix_socket(args.socket, mode=0o600))
                log(f"listening on unix:{args.socket} at {base_url}")
            else:
                server.listen(args.port, address=args.host)
                log(f"listening on http://{args.host}:{args.port}{base_url}")
        except OSError as e:
            log(f"error: cannot listen on {args.socket or args.port}: {e}")
            return 1
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda signum=signum: (log(f"stopping ({signal.Signals(signum).name})"),
                                                                  stopped.set()))
        await stopped.wait()
        server.stop()
        return 0

    code = asyncio.run(run())
    # A load in progress ends at its next block; a slice being made is finished.
    studio.stopping.set()
    studio.executor.shutdown(wait=True, cancel_futures=True)
    if args.socket and code == 0:
        try:
            os.unlink(args.socket)
        except OSError:
            pass
    studio.scan.close()
    return code
