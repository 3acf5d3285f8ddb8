//! The agent as a process of its own (`kubeboot-test-agent` on a temp layout): one agent per
//! node, found and stopped whatever happened to its pid file, explicit file modes whatever
//! the umask, a status socket only root reads, and its own log rotated.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Node, StopAgent, alive, pod, test_agent, test_agent_args, wait_until};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn spawn_agent(n: &Node) -> Child {
    Command::new(test_agent())
        .args(test_agent_args(n))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn status_answers(n: &Node) {
    wait_until("the status socket answers", || {
        agent::query(&n.cfg.socket(), Duration::from_secs(2)).ok()
    });
}

/// Waits (bounded) for `n` of `agents` to exit; returns the ones that still run.
fn wait_exits(agents: Vec<Child>, n: usize) -> (Vec<Child>, Vec<(Child, String)>) {
    let (mut running, mut exited) = (agents, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(15);
    while exited.len() < n {
        assert!(
            Instant::now() < deadline,
            "{} agents still run on one node after 15s",
            running.len()
        );
        let mut still = Vec::new();
        for mut a in running {
            match a.try_wait().unwrap() {
                Some(status) => {
                    assert!(!status.success());
                    let mut err = String::new();
                    std::io::Read::read_to_string(a.stderr.as_mut().unwrap(), &mut err).unwrap();
                    exited.push((a, err));
                }
                None => still.push(a),
            }
        }
        running = still;
        std::thread::sleep(Duration::from_millis(20));
    }
    (running, exited)
}

#[test]
fn two_agents_started_at_once_leave_exactly_one() {
    let n = Node::new("v1.20.2");
    let _stop = StopAgent(&n.layout);
    let agents = vec![spawn_agent(&n), spawn_agent(&n), spawn_agent(&n)];
    // All but one give up at once, naming the one that runs.
    let (mut running, exited) = wait_exits(agents, 2);
    assert_eq!(running.len(), 1);
    let winner = running[0].id();
    // The winner serves, wrote its own pid file, and is the node's agent.
    status_answers(&n);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        running[0].try_wait().unwrap().is_none(),
        "the winner exited"
    );
    assert_eq!(n.status().agent_pid, winner);
    let pid_file = std::fs::read_to_string(n.layout.agent_pid_file()).unwrap();
    assert_eq!(
        pid_file.split_whitespace().next(),
        Some(&*winner.to_string())
    );
    assert_eq!(agent::is_running(&n.layout), Some(winner));
    // /run cleared (its socket and pid file gone): a new agent is refused all the same.
    std::fs::remove_dir_all(n.layout.run_dir()).unwrap();
    let (_, late) = wait_exits(vec![spawn_agent(&n)], 1);
    for (_, err) in exited.iter().chain(&late) {
        assert!(
            err.contains("another kubeboot agent is already running on this node")
                && err.contains(&format!("pid {winner} holds the lock")),
            "{err}"
        );
    }
    assert!(
        running[0].try_wait().unwrap().is_none(),
        "the winner exited"
    );
    assert!(agent::stop(&n.layout, Duration::from_secs(10)).unwrap());
    assert!(!alive(winner));
}

#[test]
fn stop_finds_the_agent_without_its_pid_file_or_run_dir() {
    let n = Node::new("v1.20.2");
    let _stop = StopAgent(&n.layout);
    // Started as init does, then /run cleared (a reboot of /run, or an init killed before a
    // pid file existed): the lock under /var/lib/kubeboot still names it.
    let pid = agent::start_detached(&test_agent(), &test_agent_args(&n), &n.layout).unwrap();
    assert!(n.layout.agent_pid_file().exists());
    status_answers(&n);
    std::fs::remove_dir_all(n.layout.run_dir()).unwrap();
    assert_eq!(agent::is_running(&n.layout), Some(pid));
    assert!(agent::stop(&n.layout, Duration::from_secs(10)).unwrap());
    assert!(!alive(pid));
    assert_eq!(agent::is_running(&n.layout), None);

    // With the lock file gone as well, its marker still finds it.
    let pid = agent::start_detached(&test_agent(), &test_agent_args(&n), &n.layout).unwrap();
    status_answers(&n);
    std::fs::remove_dir_all(n.layout.run_dir()).unwrap();
    std::fs::remove_file(n.cfg.state_dir.join(agent::instance::LOCK_FILE)).unwrap();
    assert_eq!(agent::is_running(&n.layout), Some(pid));
    assert!(agent::stop(&n.layout, Duration::from_secs(10)).unwrap());
    assert!(!alive(pid));
    assert!(!agent::stop(&n.layout, Duration::from_secs(1)).unwrap());
}

