"""daas's Jupyter settings (tools/jupyter/jupyter_server_config.py): the secret checked
against its hash file, re-read at each request so that a rotation needs no restart; the
identity daas names in `X-Daas-User` and `X-Daas-Name`; no token anywhere a kernel can read."""

import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from conftest import TOKEN, free_port, lab_command, server_env, token_hash, write_hash

ZOE = {"X-Daas-User": "zoe", "X-Daas-Name": urllib.parse.quote("Zoë Ångström")}


def test_no_token_is_refused(server):
    assert server.request("GET", "/api/me")[0] == 403
    assert server.request("GET", "/api/contents")[0] == 403


def test_wrong_token_is_refused(server):
    assert server.request("GET", "/api/me", "not-the-secret", ZOE)[0] == 403
    # The hash itself is no token.
    assert server.request("GET", "/api/me", token_hash(TOKEN), ZOE)[0] == 403
    # Nor is the secret in the URL (Jupyter's `?token=`): the header alone counts.
    assert server.request("GET", f"/api/me?token={TOKEN}")[0] == 403


def test_identity_is_daas_user(server):
    status, me = server.request("GET", "/api/me", TOKEN, ZOE)
    assert status == 200
    identity = me["identity"]
    assert identity["username"] == "zoe"
    assert identity["name"] == identity["display_name"] == "Zoë Ångström"
    assert identity["initials"] == "ZÅ"


def test_daas_own_requests_are_daas(server):
    status, me = server.request("GET", "/api/me", TOKEN)
    assert status == 200
    assert me["identity"]["username"] == "daas"
    assert me["identity"]["name"] == "daas"


def test_name_defaults_to_username(server):
    status, me = server.request("GET", "/api/me", TOKEN, {"X-Daas-User": "bob"})
    assert status == 200
    assert me["identity"]["username"] == me["identity"]["name"] == "bob"


def test_pages_render_no_token(server):
    page = urllib.request.urlopen(urllib.request.Request(
        server.url + "/lab", headers={"Authorization": f"token {TOKEN}", **ZOE}), timeout=10)
    html = page.read().decode()
    assert page.status == 200
    assert '"token": ""' in html
    assert TOKEN not in html and token_hash(TOKEN) not in html
    # No login cookie: the header is the only credential.
    cookies = page.headers.get_all("Set-Cookie") or []
    assert not [c for c in cookies if c.startswith("username-")], cookies


def test_rotation_needs_no_restart(server):
    pid = server.process.pid
    try:
        write_hash(server.hash_file, "second-secret-77ab")
        assert server.request("GET", "/api/me", TOKEN, ZOE)[0] == 403
        assert server.request("GET", "/api/me", "second-secret-77ab", ZOE)[0] == 200
        # Gone or unreadable: every request refused, the server still up.
        server.hash_file.unlink()
        assert server.request("GET", "/api/me", "second-secret-77ab", ZOE)[0] == 403
        server.hash_file.write_text("not a hash\n")
        assert server.request("GET", "/api/me", "second-secret-77ab", ZOE)[0] == 403
        assert server.process.poll() is None and server.process.pid == pid
    finally:
        write_hash(server.hash_file, TOKEN)
    assert server.request("GET", "/api/me", TOKEN, ZOE)[0] == 200


def environ(pid):
    """A process's environment, from /proc."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)


def children(pid):
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The parent's pid follows the command's name, which is in parentheses.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_no_token_where_kernels_can_read(server):
    status, kernel = server.request("POST", "/api/kernels", TOKEN, ZOE, {"name": "python3"})
    assert status == 201, kernel
    try:
        deadline = time.monotonic() + 20
        while True:
            kernels = [p for p in children(server.process.pid)
                       if b"ipykernel" in Path(f"/proc/{p}/cmdline").read_bytes()]
            if kernels:
                break
            assert time.monotonic() < deadline, "no kernel process"
            time.sleep(0.1)
        for pid in [server.process.pid, *kernels]:
            env = environ(pid)
            assert b"JUPYTER_TOKEN" not in env
            holding = [k for k, v in env.items() if TOKEN.encode() in v]
            assert not holding, holding
            # What a kernel can read: the hash file's path, and in it the hash alone.
            assert env[b"DAAS_TOKEN_HASH_FILE"] == str(server.hash_file).encode()
        assert server.hash_file.read_text() == token_hash(TOKEN) + "\n"
    finally:
        assert server.request("DELETE", f"/api/kernels/{kernel['id']}", TOKEN)[0] == 204


def test_refuses_to_start_unguarded(tmp_path):
    """Without DAAS_TOKEN_HASH_FILE, or with one that holds no hash, the server never
    listens."""
    (tmp_path / "home").mkdir()
    starts = [subprocess.Popen(lab_command(tmp_path, free_port()), cwd=tmp_path,
                               env=server_env(tmp_path / "home", hash_file),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
              for hash_file in (None, tmp_path / "missing.sha256")]
    for start in starts:
        try:
            _, stderr = start.communicate(timeout=60)
        finally:
            if start.poll() is None:
                start.kill()
                start.wait()
        assert start.returncode != 0
        assert "DAAS_TOKEN_HASH_FILE" in stderr.splitlines()[-1], stderr[-2000:]
