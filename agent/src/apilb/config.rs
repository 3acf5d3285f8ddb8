//! The balancer's configuration file, `/etc/kubeboot/api-lb.json`: where it listens (loopback
//! only), the API servers it forwards to, and the cluster CA its health checks verify them
//! with. `init`/`join` write it; the agent writes it back with the API servers it learned.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The contents of `/etc/kubeboot/api-lb.json`:
/// `{"listen": "127.0.0.1:6444", "servers": ["10.0.0.1:6443"], "caFile": "/etc/kubernetes/pki/ca.crt"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiLbConfig {
    /// The loopback address clients connect to (`127.0.0.1:6444`).
    pub listen: SocketAddr,
    /// The API servers, `host:port` each (`10.0.0.1:6443`, `[fd00::1]:6443`,
    /// `lb.example.com:6443`), in the order they are tried.
    pub servers: Vec<String>,
    /// The cluster CA (PEM) the health checks verify the API servers with; without it a
    /// server counts as healthy when it accepts a TCP connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Why a configuration is refused. Each message names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiLbConfigError {
    /// Not JSON, or not this shape.
    #[error("is not a valid API load balancer configuration: {reason}")]
    Parse {
        /// serde's message.
        reason: String,
    },
    /// The balancer would be reachable from other hosts.
    #[error(
        "\"listen\": {listen} is not a loopback address; the node-local API load balancer only \
         listens on 127.0.0.1 or ::1 (use \"127.0.0.1:{port}\")",
        port = components::names::API_LB_PORT
    )]
    NotLoopback {
        /// The address given.
        listen: SocketAddr,
    },
    /// Nothing to forward to.
    #[error("\"servers\" is empty; list at least one API server as \"host:port\"")]
    NoServers,
    /// A server that is not `host:port`.
    #[error(
        "\"servers\": {server:?} is not host:port ({reason}); write it as \"10.0.0.1:6443\" or \"[fd00::1]:6443\""
    )]
    BadServer {
        /// The entry given.
        server: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl ApiLbConfig {
    /// The default configuration for `servers`: listening on `127.0.0.1:6444`.
    pub fn new(servers: Vec<String>, ca_file: Option<PathBuf>) -> Self {
        ApiLbConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, components::names::API_LB_PORT)),
            servers,
            ca_file,
        }
    }

    /// The file's text: pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self)
            .expect("a struct of strings and addresses always serializes");
        s.push('\n');
        s
    }

    /// Reads and checks ([`ApiLbConfig::validate`]) the file's text.
    ///
    /// # Errors
    /// Every [`ApiLbConfigError`].
    pub fn from_json(text: &str) -> Result<Self, ApiLbConfigError> {
        let cfg: ApiLbConfig = serde_json::from_str(text).map_err(|e| ApiLbConfigError::Parse {
            reason: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that it listens on loopback only and every server is `host:port`.
    ///
    /// # Errors
    /// [`ApiLbConfigError::NotLoopback`], [`ApiLbConfigError::NoServers`],
    /// [`ApiLbConfigError::BadServer`].
    pub fn validate(&self) -> Result<(), ApiLbConfigError> {
        check_listen(self.listen)?;
        if self.servers.is_empty() {
            return Err(ApiLbConfigError::NoServers);
        }
        for s in &self.servers {
            split_server(s)?;
        }
        Ok(())
    }
}

/// Refuses any listen address but loopback: the balancer forwards to the API servers
/// without authenticating anyone, so it must never be another host's way in.
///
/// # Errors
/// [`ApiLbConfigError::NotLoopback`] (the unspecified `0.0.0.0` and `::` included).
pub fn check_listen(listen: SocketAddr) -> Result<(), ApiLbConfigError> {
    let loopback = match listen.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    if loopback {
        Ok(())
    } else {
        Err(ApiLbConfigError::NotLoopback { listen })
    }
}

/// Splits `host:port` (`[v6]:port` for IPv6) into the host, without brackets, and the port.
///
/// # Errors
/// [`ApiLbConfigError::BadServer`].
pub fn split_server(server: &str) -> Result<(&str, u16), ApiLbConfigError> {
    let bad = |reason| ApiLbConfigError::BadServer {
        server: server.to_string(),
        reason,
    };
    let (host, port) = if let Some(rest) = server.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("an address in brackets must be IPv6"));
        }
        let port = after.strip_prefix(':').ok_or_else(|| bad("no port"))?;
        (host, port)
    } else {
        let (host, port) = server.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        if host.contains(':') {
            return Err(bad("an IPv6 address goes in brackets"));
        }
        (host, port)
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(bad("no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((host, p)),
        _ => Err(bad("the port must be a number from 1 to 65535")),
    }
}

/// `ip:port` as a server entry (`[v6]:port` for IPv6).
pub fn server_entry(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_with_its_documented_field_names() {
        let cfg = ApiLbConfig::new(
            vec!["10.0.0.1:6443".into(), "[fd00::2]:6443".into()],
            Some("/etc/kubernetes/pki/ca.crt".into()),
        );
        let text = cfg.to_json();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["listen"], "127.0.0.1:6444");
        assert_eq!(v["servers"][1], "[fd00::2]:6443");
        assert_eq!(v["caFile"], "/etc/kubernetes/pki/ca.crt");
        assert_eq!(ApiLbConfig::from_json(&text).unwrap(), cfg);
        let no_ca = ApiLbConfig::new(vec!["10.0.0.1:6443".into()], None);
        assert!(!no_ca.to_json().contains("caFile"));
    }

    #[test]
    fn only_loopback_listen_addresses_are_accepted() {
        for ok in [
            "127.0.0.1:6444",
            "127.0.0.2:6444",
            "[::1]:6444",
            "[::ffff:127.0.0.1]:6444",
        ] {
            assert_eq!(check_listen(ok.parse().unwrap()), Ok(()), "{ok}");
        }
        for bad in [
            "0.0.0.0:6444",
            "10.0.0.1:6444",
            "[::]:6444",
            "[fd00::1]:6444",
        ] {
            let e = check_listen(bad.parse().unwrap()).unwrap_err();
            assert!(matches!(e, ApiLbConfigError::NotLoopback { .. }), "{bad}");
        }
        let e =
            ApiLbConfig::from_json(r#"{"listen": "0.0.0.0:6444", "servers": ["10.0.0.1:6443"]}"#)
                .unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"listen\": 0.0.0.0:6444 is not a loopback address; the node-local API load \
             balancer only listens on 127.0.0.1 or ::1 (use \"127.0.0.1:6444\")"
        );
    }

    #[test]
    fn servers_must_be_host_and_port() {
        assert_eq!(split_server("10.0.0.1:6443"), Ok(("10.0.0.1", 6443)));
        assert_eq!(split_server("[fd00::1]:443"), Ok(("fd00::1", 443)));
        assert_eq!(
            split_server("lb.example.com:6443"),
            Ok(("lb.example.com", 6443))
        );
        for (bad, why) in [
            ("10.0.0.1", "no port"),
            ("fd00::1:6443", "an IPv6 address goes in brackets"),
            ("[fd00::1]", "no port"),
            ("[10.0.0.1]:6443", "an address in brackets must be IPv6"),
            (":6443", "no host"),
            ("10.0.0.1:0", "the port must be a number from 1 to 65535"),
            (
                "10.0.0.1:https",
                "the port must be a number from 1 to 65535",
            ),
        ] {
            match split_server(bad) {
                Err(ApiLbConfigError::BadServer { reason, .. }) => assert_eq!(reason, why, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let e =
            ApiLbConfig::from_json(r#"{"listen": "127.0.0.1:6444", "servers": []}"#).unwrap_err();
        assert_eq!(e, ApiLbConfigError::NoServers);
        let e = ApiLbConfig::from_json(
            r#"{"listen": "127.0.0.1:6444", "servers": ["a:1"], "cafile": "x"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `cafile`"), "{e}");
        assert_eq!(
            server_entry("fd00::1".parse().unwrap(), 6443),
            "[fd00::1]:6443"
        );
    }
}