#[test]
fn modes_do_not_depend_on_the_umask_and_existing_dirs_keep_theirs() {
    let n = Node::new("v1.20.2");
    let _stop = StopAgent(&n.layout);
    // A run directory that exists already, with a mode of its own.
    std::fs::create_dir_all(n.layout.run_dir()).unwrap();
    std::fs::set_permissions(n.layout.run_dir(), std::fs::Permissions::from_mode(0o751)).unwrap();
    let mut agent = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(test_agent())
        .args(test_agent_args(&n))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    status_answers(&n);
    n.write_manifest("sched", &pod("sched", "sleep", "", ""));
    let c = n.wait_container("running", |c| c.state == "running");
    let log = std::path::PathBuf::from(c.log_file.unwrap());
    wait_until("the log", || log.exists().then_some(()));
    let uid = n.status().pods[0].uid.clone();
    let state = &n.cfg.state_dir;
    let socket = n.cfg.socket();
    assert!(
        std::fs::symlink_metadata(&socket)
            .unwrap()
            .file_type()
            .is_socket()
    );
    for (path, want) in [
        (socket.clone(), 0o600),
        (n.layout.run_dir(), 0o751),
        (state.clone(), 0o700),
        (state.join("pods"), 0o700),
        (state.join("pods").join(&uid), 0o700),
        (state.join("pods").join(&uid).join("main.json"), 0o600),
        (state.join("node-id"), 0o644),
        (n.cfg.pod_log_dir.clone(), 0o755),
        (log.parent().unwrap().parent().unwrap().to_path_buf(), 0o755),
        (log.parent().unwrap().to_path_buf(), 0o755),
        (log.clone(), 0o640),
        (n.layout.agent_pid_file(), 0o644),
        (state.join(agent::instance::LOCK_FILE), 0o600),
    ] {
        assert_eq!(mode(&path), want, "{}: {:o}", path.display(), mode(&path));
    }
    assert!(agent::stop(&n.layout, Duration::from_secs(10)).unwrap());
    let _ = agent.wait();
}

/// Asks the status socket as uid/gid 65534 (nobody); returns (exit success, output).
fn query_as_nobody(socket: &Path) -> (bool, String) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import socket,sys\n\
             s=socket.socket(socket.AF_UNIX)\n\
             s.settimeout(5)\n\
             s.connect(sys.argv[1])\n\
             s.sendall(b'{\"request\":\"status\"}\\n')\n\
             print(s.makefile().readline())",
        ])
        .arg(socket)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_status_socket_answers_only_root_and_the_agents_user() {
    let n = Node::new("v1.20.2");
    let _stop = StopAgent(&n.layout);
    let mut agent = spawn_agent(&n);
    status_answers(&n);
    // Let another user reach the socket's directory.
    for d in [
        n.tmp.path().to_path_buf(),
        n.tmp.path().join("run"),
        n.layout.run_dir(),
    ] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let socket = n.cfg.socket();
    // 0600: another user cannot even connect.
    let (ok, text) = query_as_nobody(&socket);
    assert!(!ok && text.contains("Permission denied"), "{text}");
    // Opened to everyone, the agent itself still refuses by the peer's credentials.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (ok, text) = query_as_nobody(&socket);
    assert!(ok, "{text}");
    assert!(
        text.contains("permission denied: uid 65534 may not read the agent's status")
            && !text.contains("node_id"),
        "{text}"
    );
    // Root still gets the status.
    assert_eq!(n.status().agent_pid, agent.id());
    assert!(agent::stop(&n.layout, Duration::from_secs(10)).unwrap());
    let _ = agent.wait();
}

#[test]
fn the_agents_own_log_is_rotated() {
    let n = Node::new("v1.20.2");
    let _stop = StopAgent(&n.layout);
    let mut args = test_agent_args(&n);
    args.extend(
        [
            "--log-max-size",
            "20000",
            "--log-max-files",
            "3",
            "--chatter",
        ]
        .map(String::from),
    );
    let pid = agent::start_detached(&test_agent(), &args, &n.layout).unwrap();
    let log = n.layout.agent_log_file();
    let rotated = |i: u32| agent::logs::rotated_file(&log, i);
    wait_until("two rotations", || rotated(2).exists().then_some(()));
    // A few more rotations: the oldest files go, none grows without bound.
    std::thread::sleep(Duration::from_secs(3));
    assert!(alive(pid));
    assert!(!rotated(3).exists(), "more than 3 files of the agent log");
    for f in [log.clone(), rotated(1), rotated(2)] {
        let len = std::fs::metadata(&f).unwrap().len();
        // One check a second at about 60 KB/s of chatter.
        assert!(len < 200_000, "{} has {len} bytes", f.display());
        assert_eq!(mode(&f), 0o640, "{}", f.display());
    }
    // The agent still writes into the current file, and a tail reads across the rotation.
    let last = |t: &[String]| t.last().cloned().unwrap_or_default();
    let before = last(&agent::logs::tail_lines(&log, 1));
    wait_until("new lines in the current log", || {
        let now = last(&agent::logs::tail_lines(&log, 1));
        (now != before && now.starts_with("chatter ")).then_some(())
    });
    let tail = agent::logs::tail_lines(&log, 500);
    assert_eq!(tail.len(), 500);
    assert!(agent::stop(&n.layout, Duration::from_secs(10)).unwrap());
}
