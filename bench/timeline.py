#!/usr/bin/env python3
"""Runs one `init` (kubeboot's or kubeadm's) inside a namespace node and records, on one clock
(this process's time.time(), the start of init being 0), when each milestone of a node's
bring-up happened. Runs inside the node (bench/kubeadm_vs_kubeboot.sh enters it); prints one
JSON object as its last line: {milestone: seconds since init started, or null}.

Milestones and where they come from:
  certs          the first `[kubeconfig]` line of init's output (the certs phase is done)
  api-readyz     the API server's /readyz answers 200 (polled)
  init-returned  the init process exited (0, else this script fails)
  registered     GET /api/v1/nodes/<node> answers 200 (polled)
  pod-cidr       the Node's spec.podCIDR is set (polled)
  cni-config     the mtime of the newest *.conflist/*.conf in the CNI directory, once one
                 exists (a file present before init is reported as null: written beforehand)
  ready          the Node's Ready condition is True (polled)
  pod-1, pod-2   the first / both pods Running of a 2-replica Deployment of the web image,
                 created (after removing the control-plane taint) the moment init returns
Polling runs at 10 Hz over one kept-alive HTTPS connection with admin.conf's client
certificate (from the moment admin.conf exists); init's output lines are time-stamped as they
arrive and copied to --log, and so is each new reason the Node's Ready condition gives until it
is True (`[timeline] Node Ready=False KubeletNotReady: ...`). Every wait is bounded by
--timeout."""
import argparse, base64, http.client, json, os, ssl, subprocess, sys, tempfile, threading, time

START = time.time()


def since():
    return round(time.time() - START, 2)


def kubeconfig_tls(path, tmp):
    """(server host, port, ssl context) from a kubeconfig's embedded data (client-go's field
    names, as kubeadm and kubeboot write them)."""
    text = open(path).read()
    fields = {}
    for line in text.splitlines():
        k, _, v = line.strip().partition(":")
        if k in ("certificate-authority-data", "client-certificate-data", "client-key-data", "server"):
            fields.setdefault(k, v.strip())
    files = {}
    for k in ("certificate-authority-data", "client-certificate-data", "client-key-data"):
        p = os.path.join(tmp, k)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64decode(fields[k]))
        files[k] = p
    ctx = ssl.create_default_context(cafile=files["certificate-authority-data"])
    ctx.check_hostname = False
    ctx.load_cert_chain(files["client-certificate-data"], files["client-key-data"])
    server = fields["server"].removeprefix("https://").rstrip("/")
    host, _, port = server.rpartition(":")
    return host.strip("[]"), int(port), ctx


class Api:
    """One kept-alive connection; any failure drops it and the next call reconnects."""

    def __init__(self, host, port, ctx):
        self.host, self.port, self.ctx, self.conn = host, port, ctx, None

    def get(self, path):
        try:
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=2)
            self.conn.request("GET", path)
            r = self.conn.getresponse()
            body = r.read()
            return r.status, body
        except (OSError, http.client.HTTPException):
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return None, b""


def newest_cni_mtime(d):
    try:
        names = [n for n in os.listdir(d) if n.endswith((".conflist", ".conf")) and not n.startswith(".")]
    except OSError:
        return None
    times = [os.stat(os.path.join(d, n)).st_mtime for n in names]
    return max(times) if times else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", required=True)
    ap.add_argument("--kubeconfig", default="/etc/kubernetes/admin.conf")
    ap.add_argument("--kubectl", required=True)
    ap.add_argument("--cni-dir", default="/etc/cni/net.d")
    ap.add_argument("--image", default="kubeboot.local/web:1")
    ap.add_argument("--log", required=True)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("cmd", nargs="+")
    a = ap.parse_args()

    m = {k: None for k in ("certs", "api-readyz", "init-returned", "registered", "pod-cidr",
                           "cni-config", "ready", "pod-1", "pod-2")}
    cni_before = newest_cni_mtime(a.cni_dir)
    log = open(a.log, "w")
    proc = subprocess.Popen(a.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)

    def read_output():
        for line in proc.stdout:
            t = since()
            log.write(f"{t:7.2f} {line}")
            log.flush()
            if m["certs"] is None and line.startswith("[kubeconfig]"):
                m["certs"] = t

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    tmp = tempfile.mkdtemp()
    api = None
    last_ready = None
    deployed = False
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        tick = time.monotonic()
        if m["init-returned"] is None and proc.poll() is not None:
            m["init-returned"] = since()
            reader.join(5)
            if proc.returncode != 0:
                print(json.dumps({"error": f"init exited {proc.returncode}", **m}))
                sys.exit(1)
        if api is None and os.path.exists(a.kubeconfig):
            try:
                api = Api(*kubeconfig_tls(a.kubeconfig, tmp))
            except (OSError, KeyError, ValueError, ssl.SSLError):
                api = None  # half written: next tick
        if m["cni-config"] is None and cni_before is None:
            t = newest_cni_mtime(a.cni_dir)
            if t is not None:
                m["cni-config"] = round(t - START, 2)
        if api is not None:
            if m["api-readyz"] is None:
                status, _ = api.get("/readyz")
                if status == 200:
                    m["api-readyz"] = since()
            if m["api-readyz"] is not None and (m["ready"] is None or m["pod-cidr"] is None):
                status, body = api.get(f"/api/v1/nodes/{a.node}")
                if status == 200:
                    t = since()
                    node = json.loads(body)
                    m["registered"] = m["registered"] or t
                    if m["pod-cidr"] is None and node.get("spec", {}).get("podCIDR"):
                        m["pod-cidr"] = t
                    conds = node.get("status", {}).get("conditions") or []
                    ready = next((c for c in conds if c.get("type") == "Ready"), None)
                    # Why the Node is not Ready yet, each time the kubelet says something new.
                    said = ready and f'Ready={ready.get("status")} {ready.get("reason")}: {ready.get("message")}'
                    if said and said != last_ready:
                        last_ready = said
                        log.write(f"{t:7.2f} [timeline] Node {said}\n")
                        log.flush()
                    if m["ready"] is None and ready and ready.get("status") == "True":
                        m["ready"] = t
        if m["init-returned"] is not None and not deployed:
            kc = [a.kubectl, "--kubeconfig", a.kubeconfig]
            subprocess.run(kc + ["taint", "nodes", "--all", "node-role.kubernetes.io/master-"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            subprocess.run(kc + ["create", "deployment", "web", f"--image={a.image}", "--replicas=2"],
                           check=True, stdout=subprocess.DEVNULL)
            deployed = True
        if deployed and m["pod-2"] is None:
            status, body = api.get("/api/v1/namespaces/default/pods?labelSelector=app%3Dweb")
            if status == 200:
                running = sum(1 for p in json.loads(body).get("items", [])
                              if p.get("status", {}).get("phase") == "Running")
                t = since()
                if running >= 1 and m["pod-1"] is None:
                    m["pod-1"] = t
                if running >= 2:
                    m["pod-2"] = t
        if all(v is not None for k, v in m.items() if k != "cni-config") and (
                m["cni-config"] is not None or cni_before is not None):
            break
        time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    missing = [k for k, v in m.items() if v is None and not (k == "cni-config" and cni_before is not None)]
    if proc.poll() is None:
        proc.kill()
    if missing:
        print(json.dumps({"error": f"timed out after {a.timeout:.0f}s waiting for {', '.join(missing)}", **m}))
        sys.exit(1)
    print(json.dumps(m))


if __name__ == "__main__":
    main()
