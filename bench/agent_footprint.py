#!/usr/bin/env python3
"""The memory and CPU of processes, for bench/agent_footprint.sh (run as root, on the host:
test nodes share the host's PID namespace).

  agent_footprint.py sample <pid>...            one JSON object per pid (memory, CPU ticks)
  agent_footprint.py smaps <pid>                where a process's resident memory is
  agent_footprint.py shims <agent pid> <exe>    PIDs of the agent's container shims
  agent_footprint.py child <shim pid>           the container process under a shim
  agent_footprint.py folios <pid>               the page-cache folios its executable's
                                                resident code is mapped in
  agent_footprint.py evict <file> <pid>...      takes <file>'s pages out of the processes
                                                and out of the page cache
  agent_footprint.py pages <file>               the pages of <file> in the page cache
  agent_footprint.py order <exe> <list>         how much of the hot-code list <exe> links
                                                first
  agent_footprint.py hot <exe> <pages file>     the functions of <exe> on those pages, in
                                                the executable's order

Memory comes from /proc/<pid>/status (VmRSS = RssAnon + RssFile + RssShmem, VmHWM: the
peak) and /proc/<pid>/smaps_rollup (Pss: each shared page divided by its sharers). CPU is
utime + stime of /proc/<pid>/stat, in clock ticks, and the scheduler's run time of its threads
(/proc/<pid>/task/*/schedstat), in nanoseconds.
"""

import json
import os
import sys
import time


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


def run_ns(pid):
    """The time the process's threads have run on a CPU, in nanoseconds: the first field of
    /proc/<pid>/task/<tid>/schedstat (the scheduler's sum_exec_runtime), exact where utime +
    stime count 10 ms ticks (12 of them in 2 minutes at 0.1 %)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended between the listing and the read
    return total


def sample(pid):
    s = {"pid": int(pid), "ticks": ticks(pid), "run_ns": run_ns(pid), "at": time.monotonic()}
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
    compound page). A fault maps the cached pages around the touched one too (the aligned
    64 KiB around it, mm/memory.c do_fault_around; a large folio is mapped whole), so code
    run once every few seconds anywhere in a 64 KiB block makes the whole block resident:
    the executable's RSS follows how the code the process runs is spread over its text."""
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


def evict(pids, path):
    """Takes `path`'s pages out of processes `pids` and out of the page cache: stops them
    (SIGSTOP), has the kernel page out every mapping they have of the file (process_madvise(2)
    MADV_PAGEOUT: unmapped, and dropped from the page cache once nothing maps them), drops
    what else of the file is cached (POSIX_FADV_DONTNEED) and lets them go on (SIGCONT).
    The kernel pages out only pages that one process maps alone (mm/madvise.c): pages that
    two of them map stay, and are counted (printed). Apart from those, what of the file is
    cached afterwards is what they touched since."""
    import ctypes
    import signal
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    sys_pidfd_open, sys_process_madvise, madv_pageout = 434, 440, 21

    class Iovec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    st = os.stat(path)
    # A mapping names its file by device (major:minor, hex) and inode.
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    stopped = []
    try:
        for pid in pids:
            pidfd = libc.syscall(sys_pidfd_open, pid, 0)
            if pidfd < 0:
                sys.exit(f"pidfd_open {pid}: {os.strerror(ctypes.get_errno())}")
            os.kill(pid, signal.SIGSTOP)
            stopped.append((pid, pidfd))
        for pid, pidfd in stopped:
            with open(f"/proc/{pid}/maps") as f:
                ranges = [tuple(int(x, 16) for x in p[0].split("-"))
                          for p in map(str.split, f)
                          if len(p) >= 6 and p[3] == device and int(p[4]) == st.st_ino]
            for start, end in ranges:
                while start < end:
                    v = Iovec(start, end - start)
                    n = libc.syscall(sys_process_madvise, pidfd, ctypes.byref(v), 1,
                                     madv_pageout, 0)
                    if n < 0:
                        sys.exit(f"process_madvise {pid}: {os.strerror(ctypes.get_errno())}")
                    if n == 0:
                        break
                    start += n
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        left = len(cached_pages(path))
    finally:
        for pid, pidfd in stopped:
            os.kill(pid, signal.SIGCONT)
            os.close(pidfd)
    print(f"   {left} pages of {path} left in the page cache (mapped by more than one of them)")


