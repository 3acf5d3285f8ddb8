//! What must never leave a pod unsupervised, stopped by mistake, or the agent stuck: a shim
//! that dies, a manifest directory that cannot be listed, manifests that are FIFOs or
//! devices, and container logs that would grow without bound.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Node, alive, kill9, pod, wait_until};

/// The processes of one container that are not its shim.
fn container_processes(n: &Node, uid: &str, shim: u32) -> Vec<u32> {
    let marker = format!("{}/{uid}/main", n.node_id());
    n.marked()
        .into_iter()
        .filter(|m| m.marker == marker && m.pid != shim)
        .map(|m| m.pid)
        .collect()
}

#[test]
fn a_dead_shim_leaves_exactly_one_container_running() {
    let mut n = Node::new("v1.20.2");
    n.start_agent();
    n.write_manifest("sched", &pod("sched", "sleep", "", ""));
    let c = n.wait_container("running", |c| c.state == "running");
    let shim = c.pid.unwrap();
    let old = n.container_pid(shim);
    let uid = n.status().pods[0].uid.clone();
    // The shim dies; its container does not die with it.
    kill9(shim);
    let c = n.wait_container("restarted under a new shim", |c| {
        c.state == "running" && c.pid.is_some_and(|p| p != shim)
    });
    let new_shim = c.pid.unwrap();
    let new = n.container_pid(new_shim);
    assert_ne!(new, old);
    wait_until("the unsupervised container to be stopped", || {
        (!alive(old)).then_some(())
    });
    // And it stays at one.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(container_processes(&n, &uid, new_shim), vec![new]);
    let c = n.wait_container("running", |c| c.state == "running");
    assert_eq!(c.pid, Some(new_shim));
}

#[test]
fn a_manifest_dir_that_cannot_be_listed_keeps_the_pods() {
    let mut n = Node::new("v1.20.2");
    n.start_agent();
    n.write_manifest("sched", &pod("sched", "sleep", "", ""));
    let c = n.wait_container("running", |c| c.state == "running");
    let shim = c.pid.unwrap();
    // The directory becomes a file in one step (ENOTDIR): that is no "no pods wanted".
    let dir = n.layout.manifests_dir();
    let moved = n.tmp.path().join("manifests.moved");
    std::fs::write(&moved, "not a directory").unwrap();
    let swap = || {
        use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
        renameat2(
            AT_FDCWD,
            &dir,
            AT_FDCWD,
            &moved,
            RenameFlags::RENAME_EXCHANGE,
        )
        .unwrap();
    };
    swap();
    let st = wait_until("the listing error in the status", || {
        let st = n.status();
        st.manifest_errors
            .iter()
            .any(|e| e.message.contains("cannot list"))
            .then_some(st)
    });
    // Several passes (resync is 1s) later, the pod still runs, untouched.
    std::thread::sleep(Duration::from_secs(3));
    let st2 = n.status();
    for st in [&st, &st2] {
        assert_eq!(st.pods.len(), 1, "{}", st.render_text());
        let c = &st.pods[0].containers[0];
        assert_eq!(
            (c.state.as_str(), c.pid, c.restart_count),
            ("running", Some(shim), 0)
        );
        assert_eq!(st.pods[0].phase, "Running");
    }
    assert!(alive(shim));
    // Back again: the same pod, still not restarted.
    swap();
    wait_until("the error to clear", || {
        n.status().manifest_errors.is_empty().then_some(())
    });
    let c = n.wait_container("running", |c| c.state == "running");
    assert_eq!((c.pid, c.restart_count), (Some(shim), 0));
}

/// Waits until the status names `manifest` with an error containing `what`, while the
/// good pod keeps running; the status keeps answering meanwhile (query has a 5s timeout).
fn wait_manifest_error(n: &Node, manifest: &Path, what: &str) {
    let shown = manifest.display().to_string();
    wait_until(&format!("an error for {shown}"), || {
        let st = n.status();
        st.manifest_errors
            .iter()
            .find(|e| e.manifest == shown)
            .map(|e| assert!(e.message.contains(what), "{}", e.message))
    });
}

#[test]
fn fifo_manifests_are_errors_not_hangs() {
    let mut n = Node::new("v1.20.2");
    n.start_agent();
    n.write_manifest("sched", &pod("sched", "sleep", "", ""));
    n.wait_container("running", |c| c.state == "running");
    // A FIFO in the directory, and a manifest linked to a FIFO elsewhere; nobody writes.
    let fifo = n.manifest("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let outside = n.tmp.path().join("pipe");
    nix::unistd::mkfifo(&outside, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let linked = n.manifest("linked");
    std::os::unix::fs::symlink(&outside, &linked).unwrap();
    wait_manifest_error(&n, &fifo, "is not a regular file (it is a FIFO)");
    wait_manifest_error(&n, &linked, "is not a regular file (it is a FIFO)");
    // The loop goes on: a new manifest is still picked up.
    n.write_manifest("other", &pod("other", "sleep", "", ""));
    n.wait_pod("the other pod", |p| {
        (p.name == "other-n1" && p.phase == "Running").then_some(())
    });
    assert_eq!(n.status().pods.len(), 2);
}

#[test]
fn a_manifest_linked_to_dev_zero_is_refused_not_read() {
    let mut n = Node::new("v1.20.2");
    n.start_agent();
    n.write_manifest("sched", &pod("sched", "sleep", "", ""));
    n.wait_container("running", |c| c.state == "running");
    let zero = n.manifest("zero");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    wait_manifest_error(
        &n,
        &zero,
        "is not a regular file (it is a character device)",
    );
    // A regular file too large to be a manifest is refused by size, naming the limit.
    let big = n.manifest("big");
    std::fs::write(&big, vec![b'#'; 1024 * 1024 + 1]).unwrap();
    wait_manifest_error(&n, &big, "larger than the limit of 1048576 bytes (1 MiB)");
    assert_eq!(n.status().pods.len(), 1);
}

#[test]
fn container_logs_rotate_by_size_and_count() {
    let mut n = Node::new("v1.20.2");
    n.cfg.log_rotation = agent::logs::LogRotation {
        max_size: 2000,
        max_files: 3,
    };
    n.start_agent();
    n.write_manifest("spam", &pod("spam", "spam, \"300\"", "", ""));
    let c = n.wait_container("running", |c| c.state == "running");
    let log = PathBuf::from(c.log_file.unwrap());
    let last = "spam line 299 ......................";
    wait_until("the last line", || {
        agent::logs::tail_lines(&log, 1)
            .first()
            .filter(|l| l.ends_with(&format!("stdout F {last}")))
            .map(|_| ())
    });
    let mut files: Vec<String> = std::fs::read_dir(log.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["0.log", "0.log.1", "0.log.2"]);
    for f in &files {
        let len = std::fs::metadata(log.with_file_name(f)).unwrap().len();
        assert!(len <= 2000, "{f} has {len} bytes");
    }
    // A reader gets the newest lines in order across the rotated files.
    let tail = agent::logs::tail_lines(&log, 40);
    let text: Vec<&str> = tail
        .iter()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap())
        .collect();
    let want: Vec<String> = (260..300)
        .map(|i| format!("spam line {i} ......................"))
        .collect();
    assert_eq!(text, want);
}
