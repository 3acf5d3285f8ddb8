//! Scenario: crash safety of `init` and `reset` (issue 8, §6). `kubeboot init` is killed with
//! SIGKILL inside its own syscalls, then either the same init is run again (it resumes) or
//! `reset -f` cleans the node and init runs from scratch; both end in a healthy control plane
//! with one agent. `reset` is killed the same way; `reset -f` again finishes and leaves no
//! kubeboot process or file; init then works.
//!
//! How the kills are placed: strace's fault injection, `strace -e inject=<syscall>:signal=KILL:
//! when=N`, which kills the process on entry to the N-th call of that syscall (counted per
//! syscall and per traced thread: checked with a two-thread program). strace runs without
//! `-f`, so it traces kubeboot's main thread only: that thread does every file write, rename
//! and removal, and the count is not disturbed by the API client's worker threads (whose
//! socket writes are `write` calls too) nor by the processes init starts (the agent, whose
//! pods would otherwise run under strace). Where a count alone is not stable, `-P <path>`
//! restricts it to the calls that touch one path.
//!
//! Which calls: a reference init and reset, traced on the fresh node (`-y`: file descriptors
//! shown as paths), show what kubeboot really calls: `rename` (never `renameat2`) for each
//! atomic write, `write` (never `pwrite64`) for its bytes, `openat` for reads; reset removes
//! with `unlink` (its files), `unlinkat` (inside the directories it clears) and `rmdir` (the
//! directories it created). N is then chosen from that trace by the path the call acts on, so
//! the points stay where they are meant to be when init gains or loses a write:
//!
//! | init killed at                                       | why there                      | then          |
//! |------------------------------------------------------|--------------------------------|---------------|
//! | the 1st `rename` (the node record)                   | first write of all             | same init     |
//! | the `write` into the CA key's temporary              | inside a write: an empty temp  | reset + init  |
//! | the `rename` of `apiserver.crt`                      | its key is there, the cert not | same init     |
//! | the `write` into admin.conf's temporary              | inside a kubeconfig write      | reset + init  |
//! | init's first `openat` of the agent's node-id after it spawned the agent (`-P`) | the agent runs, init has not seen its pid file | same init |
//! | the `rename` of the kube-apiserver manifest          | agent, kubelet, containerd up; half the control plane | reset + init |
//! | init's first `openat` of admin.conf after the etcd manifest (`-P`) | the API phases start  | same init     |
//! | the last `rename` (kube-proxy's manifest)            | last write of all              | reset + init  |
//!
//! | reset killed at                          | why there                                         |
//! |------------------------------------------|---------------------------------------------------|
//! | the 1st `unlink` (the agent's pid file)  | the agent is stopped, its pods still run          |
//! | the `unlink` of `pki/ca.key`             | half of the files deleted                         |
//! | the 1st `unlinkat` in etcd's `member/snap` (`-P`) | inside clearing a directory: etcd's data half gone |
//! | the last `unlink` (the node record)      | everything else is gone, the record is not       |
//!
//! Each killed reset follows a recovered init (it is how the node is cleaned for the next
//! point), so the matrix costs about two inits per point (4-7 minutes on 2 cores).
//!
//! Checked at each point: the run died in the call it was meant to (its own trace); an agent
//! runs after a killed init exactly when init had spawned it; the re-run says it resumes
//! exactly when the kill came after the marker of an init under way, and says what it
//! replaced or excused; after every init `/livez` answers through admin.conf, one agent and
//! one API server and etcd run, and no write temporary is left; after every reset no
//! kubeboot, kube-*, kubelet, etcd, containerd or runc process and no kubeboot file is left.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tests::{Node, bin_dir, kubeboot_exe, require_root, step, wait_until};

/// Directories that hold kubeboot's files on a node; after reset none holds a file.
const KUBEBOOT_DIRS: &str = "/etc/kubernetes /etc/kubeboot /var/lib/etcd /var/lib/kubeboot /var/lib/kube-proxy /var/lib/kubelet /run/kubeboot";

