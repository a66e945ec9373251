"""The reconstruction studio's entry point: one scan in memory, a slice per request.

    studio.py --socket PATH | --port N  --base-url /sessions/<id>/  --parameters FILE  --data DIR

Start-up: the parameters (studio_schema.json), the dataset's file, then the rows are loaded
(progress on stdout and in $DAAS_PROGRESS_FILE) and Vo's centre is found on the middle
row; only then does the server listen, since daas counts the session as running once the
socket answers. If the rows do not fit in the session's memory ($DAAS_MEMORY_MIB), nothing
is loaded: the server listens at once in state "too_large" and the page asks for a range of
rows (`POST api/load`).

Routes (tornado, `app.make_app`), under the base URL: `GET ` the page, `GET static/...`,
`GET api/state`, `GET api/slice`, `POST api/view`, `POST api/load`, `GET api/parameters`
(each documented on its handler). Errors are JSON, `{"error": {"code", "message", "field"?}}`, as daas's
own API: 400 invalid, 403 forbidden, 404 not_found, 409 conflict, 503 unavailable.

Who asks comes from the headers daas's proxy adds (`X-Daas-User`, `X-Daas-Name`
percent-encoded, `X-Daas-Role`, `X-Daas-Portal`); without them (--port, tests) a request
counts as the owner's. The studio does no authentication: only daas reaches the socket,
and daas refuses a guest's POSTs itself (the studio refuses them too).

Where: `--socket` (daas's local runtime), `--port` (127.0.0.1: tests, benchmarks), or on
Kubernetes $DAAS_PORT on every interface with $DAAS_BASE_URL and $DAAS_PARAMETERS. Other
environment: $DAAS_MEMORY_MIB (the session's memory), $DAAS_SESSION_ID (for "Use these
parameters"), $DAAS_PROGRESS_FILE (where the start's progress goes; may be unset).

Exit codes: 0 stopped (SIGTERM, SIGINT); 2 the parameters or the input cannot be used (the
last line of stdout is `error: <reason>`); 1 anything else (the same last line).
"""

import argparse
import os
import sys
import traceback

from .. import dataexchange as dx
from ..__main__ import ParameterError, load_parameters

SCHEMA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "studio_schema.json")


def log(line):
    print(line, flush=True)


def normalise_base(url):
    """'/sessions/x' -> '/sessions/x/'; '' -> '/'."""
    url = "/" + url.strip("/")
    return url if url == "/" else url + "/"


def parser():
    p = argparse.ArgumentParser(prog="studio.py", description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group()
    where.add_argument("--socket", help="serve on this Unix socket (mode 0600), as daas's local runtime runs it")
    where.add_argument("--port", type=int,
                       help="serve on this TCP port (of 127.0.0.1 unless --host says otherwise: tests, benchmarks); "
                            "without --socket or --port: $DAAS_PORT on every interface (a Kubernetes pod)")
    p.add_argument("--host", default=None, help="the address --port listens on (default 127.0.0.1)")
    p.add_argument("--base-url", default=os.environ.get("DAAS_BASE_URL", "/"),
                   help="the path every route is under, e.g. /sessions/<id>/ (default $DAAS_BASE_URL, else /)")
    p.add_argument("--parameters", default=None,
                   help="JSON parameters file, valid against tools/recon/studio_schema.json; default: $DAAS_PARAMETERS")
    p.add_argument("--data", default="/data", help="folder holding one folder per dataset; default /data")
    return p


def where_to_listen(args):
    """Fills in args.port and args.host from $DAAS_PORT when neither --socket nor --port is
    given; raises ParameterError when nothing says where to listen."""
    if args.socket:
        return
    if args.port is None:
        env = os.environ.get("DAAS_PORT", "")
        if not env.isdigit():
            raise ParameterError("nowhere to listen: give --socket or --port, or set DAAS_PORT")
        # daas reaches a pod from outside it: every interface.
        args.port, args.host = int(env), args.host or "0.0.0.0"
    args.host = args.host or "127.0.0.1"


def open_input(args):
    """(parameters, path, scan, [first, last]) or raises ParameterError / InputError."""
    params = load_parameters(args.parameters, SCHEMA)
    dataset = params["dataset"]
    if dataset in ("", ".", "..") or "/" in dataset:
        raise ParameterError(f"dataset {dataset!r}: a dataset is one folder name under {args.data}")
    path = dx.find_file(os.path.join(args.data, dataset), params.get("file"))
    scan = dx.open_scan(path)
    angles, nrows, columns = scan.shape
    log(f"{path}: {angles} projections of {nrows} rows x {columns} columns ({scan.file[dx.DATA].dtype}), "
        f"angles {scan.theta_deg.min():g} to {scan.theta_deg.max():g} degrees")
    if params["rows"] == "range":
        first, last = int(params["first_row"]), int(params["last_row"])
        if not 0 <= first <= last < nrows:
            scan.close()
            raise dx.InputError(f"{path}: rows {first} to {last} are not inside the scan's rows 0 to {nrows - 1}")
    else:
        first, last = 0, nrows - 1
    return params, path, scan, [first, last]


def main(argv=None):
    args = parser().parse_args(argv)
    base_url = normalise_base(args.base_url)
    try:
        where_to_listen(args)
        params, path, scan, (first, last) = open_input(args)
    except (dx.InputError, ParameterError) as e:
        log(f"error: {e}")
        return 2
    # Only now: algotom, numba and scipy take seconds to import.
    from . import load as loading
    from .app import Studio, serve

    progress = loading.Progress(os.environ.get("DAAS_PROGRESS_FILE"))
    studio = Studio(params, path, scan, progress, os.environ.get("DAAS_SESSION_ID", ""))
    try:
        if studio.fits(first, last):
            log(f"memory: {loading.gib_text(studio.budget.needed(last - first + 1))} needed for rows {first} to {last}"
                + (f" of {loading.gib_text(studio.budget.budget)} planned" if studio.budget.budget is not None else ""))
            studio.load(first, last)
        else:
            studio.too_large(first, last)
    except dx.InputError as e:
        log(f"error: {e}")
        return 2
    except Exception as e:
        traceback.print_exc(file=sys.stdout)
        log(f"error: {path}: {type(e).__name__}: {e}")
        return 1
    return serve(studio, args, base_url)


