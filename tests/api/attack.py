"""The attacks of tests/api/hostile.rs, run as a job inside a real session of the attacker.

argv[1] is JSON naming the targets (host paths, ports, the victim's secrets). Every attack
prints one line, `PWNED <attack>: <what worked>` or `blocked <attack>: <why>`, then
`done`. The test fails on any PWNED line, and on a missing `blocked` line.
"""

import json
import os
import shutil
import socket
import stat
import sys

targets = json.loads(sys.argv[1])
home = os.environ["HOME"]


def attack(name, action):
    try:
        print(f"PWNED {name}: {action()}", flush=True)
    except Exception as error:  # any failure is what we hope for
        print(f"blocked {name}: {type(error).__name__}: {error}", flush=True)


def nonempty(found, why):
    """`found` when it holds anything, else the attack failed for `why`."""
    if not found:
        raise LookupError(why)
    return found


def read(path):
    return os.listdir(path) if os.path.isdir(path) else open(path).read()


def tcp(host, port):
    with socket.create_connection((host, port), timeout=2):
        return f"connected to {host}:{port}"


def unix(address):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(address)
        return f"connected to {address!r}"


def x11_without_cookie(address):
    """An X11 connection set-up with no authorisation: success (byte 1) means the display
    can be screenshot and typed into (XTEST) by anyone who reaches it."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(address)
        s.sendall(b"l\0\x0b\0\0\0\0\0\0\0\0\0")
        answer = s.recv(8)
        if answer[:1] != b"\x01":
            raise PermissionError(f"X server refused: {answer!r}")
        return f"X11 session opened on {address!r}"


def x11_displays():
    """Every X display this session can name: abstract sockets listed in /proc/net/unix
    (all of the host's where the network namespace is shared) and the ones guessed."""
    names = {"\0/tmp/.X11-unix/X1", "/tmp/.X11-unix/X1"}
    with open("/proc/net/unix") as f:
        for line in f.read().splitlines()[1:]:
            path = line.split()[-1] if len(line.split()) > 7 else ""
            if ".X11-unix" in path:
                names.add("\0" + path[1:] if path.startswith("@") else path)
    return names


# 1. Another user's desktop through X11 (abstract sockets, the display's path, no cookie).
for address in sorted(x11_displays()):
    attack(f"x11 {address!r}", lambda a=address: x11_without_cookie(a))

# 2. The victim's desktop and notebook sockets, their home and files, by host path.
for name, path in targets["paths"].items():
    attack(f"reach {name}", lambda p=path, n=name: unix(p) if n.endswith("socket") else read(p))
attack("list other homes", lambda: nonempty([h for h in os.listdir("/home") if h != targets["me"]], "only mine"))

# 3. The host's loopback listeners (PostgreSQL, daas, a notebook on a TCP port) and the LAN.
for name, port in targets["ports"].items():
    attack(f"tcp {name}", lambda p=port: tcp("127.0.0.1", p))
attack("tcp notebook port 8888", lambda: tcp("127.0.0.1", 8888))


def routes():
    with open("/proc/net/route") as f:
        table = f.read().splitlines()[1:]
    with open("/proc/net/dev") as f:
        interfaces = [line.split(":")[0].strip() for line in f.read().splitlines()[2:]]
    if table or interfaces != ["lo"]:
        return f"routes {table}, interfaces {interfaces}"
    raise ConnectionRefusedError("no route and no interface but lo")


attack("the LAN", routes)

# 4. Host secrets.
attack("read /etc/shadow", lambda: open("/etc/shadow").read()[:20])
attack("read /etc/ssl/private", lambda: os.listdir("/etc/ssl/private"))
attack("host accounts in /etc/passwd", lambda: nonempty(
    [l for l in open("/etc/passwd") if l.split(":")[0] not in ("root", targets["me"], "nobody")], "only mine"))

# 5. Privileges: become root; set a setuid binary in the home.
attack("setuid(0)", lambda: os.setuid(0) or "uid 0")
suid = os.path.join(home, "suid-shell")
shutil.copy("/bin/sh", suid)
os.chmod(suid, 0o4755)
print(f"made {suid} mode {oct(stat.S_IMODE(os.stat(suid).st_mode))} uid {os.getuid()}", flush=True)

# 6. `~/jobs` (where daas makes each job's output folder) becomes a link to the victim's
# home, for daas to follow with its own privileges at the next launch.
jobs = os.path.join(home, "jobs")
if not os.path.islink(jobs):
    os.rename(jobs, os.path.join(home, "jobs-before"))
    os.symlink(targets["paths"]["victim home"], jobs)

print("done", flush=True)