/// Process names (`comm`) of what kubeboot runs on a node: the agent and its shims
/// (`kubeboot`), the control plane, kube-proxy, the kubelet, containerd and its shims.
const KUBEBOOT_PROCESSES: &[&str] = &["kubeboot", "kube-", "kubelet", "etcd", "containerd", "runc"];

/// A syscall trace written by `strace -o` (main thread only), one call per line.
struct Trace {
    calls: Vec<String>,
}

impl Trace {
    fn parse(text: &str) -> Trace {
        let calls = text
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_lowercase()) && l.contains('('))
            .map(str::to_string)
            .collect();
        Trace { calls }
    }

    fn syscall(line: &str) -> &str {
        line.split('(').next().unwrap_or_default()
    }

    /// The `when` of the first `syscall` call at or after line `from` whose line contains
    /// `needle`, counting only calls whose line contains `filter` (the `-P` path; all calls
    /// without one); with its line index.
    fn find(
        &self,
        syscall: &str,
        filter: Option<&str>,
        needle: &str,
        from: usize,
    ) -> Option<(usize, usize)> {
        let mut when = 0;
        for (i, line) in self.calls.iter().enumerate() {
            if Self::syscall(line) != syscall || filter.is_some_and(|f| !line.contains(f)) {
                continue;
            }
            when += 1;
            if i >= from && line.contains(needle) {
                return Some((when, i));
            }
        }
        None
    }

    /// The `when` of the last `syscall` call.
    fn last(&self, syscall: &str) -> Option<(usize, usize)> {
        let n = self
            .calls
            .iter()
            .filter(|l| Self::syscall(l) == syscall)
            .count();
        let i = self
            .calls
            .iter()
            .rposition(|l| Self::syscall(l) == syscall)?;
        (n > 0).then_some((n, i))
    }
}

/// One kill: the syscall, its count, the `-P` path that restricts the count, and what the
/// line of the killed call names (checked in the killed run's own trace).
#[derive(Debug, Clone)]
struct Kill {
    what: String,
    syscall: &'static str,
    when: usize,
    path: Option<String>,
    expect: String,
    /// The call's line in the reference trace.
    line: usize,
    /// What the init that resumes after this kill must say.
    resume_says: Vec<&'static str>,
}

impl Kill {
    fn new(what: &str, syscall: &'static str, (when, line): (usize, usize), expect: &str) -> Kill {
        Kill {
            what: what.to_string(),
            syscall,
            when,
            path: None,
            expect: expect.to_string(),
            line,
            resume_says: Vec::new(),
        }
    }

    fn on_path(mut self, path: &str) -> Kill {
        self.path = Some(path.to_string());
        self
    }

    fn says(mut self, text: &'static str) -> Kill {
        self.resume_says.push(text);
        self
    }
}

/// Where, in the reference init trace, init marks itself under way and spawns the agent.
struct Landmarks {
    marker: usize,
    spawn: usize,
}

/// How the node recovers from a killed init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    SameInit,
    ResetThenInit,
}

fn strace_file(node: &Node, tag: &str) -> String {
    format!("/tmp/kb-crash-{}-{tag}.strace", node.name())
}

/// Runs `kubeboot <args>` under strace inside the node (main thread only) and returns the
/// command's output and the trace.
fn traced(
    node: &Node,
    tag: &str,
    strace: &[&str],
    args: &[&str],
) -> Result<(tests::CmdOutput, String)> {
    let exe = kubeboot_exe()?;
    let exe = exe.to_string_lossy();
    let file = strace_file(node, tag);
    let mut argv = vec!["strace", "-o", file.as_str()];
    argv.extend_from_slice(strace);
    argv.push(exe.as_ref());
    argv.extend_from_slice(args);
    let out = node.exec(&argv)?;
    let trace = node.read_file(&file)?;
    node.exec_ok(&["rm", "-f", &file])?;
    Ok((out, trace))
}

