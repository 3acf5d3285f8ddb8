//! The balancer's decisions, pure: a backend's health after a check, whether the checks are
//! due again soon, the order a new connection tries the backends in, the API server list after
//! reading the `kubernetes` Endpoints. The runtime in [`crate::apilb`] observes and acts; nothing here does I/O.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Endpoints;

use super::config::{server_entry, split_server};

/// How many failed checks in a row take a healthy backend down: one slow answer from a busy
/// API server must not cut every connection through it.
pub const FAILS_TO_DOWN: u32 = 2;

/// What the health checks know of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not checked yet (a new backend): tried as if healthy.
    Unknown,
    /// Answered its last check.
    Up,
    /// Failed [`FAILS_TO_DOWN`] checks in a row (or its first one).
    Down,
}

/// One API server behind the balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `host:port`.
    pub addr: String,
    /// Its health.
    pub health: Health,
    /// Failed checks in a row.
    pub failures: u32,
    /// Whether it ever answered a check in this agent's life.
    pub answered: bool,
    /// Whether it is this node's own API server (its host is one of the node's addresses).
    pub local: bool,
}

impl Backend {
    /// A backend not checked yet.
    pub fn new(addr: &str, local_ips: &[IpAddr]) -> Self {
        Backend {
            addr: addr.to_string(),
            health: Health::Unknown,
            failures: 0,
            answered: false,
            local: is_local(addr, local_ips),
        }
    }

    /// The backend after a check that answered (`ok`) or failed. Up after one answer; down
    /// after [`FAILS_TO_DOWN`] failures in a row, or after the first when it never was up.
    pub fn checked(&self, ok: bool) -> Backend {
        let mut b = self.clone();
        if ok {
            b.health = Health::Up;
            b.failures = 0;
            b.answered = true;
        } else {
            b.failures = b.failures.saturating_add(1);
            if b.health != Health::Up || b.failures >= FAILS_TO_DOWN {
                b.health = Health::Down;
            }
        }
        b
    }
}

/// Whether the next round of health checks is due soon rather than at the slow background
/// pace: a backend is not checked yet, or failed its last check without being down yet (one
/// more failure takes it down, and its connections are cut only then).
pub fn needs_recheck(backends: &[Backend]) -> bool {
    backends
        .iter()
        .any(|b| b.health == Health::Unknown || (b.health == Health::Up && b.failures > 0))
}

/// Whether `addr`'s host is one of `local_ips`.
pub fn is_local(addr: &str, local_ips: &[IpAddr]) -> bool {
    split_server(addr)
        .ok()
        .and_then(|(host, _)| host.parse::<IpAddr>().ok())
        .is_some_and(|ip| local_ips.contains(&ip))
}

/// The backends a new connection tries, in order. Down backends are skipped unless every
/// backend is down (an API server may only be slow to answer its checks). Among the rest:
/// the node's own API server first (no hop over the network, and it is up exactly when this
/// node's control plane is), then the backend the last connection reached (`sticky`: a
/// node's clients stay on one API server, whose watch caches agree with what they saw), then
/// the configured order.
pub fn connect_order<'a>(backends: &'a [Backend], sticky: Option<&str>) -> Vec<&'a str> {
    let mut pick: Vec<&Backend> = backends
        .iter()
        .filter(|b| b.health != Health::Down)
        .collect();
    if pick.is_empty() {
        pick = backends.iter().collect();
    }
    // A stable sort keeps the configured order within each rank.
    pick.sort_by_key(|b| (!b.local, Some(b.addr.as_str()) != sticky));
    pick.into_iter().map(|b| b.addr.as_str()).collect()
}

/// The API server addresses of the `default/kubernetes` Endpoints: every address with the
/// `https` port (the only port the API server registers; a lone unnamed port counts too),
/// in the object's order, without repeats.
pub fn endpoints_servers(ep: &Endpoints) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for subset in ep.subsets.iter().flatten() {
        let ports = subset.ports.as_deref().unwrap_or_default();
        let port = ports
            .iter()
            .find(|p| p.name.as_deref() == Some("https"))
            .or(if ports.len() == 1 {
                ports.first()
            } else {
                None
            })
            .and_then(|p| u16::try_from(p.port).ok())
            .filter(|p| *p > 0);
        let Some(port) = port else { continue };
        for a in subset.addresses.iter().flatten() {
            if let Ok(ip) = a.ip.parse::<IpAddr>() {
                let entry = server_entry(ip, port);
                if !out.contains(&entry) {
                    out.push(entry);
                }
            }
        }
    }
    out
}

