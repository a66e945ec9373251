"""A notebook session's Jupyter server as daas starts it: `jupyter lab` from .daas/venv with
JUPYTER_CONFIG_PATH at tools/jupyter and DAAS_TOKEN_HASH_FILE at the token's hash, its
working folder the notebook's root, on a free port of 127.0.0.1. One server for all the
tests; stopped with its kernels at the end."""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SETTINGS = HERE.parent
REPO = SETTINGS.parent.parent
VENV_BIN = REPO / ".daas" / "venv" / "bin"
TOKEN = "first-secret-2c1f9e"


def token_hash(token):
    """What daas writes into the hash file (backend's `runtime::token_hash`)."""
    return hashlib.sha256(token.encode()).hexdigest()


def write_hash(path, token):
    """As daas rotates the secret: a new file beside the old one, renamed over it."""
    path = Path(path)
    new = path.with_name(path.name + ".next")
    new.write_text(token_hash(token) + "\n")
    os.replace(new, path)


def server_env(home, hash_file):
    """The server's environment: daas's variables, a home of the test's, and no token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env.update(HOME=str(home), JUPYTER_CONFIG_PATH=str(SETTINGS))
    if hash_file is not None:
        env["DAAS_TOKEN_HASH_FILE"] = str(hash_file)
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_command(root, port):
    command = [str(VENV_BIN / "jupyter"), "lab", "--no-browser", f"--ServerApp.root_dir={root}",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
    # CI runs as root; daas's sessions do not.
    if os.geteuid() == 0:
        command.append("--allow-root")
    return command


@dataclass
class Server:
    url: str
    ws_url: str
    process: subprocess.Popen
    root: Path
    home: Path
    hash_file: Path

    def request(self, method, path, token=None, headers=None, body=None):
        """(status, parsed JSON or None) of a request as daas's proxy would forward it."""
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"token {token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                status, text = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, None


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jupyter")
    root, home = tmp / "root", tmp / "home"
    root.mkdir()
    home.mkdir()
    hash_file = tmp / "session" / "token.sha256"
    hash_file.parent.mkdir()
    write_hash(hash_file, TOKEN)
    port = free_port()
    log = open(tmp / "server.log", "wb")
    process = subprocess.Popen(lab_command(root, port), cwd=root, env=server_env(home, hash_file),
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    s = Server(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", process, root, home, hash_file)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp / "server.log").read_text()
            try:
                if s.request("GET", "/api/me", TOKEN)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not answer in 30 s"
            time.sleep(0.2)
        yield s
    finally:
        # The server's session holds its kernels too: one signal reaches them all.
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # A kernel the server failed to stop.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
