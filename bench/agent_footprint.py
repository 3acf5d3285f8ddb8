#!/usr/bin/env python3
"""The memory and CPU of processes, for bench/agent_footprint.sh (run as root, on the host:
test nodes share the host's PID namespace).

  agent_footprint.py sample <pid>...            one JSON object per pid (memory, CPU ticks)
  agent_footprint.py smaps <pid>                where a process's resident memory is
  agent_footprint.py shims <agent pid> <exe>    PIDs of the agent's container shims
  agent_footprint.py child <shim pid>           the container process under a shim
  agent_footprint.py folios <pid>               the page-cache folios its executable's
                                                resident code is mapped in

Memory comes from /proc/<pid>/status (VmRSS = RssAnon + RssFile + RssShmem, VmHWM: the
peak) and /proc/<pid>/smaps_rollup (Pss: each shared page divided by its sharers). CPU is
utime + stime of /proc/<pid>/stat, in clock ticks.
"""

import json
import os
import sys


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "VmSize"):
                out[key] = int(value.split()[0])
            elif key == "Threads":
                out[key] = int(value)
    return out


def rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Pss", "Pss_Anon", "Pss_File", "Private_Dirty", "Shared_Clean"):
                out[key] = int(value.split()[0])
    return out


def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        # The command may hold spaces and parentheses: fields start after the last ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


def sample(pid):
    s = {"pid": int(pid), "ticks": ticks(pid)}
    s.update(status(pid))
    s.update(rollup(pid))
    return s


def mappings(pid):
    """(header fields, {field: kB}) per mapping of /proc/<pid>/smaps."""
    maps = []
    with open(f"/proc/{pid}/smaps") as f:
        current = None
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if not parts[0].endswith(":") or "-" in parts[0]:
                current = (parts, {})
                maps.append(current)
            elif current is not None and len(parts) >= 2 and parts[1].isdigit():
                current[1][parts[0].rstrip(":")] = int(parts[1])
    return maps


def stack_pointers(pid):
    """Each thread's stack pointer, from /proc/<pid>/task/<tid>/syscall ("nr args... sp pc";
    a thread that is running has no sample and is left out)."""
    sps = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                parts = f.read().split()
        except OSError:
            continue
        if len(parts) >= 3 and parts[-2].startswith("0x"):
            sps.append(int(parts[-2], 16))
    return sps


def smaps(pid):
    exe = os.readlink(f"/proc/{pid}/exe")
    sps = stack_pointers(pid)
    groups = {}
    for header, fields in mappings(pid):
        perms = header[1]
        path = header[5] if len(header) > 5 else ""
        start, end = (int(x, 16) for x in header[0].split("-"))
        has_stack = any(start <= sp < end for sp in sps)
        if path == exe:
            kind = {"r-xp": "exe text", "r--p": "exe rodata/relro", "rw-p": "exe data"}.get(
                perms, f"exe {perms}")
        elif has_stack and path in ("", "[stack]"):
            kind = "thread stacks"
        elif path == "[heap]":
            kind = "heap (brk)"
        elif path.startswith("["):
            kind = path
        elif path:
            kind = f"lib {os.path.basename(path)}"
        else:
            kind = "anon (malloc arenas, mmap)"
        g = groups.setdefault(kind, {"n": 0, "Size": 0, "Rss": 0, "Pss": 0, "Anonymous": 0})
        g["n"] += 1
        for k in ("Size", "Rss", "Pss", "Anonymous"):
            g[k] += fields.get(k, 0)
    print(f"   {'mapping':<34} {'n':>3} {'size kB':>9} {'RSS kB':>8} {'PSS kB':>8} {'anon kB':>8}")
    for kind, g in sorted(groups.items(), key=lambda kv: -kv[1]["Rss"]):
        if g["Rss"] == 0:
            continue
        print(f"   {kind:<34} {g['n']:>3} {g['Size']:>9} {g['Rss']:>8} {g['Pss']:>8} {g['Anonymous']:>8}")


def shims(agent_pid, exe):
    """Processes running `<exe> agent shim` in the agent's mount namespace."""
    mnt = os.readlink(f"/proc/{agent_pid}/ns/mnt")
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            if argv[1:3] != [b"agent", b"shim"]:
                continue
            if os.readlink(f"/proc/{d}/ns/mnt") != mnt:
                continue
            if os.path.realpath(f"/proc/{d}/exe") != os.path.realpath(exe):
                continue
            found.append(int(d))
        except OSError:
            continue
    print(" ".join(str(p) for p in sorted(found)))


def child(pid):
    """The one child of a container's shim (the shim itself when it is not a shim)."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    if argv[1:3] == [b"agent", b"shim"]:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
        if len(kids) != 1:
            sys.exit(f"shim {pid} has {len(kids)} children, not one container")
        pid = kids[0]
    print(pid)


def folios(pid):
    """How the resident pages of the process's executable code sit in page-cache folios
    (/proc/<pid>/pagemap for each page's frame, /proc/kpageflags for whether it heads a
    compound page). A touched page maps its whole folio: with 64 KiB folios, code run once
    every few seconds anywhere in a 64 KiB block makes the whole block resident, so the
    executable's RSS follows how the code the process runs is spread over its text."""
    import struct
    exe = os.readlink(f"/proc/{pid}/exe")
    tail = 1 << 16  # KPF_COMPOUND_TAIL
    runs, current = [], 0
    try:
        with open(f"/proc/{pid}/pagemap", "rb") as pm, open("/proc/kpageflags", "rb") as kf:
            for line in open(f"/proc/{pid}/maps"):
                parts = line.split()
                if len(parts) < 6 or parts[5] != exe or parts[1] != "r-xp":
                    continue
                start, end = (int(x, 16) for x in parts[0].split("-"))
                n = (end - start) // 4096
                pm.seek(start // 4096 * 8)
                data = pm.read(n * 8)
                for i in range(n):
                    (entry,) = struct.unpack_from("<Q", data, i * 8)
                    if not entry >> 63:
                        if current:
                            runs.append(current)
                        current = 0
                        continue
                    kf.seek((entry & ((1 << 55) - 1)) * 8)
                    (flags,) = struct.unpack("<Q", kf.read(8))
                    # A head page or a page of its own starts a folio; a tail continues it.
                    if not flags & tail and current:
                        runs.append(current)
                        current = 0
                    current += 1
            if current:
                runs.append(current)
    except OSError as e:
        print(f"   (folios not readable: {e})")
        return
    sizes = {}
    for r in runs:
        sizes[r * 4] = sizes.get(r * 4, 0) + 1
    shown = ", ".join(f"{n} x {kb} kB" for kb, n in sorted(sizes.items(), reverse=True))
    print(f"   resident code: {sum(runs) * 4} kB in {len(runs)} folios ({shown})")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "sample":
        for pid in args:
            print(json.dumps(sample(pid)))
    elif cmd == "smaps":
        smaps(args[0])
    elif cmd == "child":
        child(args[0])
    elif cmd == "shims":
        shims(args[0], args[1])
    elif cmd == "folios":
        folios(args[0])
    else:
        sys.exit(f"unknown command {cmd!r} (sample, smaps, shims, child, folios)")


if __name__ == "__main__":
    main()
