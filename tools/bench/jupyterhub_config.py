# JupyterHub as the launch benchmark's point of comparison with daas.
#
# Started as `.daas/venv/bin/jupyterhub -f tools/bench/jupyterhub_config.py` with the
# working directory set to a fresh temporary folder, which receives the hub's state:
# jupyterhub.sqlite (JupyterHub's default database, sqlite in the working directory),
# jupyterhub_cookie_secret, jupyterhub-proxy.pid and the spawned servers' home folders.
#
# Environment:
#   BENCH_HUB_PORT            public port of the proxy (http://127.0.0.1:PORT); required
#   BENCH_HUB_HUB_PORT        the hub's own port, behind the proxy; required
#   BENCH_HUB_PROXY_API_PORT  configurable-http-proxy's REST API port; required
#   BENCH_HUB_TOKEN           API token (8+ characters) of service "bench", which may create
#                             users and start/stop anyone's servers; required
#   BENCH_HUB_SPAWNER         "process" (default) or "instant"
#   BENCH_HUB_SHARED_PORT     instant only: port of a trivial server the caller started;
#                             without it the hub starts one itself, and it dies with the hub
#   BENCH_HUB_PYTHON          the trivial server's python3 (default /usr/bin/python3)
#   BENCH_HUB_SQLITE_SYNC     "full" (default, sqlite's own) or "off": no fsync per commit
# Users are not configured here: the token creates them (POST /hub/api/users/NAME).
import atexit
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from jupyterhub.spawner import SimpleLocalProcessSpawner, Spawner


def _env_port(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"jupyterhub_config.py: {name} must be set")
    return int(value)


port = _env_port("BENCH_HUB_PORT")
hub_port = _env_port("BENCH_HUB_HUB_PORT")
proxy_api_port = _env_port("BENCH_HUB_PROXY_API_PORT")
token = os.environ.get("BENCH_HUB_TOKEN", "")
if len(token) < 8:
    sys.exit("jupyterhub_config.py: BENCH_HUB_TOKEN must be set (8 characters or more)")
spawner_kind = os.environ.get("BENCH_HUB_SPAWNER", "process")
# The python3 that daas's sandbox finds (it mounts /usr, not the home folders on PATH):
# here PATH's first python3 may be a pyenv shim, a bash script that costs more than Python.
python = os.environ.get("BENCH_HUB_PYTHON") or ("/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3")
workdir = Path.cwd()

c.JupyterHub.bind_url = f"http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{hub_port}"
c.JupyterHub.log_level = "WARN"

# The repository's pinned configurable-http-proxy (tests/bench, `npm ci`), not one on PATH.
chp = Path(__file__).resolve().parents[2] / "tests/bench/node_modules/.bin/configurable-http-proxy"
if not chp.exists():
    sys.exit(f"jupyterhub_config.py: no {chp} (run `npm ci` in tests/bench, or `make deps`)")
c.ConfigurableHTTPProxy.command = [str(chp)]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.log_level = "warn"

# fsync per commit is most of the hub's launch time on this disk (its event loop waits
# on it). "off" matches daas's development PostgreSQL (fsync = off); the default keeps the
# sqlite a facility runs.
if os.environ.get("BENCH_HUB_SQLITE_SYNC", "full") == "off":
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _no_fsync(dbapi_connection, connection_record):
        dbapi_connection.execute("PRAGMA synchronous = OFF")

c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True

# An admin-like token for the benchmark client (Authorization: token ...); read:metrics
# lets it read /hub/metrics (spawn and proxy-route durations) to see where time goes.
c.JupyterHub.services = [{"name": "bench", "api_token": token}]
# The bench's token is random, like the hub's own: checked with one hash round, not the
# 16384 rounds (1.4 ms each API call) meant for tokens a person made up.
c.JupyterHub.trust_user_provided_tokens = True
c.JupyterHub.load_roles = [
    {
        "name": "bench",
        "scopes": ["admin:users", "admin:servers", "list:users", "read:metrics"],
        "services": ["bench"],
    }
]

# One user may hold any number of servers, all spawning at once, as daas's one user
# launching N sessions: JupyterHub's defaults (concurrent_spawn_limit 100) would answer 429.
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 0
c.JupyterHub.concurrent_spawn_limit = 0
c.JupyterHub.active_server_limit = 0
# Hundreds of Python processes starting at once on two cores take longer than the
# defaults (start 60 s, answer 30 s) before the hub would give up on them.
c.Spawner.start_timeout = 600
c.Spawner.http_timeout = 600
# Stop every server when the hub stops (the default; the benchmark relies on it).
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True


class _NoVersionHeader(logging.Filter):
    # The trivial server is no Jupyter server: one warning per spawn would flood stderr.
    def filter(self, record):
        return "has no version header" not in record.getMessage()


# User objects log through tornado's app_log, which the hub renames but keeps.
for _name in ("JupyterHub", "tornado.application"):
    logging.getLogger(_name).addFilter(_NoVersionHeader())


class TrivialProcessSpawner(SimpleLocalProcessSpawner):
    """One `python3 -m http.server` per server: the process daas's benchmark launches."""

    def get_args(self):
        return ["--bind", self.ip, str(self.port)]


def _die_with_parent():
    # PR_SET_PDEATHSIG: the shared server goes when the hub does, even if it is killed.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _shared_server():
    """Port of the one trivial server that every instant spawn points at."""
    if os.environ.get("BENCH_HUB_SHARED_PORT"):
        return int(os.environ["BENCH_HUB_SHARED_PORT"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        shared = s.getsockname()[1]
    proc = subprocess.Popen(
        [python, "-m", "http.server", "--bind", "127.0.0.1", str(shared)],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    atexit.register(proc.terminate)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", shared), timeout=1).close()
            return shared
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit("jupyterhub_config.py: the shared http.server did not start")
            time.sleep(0.05)


class InstantSpawner(Spawner):
    """The hub's control plane alone: start answers at once with the shared server."""

    shared_port = None
    running = False

    async def start(self):
        self.running = True
        return ("127.0.0.1", self.shared_port)

    async def poll(self):
        return None if self.running else 0

    async def stop(self, now=False):
        self.running = False


c.Spawner.ip = "127.0.0.1"
if spawner_kind == "process":
    c.JupyterHub.spawner_class = TrivialProcessSpawner
    c.Spawner.cmd = [python, "-m", "http.server"]
    # Each server serves (and creates) its own folder inside the working directory.
    c.SimpleLocalProcessSpawner.home_dir_template = str(workdir / "home" / "{username}")
    # The servers' access logs would otherwise interleave with the hub's stderr.
    c.LocalProcessSpawner.popen_kwargs = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
elif spawner_kind == "instant":
    InstantSpawner.shared_port = _shared_server()
    c.JupyterHub.spawner_class = InstantSpawner
else:
    sys.exit(f"jupyterhub_config.py: BENCH_HUB_SPAWNER={spawner_kind!r}: want process or instant")
