//! The agent renews the node's certificates on its own, inside a window before they expire,
//! so that a cluster has no yearly cliff (kubernetes/kubernetes#68924, kubernetes/kubeadm#2321:
//! kubeadm renews only during `upgrade apply`, and a cluster not upgraded for a year stops).
//!
//! The renewal itself is `kubeboot certs renew`'s (`phases::certs`), injected as a
//! [`Renewer`] by the `kubeboot agent` command: the agent crate depends on no other workspace
//! crate than `components` (DESIGN), so it cannot call the phases, and the alternative, running
//! `kubeboot certs check-expiration -o json` / `certs renew <name>` as child processes, would
//! make the agent parse its own command's output and depend on the executable on disk being
//! the one it runs (an upgrade may have replaced it). Injected, the renewal is typed,
//! in-process, the very code `certs renew` runs, and this module's loop is tested with a fake.
//!
//! The loop, observe → decide → act → say:
//! - observe: [`Renewer::inspect`] reads the node's renewable certificates (their NotAfter,
//!   whether the CA key is here) and the cluster's window (`certificateRenewalWindow` in the
//!   kubeadm-config ClusterConfiguration, default 90 days or a quarter of the validity);
//! - decide: [`plan`] (pure): the certificates that expire within the window are due; the next
//!   check is when the next one becomes due, at most [`MAX_SLEEP`] away (an hour: a changed
//!   window or a certificate replaced by hand is seen within it), never sooner than
//!   [`MIN_SLEEP`], so the loop never spins;
//! - act: [`Renewer::renew`] rewrites them (atomic writes, keys 0600); [`crate::reload`]
//!   then restarts exactly the components that use them;
//! - say: the agent's log, `kubeboot agent status` ([`CertRenewalStatus`]), and a Kubernetes
//!   Event `CertificateRenewed` on the Node ([`Renewer::record_event`]), as the kubelet
//!   records its own node events.
//!
//! The renewer's calls block (files, the API through its own client): each runs on a thread
//! of its own, awaited by this task, so the agent's single-threaded runtime never stalls.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// The longest the loop sleeps between two checks.
pub const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// The shortest: a certificate due again right after its renewal waits this long.
pub const MIN_SLEEP: Duration = Duration::from_secs(30);

/// How long after a failed check or renewal the next try is.
pub const RETRY: Duration = Duration::from_secs(60);

/// The Event's reason (kubelet-style CamelCase).
pub const EVENT_REASON: &str = "CertificateRenewed";

/// One renewable certificate of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// Its name as `certs renew` takes it (`apiserver`, `admin.conf`).
    pub name: String,
    /// Its NotAfter.
    pub not_after: SystemTime,
    /// Its CA's key is on the node (else only the CA's owner can renew it).
    pub renewable: bool,
}

/// What [`Renewer::inspect`] finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Renew a certificate once it expires within this.
    pub window: Duration,
    /// The node's certificates (none on a node without the cluster's PKI).
    pub certs: Vec<Expiry>,
}

/// The node's certificates, as `kubeboot certs` sees them. Implemented by the command that
/// starts the agent; every method blocks and is called on a thread of its own.
pub trait Renewer: Send + Sync + 'static {
    /// The node's certificates and the renewal window.
    ///
    /// # Errors
    /// When the certificates cannot be read, or the window cannot be known (the cluster's
    /// configuration is unreadable and was never read).
    fn inspect(&self) -> anyhow::Result<Inspection>;

    /// Renews the named certificates; returns the names renewed.
    ///
    /// # Errors
    /// When one cannot be renewed (those renewed before stay renewed).
    fn renew(&self, names: &[String]) -> anyhow::Result<Vec<String>>;

    /// Records a Kubernetes Event with `reason` and `message` on the Node `node`.
    ///
    /// # Errors
    /// When the API refuses it or cannot be reached.
    fn record_event(&self, node: &str, reason: &str, message: &str) -> anyhow::Result<()>;
}

