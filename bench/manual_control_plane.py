#!/usr/bin/env python3
"""Starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler by hand, with the
exact commands of the static pod manifests in /etc/kubernetes/manifests, and prints how long it
takes until every one answers its health endpoint (the probe URL from its manifest). Runs
inside a namespace node (bench/run.sh enters it); stops the processes afterwards. Bounded: gives
up after 120 s.

With --watch it starts nothing: it waits for the four manifests to appear (kubeboot init
writing them) and prints how long after its own start every one answers, so that started just
before `kubeboot init` it times init's own way to a healthy control plane by the same URLs."""
import argparse, os, re, signal, ssl, subprocess, sys, time, urllib.request

MANIFESTS = "/etc/kubernetes/manifests"


def parse(path):
    """The command list and the first httpGet probe of a kubeboot/kubeadm manifest (the YAML
    these write: block lists, one item a line)."""
    lines = open(path).read().splitlines()
    cmd, probe, i = [], {}, 0
    while i < len(lines):
        line = lines[i]
        if re.match(r"^\s*(- )?command:\s*$", line):
            indent = None
            i += 1
            while i < len(lines):
                m = re.match(r"^(\s*)- (.*)$", lines[i])
                if not m or (indent is not None and len(m.group(1)) != indent):
                    break
                indent = len(m.group(1))
                cmd.append(m.group(2).strip().strip('"').strip("'"))
                i += 1
            continue
        if re.match(r"^\s*httpGet:\s*$", line) and not probe:
            j = i + 1
            base = len(line) - len(line.lstrip())
            while j < len(lines) and len(lines[j]) - len(lines[j].lstrip()) > base:
                k, _, v = lines[j].strip().partition(":")
                probe[k] = v.strip()
                j += 1
        i += 1
    host = probe.get("host") or "127.0.0.1"
    url = f"{probe.get('scheme', 'HTTP').lower()}://{host}:{probe['port']}{probe.get('path', '/')}"
    return cmd, url


def healthy(url):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=1, context=ctx) as r:
            return r.status < 400
    except Exception:
        return False


NAMES = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]


def watch():
    start = time.monotonic()
    pending = {}
    while time.monotonic() - start < 120:
        for name in NAMES:
            path = os.path.join(MANIFESTS, name + ".yaml")
            if name not in pending and os.path.isfile(path):
                try:
                    pending[name] = parse(path)[1]
                except (KeyError, OSError):
                    pass  # being written: read it again on the next round
        for n in [n for n, u in pending.items() if u and healthy(u)]:
            pending[n] = None
        if len(pending) == len(NAMES) and not any(pending.values()):
            print(f"{time.monotonic() - start:.3f}")
            return
        time.sleep(0.05)
    print("never healthy:", ", ".join(n for n in NAMES if pending.get(n, True)), file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", action="append", default=[])
    ap.add_argument("--watch", action="store_true")
    args = ap.parse_args()
    if args.watch:
        watch()
        return
    dirs = args.bin_dir + ["/usr/local/bin", "/usr/bin"]
    pods = {}
    for name in ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]:
        cmd, url = parse(os.path.join(MANIFESTS, name + ".yaml"))
        exe = next(os.path.join(d, cmd[0]) for d in dirs if os.path.isfile(os.path.join(d, cmd[0])))
        pods[name] = ([exe] + cmd[1:], url)
    procs = []
    start = time.monotonic()
    for name, (cmd, _) in pods.items():
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    pending = {n: u for n, (_, u) in pods.items()}
    try:
        while pending and time.monotonic() - start < 120:
            for n in [n for n, u in pending.items() if healthy(u)]:
                del pending[n]
            time.sleep(0.05)
        took = time.monotonic() - start
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)
    if pending:
        print("never healthy:", ", ".join(pending), file=sys.stderr)
        sys.exit(1)
    print(f"{took:.3f}")


if __name__ == "__main__":
    main()