/// Runs `kubeboot <args>` killed at `kill`; checks that it died there.
fn run_killed(node: &Node, kill: &Kill, args: &[&str]) -> Result<()> {
    let trace_set = format!("trace={}", kill.syscall);
    let inject = format!("inject={}:signal=KILL:when={}", kill.syscall, kill.when);
    let mut strace = vec!["-y", "-e", trace_set.as_str(), "-e", inject.as_str()];
    if let Some(p) = &kill.path {
        strace.extend_from_slice(&["-P", p.as_str()]);
    }
    let (out, trace) = traced(node, "kill", &strace, args)?;
    ensure!(
        trace.contains("+++ killed by SIGKILL +++"),
        "kubeboot {} was not killed at {kill:?}:\n{out}\n--- trace (last lines)\n{}",
        args.join(" "),
        tail(&trace, 5)
    );
    let calls = Trace::parse(&trace).calls;
    let last = calls.last().context("the killed run's trace has no call")?;
    ensure!(
        last.contains(&kill.expect),
        "killed in the wrong call (wanted {:?}): {last}",
        kill.expect
    );
    eprintln!("[crash] killed {} at: {}", args[0], truncate(last, 160));
    Ok(())
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn init_ok(node: &Node, args: &[&str]) -> Result<String> {
    let out = node.kubeboot_ok(args)?;
    ensure!(
        out.contains("Your Kubernetes control-plane has initialized successfully!"),
        "init output:\n{out}"
    );
    Ok(out)
}

/// The control plane answers through admin.conf, one agent runs it, no write temporary is
/// left.
fn healthy(node: &Node) -> Result<()> {
    wait_until(
        "/livez ok through admin.conf",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || Ok(node.kubectl(&["get", "--raw", "/livez"])?.stdout.trim() == "ok"),
    )?;
    let procs = node.processes()?;
    let agents: Vec<String> = procs
        .iter()
        .filter(|p| is_agent(p))
        .map(|p| format!("{} {}", p.pid, p.cmdline))
        .collect();
    ensure!(agents.len() == 1, "expected one agent, found {agents:#?}");
    for comm in ["kube-apiserver", "etcd"] {
        let n = procs.iter().filter(|p| p.comm == comm).count();
        ensure!(n == 1, "{comm} runs {n} times");
    }
    // The running agent's own state writes may be under way: only init's files are checked.
    let temps = node.sh_ok(&format!(
        "find {KUBEBOOT_DIRS} -name '.*.tmp' ! -path '/var/lib/kubeboot/agent/*' 2>/dev/null || true"
    ))?;
    ensure!(temps.trim().is_empty(), "write temporaries left:\n{temps}");
    Ok(())
}

/// Whether `p` is a kubeboot agent (not one of its shims).
fn is_agent(p: &tests::NodeProcess) -> bool {
    p.comm == "kubeboot" && p.cmdline.contains(" agent ") && !p.cmdline.contains(" shim ")
}

/// No kubeboot process and no kubeboot file left on the node.
fn clean(node: &Node) -> Result<()> {
    let left: Vec<String> = node
        .processes()?
        .into_iter()
        .filter(|p| KUBEBOOT_PROCESSES.iter().any(|c| p.comm.starts_with(c)))
        .map(|p| format!("{} {}", p.pid, p.cmdline))
        .collect();
    ensure!(left.is_empty(), "processes left after reset: {left:#?}");
    let files = node.sh_ok(&format!(
        "find {KUBEBOOT_DIRS} /etc/cni/net.d/10-kubeboot.conflist -mindepth 1 ! -type d ! -path /var/lib/kubeboot/e2e-init.yaml 2>/dev/null || true"
    ))?;
    ensure!(files.trim().is_empty(), "files left after reset:\n{files}");
    Ok(())
}

fn reset_clean(node: &Node) -> Result<()> {
    node.kubeboot_ok(&["reset", "-f"])?;
    clean(node)
}

/// The init kill points, chosen from the reference trace of a full init.
fn init_points(t: &Trace) -> Result<(Vec<(Kill, Recovery)>, Landmarks)> {
    use Recovery::*;
    let find = |sys: &str, needle: &str, from: usize| {
        t.find(sys, None, needle, from)
            .with_context(|| format!("no {sys} of {needle:?} in the reference init trace"))
    };
    let node_id = "/var/lib/kubeboot/agent/node-id";
    let (_, spawn) = find("rename", &format!("\"{node_id}\""), 0)?;
    let (_, marker) = find("rename", "/var/lib/kubeboot/init-in-progress\"", 0)?;
    let (_, etcd_manifest) = find("rename", "manifests/etcd.yaml\"", 0)?;
    let admin = "/etc/kubernetes/admin.conf";
    let kill_on_path = |what: &str, sys: &'static str, path: &str, from: usize| -> Result<Kill> {
        let quoted = format!("\"{path}\"");
        let at = t
            .find(sys, Some(&quoted), &quoted, from)
            .with_context(|| format!("no {sys} of {path} in the reference init trace"))?;
        Ok(Kill::new(what, sys, at, path).on_path(path))
    };
    // The reference is a node's first init, which also builds the kubeboot-dns image archive
    // (renames into /var/lib/kubeboot/images); the inits after a reset find the image in
    // containerd and build nothing, so a rename's count there is less by those renames.
    let after_first_init = |(when, line): (usize, usize)| {
        let archive = t.calls[..line]
            .iter()
            .filter(|l| Trace::syscall(l) == "rename" && l.contains("/var/lib/kubeboot/images/"))
            .count();
        (when - archive, line)
    };
    let points = vec![
        (
            Kill::new(
                "the first rename",
                "rename",
                find("rename", "", 0)?,
                "rename(",
            ),
            SameInit,
        ),
        (
            Kill::new(
                "inside the CA key's write",
                "write",
                find("write", "/.ca.key.", 0)?,
                "/.ca.key.",
            ),
            ResetThenInit,
        ),
        (
            Kill::new(
                "the apiserver.crt rename",
                "rename",
                find("rename", "pki/apiserver.crt\"", 0)?,
                "pki/apiserver.crt\"",
            )
            .says("Replacing \"/etc/kubernetes/pki/apiserver.key\""),
            SameInit,
        ),
        (
            Kill::new(
                "inside admin.conf's write",
                "write",
                find("write", "/.admin.conf.", 0)?,
                "/.admin.conf.",
            ),
            ResetThenInit,
        ),
        (
            kill_on_path(
                "right after the agent was spawned",
                "openat",
                node_id,
                spawn + 1,
            )?,
            SameInit,
        ),
        (
            Kill::new(
                "the kube-apiserver manifest rename",
                "rename",
                after_first_init(find("rename", "manifests/kube-apiserver.yaml\"", 0)?),
                "manifests/kube-apiserver.yaml\"",
            ),
            ResetThenInit,
        ),
        (
            kill_on_path(
                "as the API phases start",
                "openat",
                admin,
                etcd_manifest + 1,
            )?
            .says("[WARNING Port-6443]: Port 6443 is in use; held by a Pod of the kubeboot agent")
            .says("kube-apiserver.yaml already exists; left by the interrupted init"),
            SameInit,
        ),
        (
            Kill::new(
                "the last rename",
                "rename",
                after_first_init(
                    t.last("rename")
                        .context("no rename in the reference init trace")?,
                ),
                "rename(",
            ),
            ResetThenInit,
        ),
    ];
    Ok((points, Landmarks { marker, spawn }))
}