/// A [`Renewer`] in the agent's settings (cloned with them, shown by name only).
#[derive(Clone)]
pub struct RenewerHandle(pub Arc<dyn Renewer>);

impl std::fmt::Debug for RenewerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Renewer")
    }
}

/// What the loop decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The certificates to renew now, sorted.
    pub due: Vec<String>,
    /// Renewable certificates that are due but were just renewed (a window the renewal
    /// cannot escape, such as a CA that expires first): not renewed again, said once.
    pub stuck: Vec<String>,
    /// The next one to become due, and when.
    pub next_due: Option<(String, SystemTime)>,
    /// How long to sleep before the next check.
    pub sleep: Duration,
}

/// Decides which certificates are due at `now` and when to look again. `recent` are the
/// certificates renewed less than [`MIN_SLEEP`] ago. Pure.
pub fn plan(i: &Inspection, now: SystemTime, recent: &[String]) -> Plan {
    let mut due = Vec::new();
    let mut stuck = Vec::new();
    let mut next_due: Option<(String, SystemTime)> = None;
    for c in i.certs.iter().filter(|c| c.renewable) {
        let due_at = c
            .not_after
            .checked_sub(i.window)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if due_at <= now {
            if recent.contains(&c.name) {
                stuck.push(c.name.clone());
            } else {
                due.push(c.name.clone());
            }
        } else if next_due.as_ref().is_none_or(|(_, t)| due_at < *t) {
            next_due = Some((c.name.clone(), due_at));
        }
    }
    due.sort();
    stuck.sort();
    let until_next = next_due.as_ref().map_or(MAX_SLEEP, |(_, t)| {
        t.duration_since(now).unwrap_or_default()
    });
    let sleep = if !stuck.is_empty() {
        MAX_SLEEP
    } else {
        until_next.clamp(MIN_SLEEP, MAX_SLEEP)
    };
    Plan {
        due,
        stuck,
        next_due,
        sleep,
    }
}

/// The renewal loop as `kubeboot agent status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRenewalStatus {
    /// The window, in seconds: certificates are renewed once they expire within it.
    pub window_seconds: Option<u64>,
    /// The next certificate to become due, and when (RFC 3339).
    pub next_due: Option<String>,
    /// When the next check is (RFC 3339).
    pub next_check: Option<String>,
    /// Renewals done by this agent (each a set of certificates renewed together).
    pub renewals: u32,
    /// The latest: when (RFC 3339) and which certificates.
    pub last_renewal: Option<String>,
    /// The latest error, if the latest check or renewal failed.
    pub last_error: Option<String>,
}

impl CertRenewalStatus {
    /// Lines for `kubeboot agent status`.
    pub fn render_text(&self) -> String {
        let mut out = String::from("Certificates: renewed by the agent");
        if let Some(w) = self.window_seconds {
            out.push_str(&format!(" within {} of expiry", go_duration(w)));
        }
        out.push('\n');
        if let Some(n) = &self.next_due {
            out.push_str(&format!("  next due: {n}\n"));
        }
        if let Some(n) = &self.next_check {
            out.push_str(&format!("  next check: {n}\n"));
        }
        out.push_str(&format!("  renewals: {}", self.renewals));
        if let Some(l) = &self.last_renewal {
            out.push_str(&format!(", the last at {l}"));
        }
        out.push('\n');
        if let Some(e) = &self.last_error {
            out.push_str(&format!("  error: {e}\n"));
        }
        out
    }
}

/// Runs a blocking call of the renewer on a thread of its own.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("cert-renewal".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| anyhow::anyhow!("could not start a thread for the renewal: {e}"))?;
    rx.await
        .map_err(|_| anyhow::anyhow!("the renewal thread ended without an answer"))?
}

type Shown = Arc<Mutex<Option<CertRenewalStatus>>>;