/// The API server list after reading the Endpoints. An empty `endpoints` (none read, or the
/// object lists no address) keeps `current`. Otherwise the Endpoints' addresses, followed by
/// those of `current` that are not among them but `answered` a check in this agent's life: a
/// load balancer or VIP in front of the API servers answers but is never in the Endpoints,
/// while a seed that never answered (a dead first control-plane node) is dropped. A server
/// kept that way and gone for good drops out at the agent's next start.
pub fn merge(current: &[String], answered: &BTreeSet<String>, endpoints: &[String]) -> Vec<String> {
    if endpoints.is_empty() {
        return current.to_vec();
    }
    let mut out: Vec<String> = Vec::new();
    for s in endpoints.iter().chain(
        current
            .iter()
            .filter(|s| answered.contains(*s) && !endpoints.contains(s)),
    ) {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

/// The backends for a new server list: known ones keep their health, new ones start unknown.
pub fn rebuild(old: &[Backend], servers: &[String], local_ips: &[IpAddr]) -> Vec<Backend> {
    servers
        .iter()
        .map(|s| {
            old.iter()
                .find(|b| &b.addr == s)
                .cloned()
                .unwrap_or_else(|| Backend::new(s, local_ips))
        })
        .collect()
}

/// The status code of an HTTP/1.x answer's first line (`HTTP/1.1 200 OK`).
pub fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    words.next()?.parse().ok()
}

/// Whether a `/readyz` answer means a usable API server: 200, or 401 and 403 (a server that
/// proved with its certificate to be this cluster's, whose anonymous access is turned off:
/// it cannot say more, and it serves authenticated clients).
pub fn readyz_healthy(code: u16) -> bool {
    matches!(code, 200 | 401 | 403)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_due_soon_only_for_a_new_or_a_failing_backend() {
        let up = Backend::new("10.0.0.1:6443", &[]).checked(true);
        let down = Backend::new("10.0.0.2:6443", &[]).checked(false);
        assert_eq!(down.health, Health::Down);
        // Every backend judged: the slow pace, a down one included (connections avoid it).
        assert!(!needs_recheck(&[up.clone(), down.clone()]));
        // Not checked yet.
        assert!(needs_recheck(&[
            up.clone(),
            Backend::new("10.0.0.3:6443", &[])
        ]));
        // Up, one failure: one more check decides, soon.
        let failing = up.checked(false);
        assert_eq!(failing.health, Health::Up);
        assert!(needs_recheck(&[failing.clone(), down.clone()]));
        // The second failure takes it down: the slow pace again.
        let gone = failing.checked(false);
        assert_eq!(gone.health, Health::Down);
        assert!(!needs_recheck(&[gone, down]));
    }

    fn b(addr: &str, health: Health, local: bool) -> Backend {
        Backend {
            addr: addr.into(),
            health,
            failures: 0,
            answered: health == Health::Up,
            local,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn down_backends_are_skipped_unless_all_are_down() {
        let list = [
            b("10.0.0.1:6443", Health::Down, false),
            b("10.0.0.2:6443", Health::Up, false),
            b("10.0.0.3:6443", Health::Unknown, false),
        ];
        assert_eq!(
            connect_order(&list, None),
            ["10.0.0.2:6443", "10.0.0.3:6443"]
        );
        let all_down = [
            b("10.0.0.1:6443", Health::Down, false),
            b("10.0.0.2:6443", Health::Down, false),
        ];
        assert_eq!(
            connect_order(&all_down, Some("10.0.0.2:6443")),
            ["10.0.0.2:6443", "10.0.0.1:6443"]
        );
        assert!(connect_order(&[], None).is_empty());
    }

    #[test]
    fn the_local_api_server_comes_first_then_the_sticky_one() {
        let list = [
            b("10.0.0.1:6443", Health::Up, false),
            b("10.0.0.2:6443", Health::Up, false),
            b("10.0.0.3:6443", Health::Up, true),
        ];
        assert_eq!(
            connect_order(&list, Some("10.0.0.2:6443")),
            ["10.0.0.3:6443", "10.0.0.2:6443", "10.0.0.1:6443"]
        );
        // The local one down: the sticky one leads.
        let list = [
            b("10.0.0.1:6443", Health::Up, false),
            b("10.0.0.2:6443", Health::Up, false),
            b("10.0.0.3:6443", Health::Down, true),
        ];
        assert_eq!(
            connect_order(&list, Some("10.0.0.2:6443")),
            ["10.0.0.2:6443", "10.0.0.1:6443"]
        );
        // A sticky backend that went down is not tried while others are up.
        assert_eq!(
            connect_order(&list, Some("10.0.0.3:6443")),
            ["10.0.0.1:6443", "10.0.0.2:6443"]
        );
    }

    #[test]
    fn local_means_one_of_the_nodes_addresses() {
        let ips: Vec<IpAddr> = vec!["10.0.0.3".parse().unwrap(), "fd00::3".parse().unwrap()];
        assert!(is_local("10.0.0.3:6443", &ips));
        assert!(is_local("[fd00::3]:6443", &ips));
        assert!(!is_local("10.0.0.4:6443", &ips));
        assert!(!is_local("lb.example.com:6443", &ips));
        assert!(Backend::new("10.0.0.3:6443", &ips).local);
    }

    #[test]
    fn one_failure_does_not_take_a_healthy_backend_down() {
        let new = Backend::new("10.0.0.1:6443", &[]);
        assert_eq!(new.health, Health::Unknown);
        // Never up: down at the first failure, so connections skip it at once.
        assert_eq!(new.checked(false).health, Health::Down);
        let up = new.checked(true);
        assert_eq!((up.health, up.answered), (Health::Up, true));
        let once = up.checked(false);
        assert_eq!(once.health, Health::Up);
        let twice = once.checked(false);
        assert_eq!(twice.health, Health::Down);
        assert!(twice.answered, "it did answer once");
        let back = twice.checked(true);
        assert_eq!((back.health, back.failures), (Health::Up, 0));
        // A failure between answers starts the count again.
        assert_eq!(
            back.checked(false).checked(true).checked(false).health,
            Health::Up
        );
    }

    #[test]
    fn endpoints_replace_the_list_and_keep_only_servers_that_answered() {
        let current = strings(&["10.0.0.1:6443", "192.168.0.100:6443"]);
        // The Endpoints could not be read, or list nobody: nothing is dropped.
        assert_eq!(merge(&current, &BTreeSet::new(), &[]), current);
        // The seed 10.0.0.1 never answered (dead); the VIP did.
        let answered: BTreeSet<String> = ["192.168.0.100:6443".to_string()].into();
        let eps = strings(&["10.0.0.2:6443", "10.0.0.3:6443"]);
        assert_eq!(
            merge(&current, &answered, &eps),
            strings(&["10.0.0.2:6443", "10.0.0.3:6443", "192.168.0.100:6443"])
        );
        // A seed that is in the Endpoints stays, once.
        let eps = strings(&["10.0.0.1:6443", "10.0.0.2:6443", "10.0.0.1:6443"]);
        assert_eq!(
            merge(&current, &BTreeSet::new(), &eps),
            strings(&["10.0.0.1:6443", "10.0.0.2:6443"])
        );
    }

    #[test]
    fn endpoints_give_every_address_with_the_https_port() {
        let ep: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "subsets": [
                {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                 "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]},
                {"addresses": [{"ip": "fd00::3"}, {"ip": "10.0.0.1"}], "ports": [{"port": 443}]},
                {"addresses": [{"ip": "10.0.0.9"}], "ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}]},
                {"addresses": [{"ip": "not-an-ip"}], "ports": [{"name": "https", "port": 6443}]},
                {"notReadyAddresses": [{"ip": "10.0.0.8"}], "ports": [{"name": "https", "port": 6443}]}
            ]
        }))
        .unwrap();
        assert_eq!(
            endpoints_servers(&ep),
            strings(&[
                "10.0.0.1:6443",
                "10.0.0.2:6443",
                "[fd00::3]:443",
                "10.0.0.1:443"
            ])
        );
        assert!(endpoints_servers(&Endpoints::default()).is_empty());
    }

    #[test]
    fn readyz_answers() {
        assert_eq!(
            status_code(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"),
            Some(200)
        );
        assert_eq!(
            status_code(b"HTTP/1.0 500 Internal Server Error\r\n"),
            Some(500)
        );
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b""), None);
        assert!(readyz_healthy(200) && readyz_healthy(401) && readyz_healthy(403));
        assert!(!readyz_healthy(500) && !readyz_healthy(404) && !readyz_healthy(503));
    }

    #[test]
    fn a_new_list_keeps_what_the_checks_learned() {
        let old = vec![
            b("10.0.0.1:6443", Health::Up, false),
            b("10.0.0.2:6443", Health::Down, false),
        ];
        let ips: Vec<IpAddr> = vec!["10.0.0.3".parse().unwrap()];
        let new = rebuild(&old, &strings(&["10.0.0.3:6443", "10.0.0.1:6443"]), &ips);
        assert_eq!(new[0], Backend::new("10.0.0.3:6443", &ips));
        assert!(new[0].local);
        assert_eq!(new[1], old[0]);
    }
}