def cached_pages(path):
    """The indexes of `path`'s 4 KiB pages in the page cache (mincore(2) over a private
    mapping, which reports the file's pages until one is written)."""
    import ctypes
    import mmap
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        m = mmap.mmap(fd, size, access=mmap.ACCESS_COPY)
    finally:
        os.close(fd)
    n = (size + 4095) // 4096
    vec = (ctypes.c_ubyte * n)()
    buf = ctypes.c_char.from_buffer(m)
    r = libc.mincore(ctypes.c_void_p(ctypes.addressof(buf)), ctypes.c_size_t(size), vec)
    del buf
    m.close()
    if r != 0:
        sys.exit(f"mincore {path}: {os.strerror(ctypes.get_errno())}")
    return [i for i in range(n) if vec[i] & 1]


def functions(exe):
    """The text symbols (functions) of `exe` as (address, size, name as the linker names
    them), in address order."""
    import subprocess
    rows = []
    for line in subprocess.run(["nm", "-S", "--defined-only", exe], capture_output=True,
                               text=True, check=True).stdout.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tTwW":
            rows.append((int(p[0], 16), int(p[1], 16), p[3]))
    return sorted(rows)


def hot(exe, pages_file):
    """The functions (text symbols, as the linker names them) of `exe` that lie on the
    executable pages listed in `pages_file` (page indexes of the file), in address order.
    Made for an executable whose functions each start a page of their own: a page then
    names one function."""
    import bisect
    import subprocess
    pages = {int(x) for x in open(pages_file).read().split()}
    segments = []
    for line in subprocess.run(["readelf", "-lW", exe], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        p = line.split()
        if p and p[0] == "LOAD" and "E" in p[6:-1]:
            segments.append((int(p[1], 16), int(p[2], 16), int(p[4], 16)))
    symbols = [(start, max(length, 1), name) for start, length, name in functions(exe)]
    starts = [s[0] for s in symbols]
    found, text_pages = {}, 0
    for offset, vaddr, size in segments:
        for page in sorted(pages):
            if not offset <= page * 4096 < offset + size:
                continue
            text_pages += 1
            lo = vaddr + page * 4096 - offset
            i = max(bisect.bisect_right(starts, lo) - 1, 0)
            while i < len(symbols) and symbols[i][0] < lo + 4096:
                start, length, name = symbols[i]
                if start + length > lo:
                    found[name] = start
                i += 1
    lengths = {name: length for _, length, name in symbols}
    size = sum(lengths[n] for n in found)
    print(f"   {text_pages} code pages touched: {len(found)} functions, {size / 1024:.0f} kB "
          "in the profiling executable", file=sys.stderr)
    for name, _ in sorted(found.items(), key=lambda kv: kv[1]):
        print(name)


def order(exe, list_file):
    """How much of the hot-code list (cmd/link/agent-hot-code.txt) `exe` links first: the
    listed functions it has, and the span of the text they take from its start."""
    wanted = {line.strip() for line in open(list_file) if line.strip()}
    rows = functions(exe)
    if not rows:
        print("   hot code: the executable has no symbols to check the order with")
        return
    # Linked first, the listed functions end that far into the text; unlisted, they are
    # spread over all of it.
    have = [r for r in rows if r[2] in wanted]
    size = sum(r[1] for r in have)
    span = max((r[0] + r[1] for r in have), default=rows[0][0]) - rows[0][0]
    print(f"   hot code: {len({r[2] for r in have})} of the {len(wanted)} listed functions are in the executable, "
          f"{size / 1024:.0f} kB within its first {span / 1024:.0f} kB of text")


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
    elif cmd == "evict":
        evict([int(p) for p in args[1:]], args[0])
    elif cmd == "order":
        order(args[0], args[1])
    elif cmd == "pages":
        print("\n".join(map(str, cached_pages(args[0]))))
    elif cmd == "hot":
        hot(args[0], args[1])
    else:
        sys.exit(f"unknown command {cmd!r} (sample, smaps, shims, child, folios, "
                 "evict, pages, hot, order)")


if __name__ == "__main__":
    main()