/// Changes the status `agent status` shows.
fn set(status: &Shown, f: impl FnOnce(&mut CertRenewalStatus)) {
    // A poisoned lock only means a task panicked while holding it; the value is whole.
    let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
    f(s.get_or_insert_with(CertRenewalStatus::default));
}

/// A window as the configuration spells it (`2160h0m0s`, `2m30s`).
fn go_duration(secs: u64) -> String {
    components::config::duration::format_go_duration(secs)
}

fn rfc3339(t: SystemTime) -> String {
    crate::logs::rfc3339(t)
}

/// Runs the renewal loop until the task is aborted; `status` is what `agent status` shows.
pub(crate) async fn run(renewer: RenewerHandle, node: Option<String>, status: Shown) {
    let mut recent: Vec<(String, SystemTime)> = Vec::new();
    let mut said_stuck: Vec<String> = Vec::new();
    loop {
        let r = renewer.0.clone();
        let sleep = match blocking(move || r.inspect()).await {
            Err(e) => {
                let msg = format!("{e:#}");
                warn!("could not check the node's certificates (next try in {RETRY:?}): {msg}");
                set(&status, |s| {
                    s.last_error = Some(msg);
                    s.next_check = Some(rfc3339(SystemTime::now() + RETRY));
                });
                RETRY
            }
            Ok(inspection) => {
                let now = SystemTime::now();
                recent.retain(|(_, at)| now.duration_since(*at).unwrap_or_default() < MIN_SLEEP);
                let names: Vec<String> = recent.iter().map(|(n, _)| n.clone()).collect();
                let p = plan(&inspection, now, &names);
                for name in p.stuck.iter().filter(|n| !said_stuck.contains(n)) {
                    warn!(certificate = %name, "the certificate is due for renewal again right after its renewal; it is left as it is (does its CA expire first?)");
                }
                said_stuck = p.stuck.clone();
                let window = inspection.window.as_secs();
                let next_due = p
                    .next_due
                    .as_ref()
                    .map(|(n, t)| format!("{n} at {}", rfc3339(*t)));
                set(&status, |s| {
                    s.window_seconds = Some(window);
                    s.next_due = next_due;
                    s.last_error = None;
                });
                if p.due.is_empty() {
                    set(&status, |s| s.next_check = Some(rfc3339(now + p.sleep)));
                    p.sleep
                } else {
                    renew(&renewer, node.as_deref(), &p.due, &inspection, &status).await;
                    for n in &p.due {
                        recent.push((n.clone(), SystemTime::now()));
                    }
                    // Look again at once: the renewed certificates' new dates, the next due.
                    Duration::ZERO
                }
            }
        };
        tokio::time::sleep(sleep).await;
    }
}