/// The reset kill points, chosen from the reference trace of a full reset.
fn reset_points(t: &Trace) -> Result<Vec<Kill>> {
    let find = |sys: &str, needle: &str| {
        t.find(sys, None, needle, 0)
            .with_context(|| format!("no {sys} of {needle:?} in the reference reset trace"))
    };
    Ok(vec![
        Kill::new("the first unlink", "unlink", find("unlink", "")?, "unlink("),
        Kill::new(
            "the unlink of ca.key",
            "unlink",
            find("unlink", "pki/ca.key\"")?,
            "pki/ca.key\"",
        ),
        // Counted on the calls whose directory is etcd's snap/ (`-P` matches the dirfd): the
        // order of entries in a directory, and so the count of all unlinkat, varies.
        Kill::new(
            "inside clearing etcd's data",
            "unlinkat",
            (1, 0),
            "unlinkat(",
        )
        .on_path("/var/lib/etcd/member/snap"),
        Kill::new(
            "the last unlink",
            "unlink",
            t.last("unlink")
                .context("no unlink in the reference reset trace")?,
            "unlink(",
        ),
    ])
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn crash_safety() -> Result<()> {
    step("running as root", require_root)?;
    let bin = step("real binaries present", bin_dir)?;
    let bin = bin.to_string_lossy().to_string();
    let node = step("create node", || Node::allocate("crash-safety"))?;
    step("strace is installed", || {
        let out = node.exec(&["strace", "-V"])?;
        if !out.success() {
            bail!("strace is missing; {}", tests::env::SETUP_HINT);
        }
        Ok(())
    })?;
    let args = crate::init_single_node::init_args_for(&node, &bin, None)?;
    let init: Vec<&str> = args.iter().map(String::as_str).collect();
    let reset = ["reset", "-f"];

    let init_trace = step("reference: a full init, traced", || {
        let (out, trace) = traced(
            &node,
            "ref-init",
            &["-y", "-e", "trace=rename,write,openat"],
            &init,
        )?;
        out.ok()?;
        healthy(&node)?;
        Ok(Trace::parse(&trace))
    })?;
    let reset_trace = step("reference: a full reset, traced", || {
        let (out, trace) = traced(
            &node,
            "ref-reset",
            &["-e", "trace=unlink,unlinkat,rmdir"],
            &reset,
        )?;
        out.ok()?;
        clean(&node)?;
        Ok(Trace::parse(&trace))
    })?;
    let (init_points, landmarks) = init_points(&init_trace)?;
    let mut reset_points = reset_points(&reset_trace)?.into_iter();
    eprintln!("[crash] init kill points: {init_points:#?}");

    let total = init_points.len();
    for (i, (kill, recovery)) in init_points.into_iter().enumerate() {
        let n = i + 1;
        step(
            &format!(
                "init {n}/{total} killed at {} ({} #{})",
                kill.what, kill.syscall, kill.when
            ),
            || {
                run_killed(&node, &kill, &init)?;
                // The agent runs from the moment init spawned it, whatever became of init.
                let agent = node.processes()?.iter().any(is_agent);
                ensure!(
                    agent == (kill.line > landmarks.spawn),
                    "after a kill at line {} of the reference (the agent is spawned at {}): agent running = {agent}",
                    kill.line,
                    landmarks.spawn
                );
                Ok(())
            },
        )?;
        match recovery {
            Recovery::SameInit => step(
                &format!("init {n}/{total}: the same init again resumes"),
                || {
                    let out = init_ok(&node, &init)?;
                    let resumed = out.contains("An earlier init of this node was interrupted");
                    ensure!(
                        resumed == (kill.line > landmarks.marker),
                        "resumed = {resumed} after a kill at line {} of the reference (the marker is written at {}):\n{out}",
                        kill.line,
                        landmarks.marker
                    );
                    for want in &kill.resume_says {
                        ensure!(
                            out.contains(want),
                            "the resumed init does not say {want:?}:\n{out}"
                        );
                    }
                    healthy(&node)
                },
            )?,
            Recovery::ResetThenInit => {
                step(&format!("init {n}/{total}: reset -f, then init"), || {
                    reset_clean(&node)?;
                    init_ok(&node, &init)?;
                    healthy(&node)
                })?
            }
        }
        if n == total {
            break;
        }
        match reset_points.next() {
            Some(kill) => step(
                &format!(
                    "reset killed at {} ({} #{}), then reset -f",
                    kill.what, kill.syscall, kill.when
                ),
                || {
                    run_killed(&node, &kill, &reset)?;
                    reset_clean(&node)
                },
            )?,
            None => step("reset -f", || reset_clean(&node))?,
        }
    }

    step(
        "a completed init is refused by a second init, with the reset hint",
        || {
            let out = node.kubeboot(&init)?;
            ensure!(out.code == Some(1), "second init:\n{out}");
            ensure!(
                out.stderr
                    .contains("run \"kubeboot reset -f\" to start over"),
                "no reset hint:\n{out}"
            );
            healthy(&node)
        },
    )?;
    step("reset -f leaves nothing", || reset_clean(&node))?;
    node.destroy()
}
