//! The agent's own renewal loop with a fake renewer: a certificate inside the window is
//! renewed, the container using its file is restarted, the status and the Event say so, and
//! the loop does not spin (it checks again only when the next certificate becomes due).

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use agent::cert_renewal::{Expiry, Inspection, Renewer, RenewerHandle};
use common::{Node, pod, wait_until};

/// One certificate file, expiring at `not_after`; renewing rewrites the file and moves its
/// expiry to `validity` from now.
struct Fake {
    file: PathBuf,
    validity: Duration,
    not_after: Mutex<SystemTime>,
    inspections: Mutex<u32>,
    events: Mutex<Vec<(String, String, String)>>,
    /// Renewal waits for this (the test opens it once the container runs, so that the
    /// renewal is a change after the container's start).
    gate: Mutex<bool>,
}

impl Renewer for Fake {
    fn inspect(&self) -> anyhow::Result<Inspection> {
        *self.inspections.lock().unwrap() += 1;
        Ok(Inspection {
            window: Duration::from_secs(60),
            certs: vec![
                Expiry {
                    name: "apiserver".into(),
                    not_after: *self.not_after.lock().unwrap(),
                    renewable: true,
                },
                // Its CA key is elsewhere: never renewed, however close its expiry.
                Expiry {
                    name: "external".into(),
                    not_after: SystemTime::now(),
                    renewable: false,
                },
            ],
        })
    }

    fn renew(&self, names: &[String]) -> anyhow::Result<Vec<String>> {
        assert_eq!(names, ["apiserver"]);
        let deadline = std::time::Instant::now() + common::WAIT;
        while !*self.gate.lock().unwrap() {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the gate never opened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let tmp = self.file.with_file_name(".apiserver.crt.tmp");
        std::fs::write(&tmp, format!("renewed {:?}", SystemTime::now()))?;
        std::fs::rename(&tmp, &self.file)?;
        *self.not_after.lock().unwrap() = SystemTime::now() + self.validity;
        Ok(names.to_vec())
    }

    fn record_event(&self, node: &str, reason: &str, message: &str) -> anyhow::Result<()> {
        self.events
            .lock()
            .unwrap()
            .push((node.into(), reason.into(), message.into()));
        Ok(())
    }
}

#[test]
fn a_certificate_inside_the_window_is_renewed_and_its_user_restarted() {
    let mut n = Node::new("v1.20.2");
    let pki = n.layout.kubernetes_dir().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let crt = pki.join("apiserver.crt");
    std::fs::write(&crt, "original").unwrap();
    let fake = Arc::new(Fake {
        file: crt.clone(),
        validity: Duration::from_secs(3600),
        // Inside the 60 s window: due at once.
        not_after: Mutex::new(SystemTime::now() + Duration::from_secs(30)),
        inspections: Mutex::new(0),
        events: Mutex::new(Vec::new()),
        gate: Mutex::new(false),
    });
    n.cfg.cert_renewer = Some(RenewerHandle(fake.clone()));
    n.write_manifest(
        "api",
        &pod(
            "api",
            &format!("sleep, --tls-cert-file={}", crt.display()),
            "",
            "",
        ),
    );
    n.start_agent();
    n.wait_container("running", |c| c.state == "running");
    *fake.gate.lock().unwrap() = true;
    let status = wait_until("the renewal in the status", || {
        let st = n.status();
        st.certificates.filter(|c| c.renewals == 1)
    });
    assert_eq!(status.window_seconds, Some(60));
    assert!(
        status
            .last_renewal
            .as_deref()
            .is_some_and(|l| l.ends_with(": apiserver")),
        "{status:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&crt).unwrap().split(' ').next(),
        Some("renewed")
    );
    let events = fake.events.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].0.as_str(), events[0].1.as_str()),
        ("n1", "CertificateRenewed")
    );
    assert!(
        events[0]
            .2
            .starts_with("Renewed the certificates apiserver within 1m0s of their expiry"),
        "{}",
        events[0].2
    );
    // The container that uses the file is restarted by the file watch.
    let c = n.wait_container("restarted for the renewed file", |c| {
        c.file_restarts == 1 && c.state == "running"
    });
    assert!(
        c.last_file_restart
            .unwrap()
            .contains("apiserver.crt changed")
    );
    // The next due is in an hour less the window: the loop sleeps (bounded), not spins.
    let st = n.status().certificates.unwrap();
    assert!(
        st.next_due
            .as_deref()
            .is_some_and(|d| d.starts_with("apiserver at ")),
        "{st:?}"
    );
    assert!(st.next_check.is_some() && st.last_error.is_none(), "{st:?}");
    let text = n.status().render_text();
    assert!(
        text.contains("Certificates: renewed by the agent within 1m0s of expiry")
            && text.contains("renewals: 1, the last at"),
        "{text}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let inspections = *fake.inspections.lock().unwrap();
    assert!(
        inspections <= 3,
        "checked {inspections} times in a few seconds: the loop spins"
    );
    assert_eq!(n.status().certificates.unwrap().renewals, 1);
}
