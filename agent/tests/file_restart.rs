//! A renewed certificate restarts exactly the containers that name it on their command line,
//! once, after the key and the certificate were both written; a rewrite with the same content
//! restarts nothing; a change made while no agent ran restarts the adopted container. The
//! change wakes the agent (inotify on the files' directories), not its periodic pass.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Node, pod, wait_until};

/// Writes `content` to `path` as kubeboot does: a hidden temp file renamed into place.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Files {
    crt: PathBuf,
    key: PathBuf,
    conf: PathBuf,
}

fn setup(n: &Node) -> Files {
    let k = n.layout.kubernetes_dir();
    std::fs::create_dir_all(k.join("pki")).unwrap();
    let f = Files {
        crt: k.join("pki/a.crt"),
        key: k.join("pki/a.key"),
        conf: k.join("b.conf"),
    };
    replace(&f.crt, "crt 1");
    replace(&f.key, "key 1");
    replace(&f.conf, "conf 1");
    let a = format!(
        "sleep, --tls-cert-file={}, --tls-private-key-file={}",
        f.crt.display(),
        f.key.display()
    );
    let b = format!("sleep, --kubeconfig, {}", f.conf.display());
    n.write_manifest("a", &pod("a", &a, "", ""));
    n.write_manifest("b", &pod("b", &b, "", ""));
    f
}

/// The running shim pid of pod `name`'s container, with its file restarts.
fn running(n: &Node, name: &str) -> Option<(u32, u32)> {
    let st = n.status();
    let p = st.pods.iter().find(|p| p.name == format!("{name}-n1"))?;
    let c = &p.containers[0];
    (c.state == "running").then_some(())?;
    Some((c.pid?, c.file_restarts))
}

fn wait_running(n: &Node, name: &str) -> (u32, u32) {
    wait_until(&format!("{name} running"), || running(n, name))
}

#[test]
fn a_renewed_pair_restarts_its_user_once_and_nothing_else() {
    let mut n = Node::new("v1.20.2");
    // Only inotify on the files' directories can wake the check in time: the periodic pass
    // comes after the test's waits ended.
    n.cfg.watched_resync = Duration::from_secs(3600);
    n.cfg.resync = Duration::from_secs(3600);
    n.start_agent();
    let f = setup(&n);
    let (a0, _) = wait_running(&n, "a");
    let (b0, _) = wait_running(&n, "b");
    // Long enough for the checks that follow the starts to be over: what comes next is seen
    // only by the watch on the files' directories.
    std::thread::sleep(Duration::from_secs(3));
    // As `certs renew` writes them: the key, then the certificate, a moment apart.
    replace(&f.key, "key 2");
    std::thread::sleep(Duration::from_millis(300));
    replace(&f.crt, "crt 2");
    let (a1, restarts) = wait_until("a restarted", || {
        running(&n, "a").filter(|(pid, _)| *pid != a0)
    });
    assert_eq!(restarts, 1);
    let st = n.status();
    let c = &st
        .pods
        .iter()
        .find(|p| p.name == "a-n1")
        .unwrap()
        .containers[0];
    assert_eq!(c.restart_count, 1);
    let last = c.last_file_restart.clone().unwrap();
    assert!(
        last.contains(&format!("{}, {} changed", f.crt.display(), f.key.display())),
        "{last}"
    );
    assert!(
        st.render_text()
            .contains("a-n1 main: restarted by the agent 1 time(s)"),
        "{}",
        st.render_text()
    );
    // Once: the key and the certificate together, not one restart each.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(running(&n, "a"), Some((a1, 1)));
    assert_eq!(running(&n, "b"), Some((b0, 0)), "b uses neither file");

    // The same content rewritten (a new inode, a new mtime): no restart.
    replace(&f.conf, "conf 1");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(running(&n, "b"), Some((b0, 0)));

    // Changed while no agent ran: the adopted container is restarted.
    n.stop_agent();
    std::thread::sleep(Duration::from_millis(2500));
    replace(&f.conf, "conf 2");
    n.start_agent();
    let (b1, restarts) = wait_until("b restarted after adoption", || {
        running(&n, "b").filter(|(pid, _)| *pid != b0)
    });
    assert_eq!(restarts, 1);
    assert_ne!(b1, b0);
    std::thread::sleep(Duration::from_secs(3));
    // The count is the running agent's (restart_count, kept in the records, has them all).
    assert_eq!(
        running(&n, "a"),
        Some((a1, 0)),
        "a was adopted, not restarted"
    );
}

#[test]
fn without_a_credentials_dir_nothing_restarts() {
    let mut n = Node::new("v1.20.2");
    n.cfg.credentials_dirs = Vec::new();
    n.start_agent();
    let f = setup(&n);
    let (a0, _) = wait_running(&n, "a");
    replace(&f.crt, "crt 2");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(running(&n, "a"), Some((a0, 0)));
}