/// Renews `due`, then says so: the log, the status, the Event.
async fn renew(
    renewer: &RenewerHandle,
    node: Option<&str>,
    due: &[String],
    inspection: &Inspection,
    status: &Shown,
) {
    let expiries: Vec<String> = inspection
        .certs
        .iter()
        .filter(|c| due.contains(&c.name))
        .map(|c| format!("{} (expires {})", c.name, rfc3339(c.not_after)))
        .collect();
    info!(window = ?inspection.window, "renewing certificates due for renewal: {}", expiries.join(", "));
    let r = renewer.0.clone();
    let names = due.to_vec();
    match blocking(move || r.renew(&names)).await {
        Err(e) => {
            let msg = format!("could not renew {}: {e:#}", due.join(", "));
            warn!("{msg}");
            set(status, |s| s.last_error = Some(msg));
            tokio::time::sleep(RETRY).await;
        }
        Ok(renewed) => {
            let message = format!(
                "Renewed the certificates {} within {} of their expiry: {}",
                renewed.join(", "),
                go_duration(inspection.window.as_secs()),
                expiries.join(", ")
            );
            info!("{message}");
            let when = rfc3339(SystemTime::now());
            set(status, |s| {
                s.renewals += 1;
                s.last_renewal = Some(format!("{when}: {}", renewed.join(", ")));
            });
            if let Some(node) = node {
                let r = renewer.0.clone();
                let node = node.to_string();
                if let Err(e) =
                    blocking(move || r.record_event(&node, EVENT_REASON, &message)).await
                {
                    // The renewal is done; the Event is only its record.
                    warn!("could not record the {EVENT_REASON} Event: {e:#}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }

    fn cert(name: &str, not_after: u64, renewable: bool) -> Expiry {
        Expiry {
            name: name.into(),
            not_after: at(not_after),
            renewable,
        }
    }

    fn inspection(certs: Vec<Expiry>) -> Inspection {
        Inspection {
            window: Duration::from_secs(100),
            certs,
        }
    }

    #[test]
    fn due_inside_the_window_and_the_next_one_is_waited_for() {
        let i = inspection(vec![
            cert("apiserver", 150, true),
            cert("admin.conf", 90, true),
            cert("front-proxy-client", 400, true),
            // Its CA key is elsewhere: never due here.
            cert("external", 10, false),
        ]);
        let p = plan(&i, at(60), &[]);
        assert_eq!(p.due, ["admin.conf", "apiserver"]);
        assert_eq!(p.next_due, Some(("front-proxy-client".into(), at(300))));
        assert_eq!(p.sleep, Duration::from_secs(240));
        assert!(p.stuck.is_empty());
    }

    #[test]
    fn the_sleep_is_bounded_both_ways() {
        // Nothing for a year: an hour.
        let p = plan(&inspection(vec![cert("a", 365 * 86_400, true)]), at(0), &[]);
        assert!(p.due.is_empty());
        assert_eq!(p.sleep, MAX_SLEEP);
        // No certificates (a worker): an hour.
        assert_eq!(plan(&inspection(vec![]), at(0), &[]).sleep, MAX_SLEEP);
        // Due in a second: not sooner than the minimum.
        let p = plan(&inspection(vec![cert("a", 101, true)]), at(0), &[]);
        assert!(p.due.is_empty());
        assert_eq!(p.sleep, MIN_SLEEP);
    }

    #[test]
    fn a_certificate_due_again_right_after_its_renewal_is_not_renewed_in_a_loop() {
        let i = inspection(vec![cert("a", 50, true), cert("b", 500, true)]);
        let p = plan(&i, at(0), &["a".to_string()]);
        assert!(p.due.is_empty());
        assert_eq!(p.stuck, ["a"]);
        assert_eq!(p.sleep, MAX_SLEEP);
    }

    #[test]
    fn a_long_window_reads_as_the_configuration_spells_it() {
        let far = CertRenewalStatus {
            window_seconds: Some(90 * 86_400),
            ..Default::default()
        };
        let text = far.render_text();
        assert!(text.contains("within 2160h0m0s of expiry"), "{text}");
        assert!(text.contains("  renewals: 0\n"), "{text}");
    }

    #[test]
    fn status_text_says_the_window_and_the_last_renewal() {
        let s = CertRenewalStatus {
            window_seconds: Some(150),
            next_due: Some("apiserver at 2026-01-01T00:02:00Z".into()),
            next_check: Some("2026-01-01T00:02:00Z".into()),
            renewals: 2,
            last_renewal: Some("2026-01-01T00:00:00Z: apiserver, admin.conf".into()),
            last_error: None,
        };
        let text = s.render_text();
        assert!(
            text.starts_with("Certificates: renewed by the agent within 2m30s of expiry\n"),
            "{text}"
        );
        assert!(
            text.contains("  next due: apiserver at 2026-01-01T00:02:00Z\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "  renewals: 2, the last at 2026-01-01T00:00:00Z: apiserver, admin.conf\n"
            ),
            "{text}"
        );
    }
}
