"""How much memory this process may use and how much it holds, from /proc and the cgroup.

Shared by the batch job (`__main__.plan` sizes its blocks of rows) and the studio (whether a
scan fits in memory). Nothing here raises: a figure that cannot be read is left out.
"""

import os
import resource


def available_mib():
    """The memory available to this process (MiB), or None where nothing says.

    The smallest of the session's memory (`session_mib`) and what the machine has free
    (`free_mib`), so a container's limit counts.
    """
    candidates = [m for m in (session_mib(), free_mib()) if m is not None]
    return min(candidates) if candidates else None


def session_mib():
    """The session's memory (MiB), or None where nothing says: the smaller of what daas
    gives it ($DAAS_MEMORY_MIB, the flavour's; a sandbox may not show its cgroup) and the
    cgroup's limit (memory.max, or the v1 limit_in_bytes). It includes what this process
    holds already."""
    candidates = []
    env = os.environ.get("DAAS_MEMORY_MIB", "")
    if env.isdigit() and int(env) > 0:
        candidates.append(int(env))
    for path in _cgroup_limit_files():
        try:
            with open(path) as f:
                text = f.read().strip()
            if text.isdigit() and int(text) < 1 << 60:
                candidates.append(int(text) // (1024 * 1024))
        except OSError:
            pass
    return min(candidates) if candidates else None


def free_mib():
    """What the machine has free for new allocations (MemAvailable, /proc/meminfo, MiB), or
    None where there is no /proc."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _cgroup_limit_files():
    """The memory limit files of this process's cgroup and of each cgroup above it (v2
    memory.max, v1 memory.limit_in_bytes): a session's cgroup may sit below the root."""
    files = []
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            base, name = "/sys/fs/cgroup", "memory.max"
        elif "memory" in controllers.split(","):
            base, name = "/sys/fs/cgroup/memory", "memory.limit_in_bytes"
        else:
            continue
        parts = [p for p in path.split("/") if p]
        for depth in range(len(parts), -1, -1):
            files.append(os.path.join(base, *parts[:depth], name))
    return files


def rss_mib():
    """This process's resident memory now (MiB), from /proc; 0 where there is no /proc."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except OSError:
        return 0.0


def peak_rss_mib():
    """The peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_peak_rss_mib():
    """The peak resident memory of the largest child process waited for so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
