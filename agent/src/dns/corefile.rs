//! The `coredns` ConfigMap's Corefile read for what kubeboot's DNS honours: the cluster
//! domain, TTL and pod mode of the `kubernetes` plugin, the `forward` targets, and stub
//! domains (other server blocks that forward); every other plugin or option becomes a
//! warning naming it, so a user's edit is never silently lost.
//!
//! The syntax is Caddy's as CoreDNS uses it: server blocks `ZONE[:PORT]... { ... }`, one
//! directive per line with its arguments, an optional `{ ... }` block of options after a
//! directive, `#` comments, double quotes around an argument with spaces.

use std::net::{IpAddr, SocketAddr};

/// What the Corefile says, for the parts kubeboot's DNS honours.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    /// The `kubernetes` plugin's zone (lowercase, no trailing dot), if it has one.
    pub cluster_domain: Option<String>,
    /// The `kubernetes` plugin's `ttl`.
    pub settings_ttl: Option<u32>,
    /// `pods insecure` (or `verified`, answered as insecure); false for `pods disabled`
    /// and without a `pods` option (CoreDNS's default).
    pub pods_insecure: bool,
    /// `forward .` targets, in order.
    pub forward: Vec<ForwardTarget>,
    /// Zone (lowercase, no trailing dot) -> its `forward` targets.
    pub stub_domains: Vec<(String, Vec<ForwardTarget>)>,
    /// What is ignored or answered differently, one sentence each.
    pub warnings: Vec<String>,
}

/// One `forward` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardTarget {
    /// A resolv.conf whose nameservers are the targets (`/etc/resolv.conf`).
    ResolvConf(String),
    Addr(SocketAddr),
}

/// A Corefile that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Corefile line {line}: {problem}")]
pub struct CorefileError {
    pub line: usize,
    pub problem: String,
}

/// Plugins kubeboot's DNS covers by itself or that have no effect on answers (health and
/// readiness are its own endpoints, it answers from memory so `cache` and `reload` have
/// nothing to do, `loop` is its own loop filter): accepted without a warning.
const COVERED: &[&str] = &[
    "errors",
    "health",
    "ready",
    "prometheus",
    "cache",
    "loop",
    "reload",
    "loadbalance",
];

/// `forward` options with no effect on which servers are asked.
const FORWARD_OPTIONS_COVERED: &[&str] = &[
    "max_concurrent",
    "policy",
    "expire",
    "health_check",
    "max_fails",
    "prefer_udp",
];

/// How deep `{ }` blocks may nest (CoreDNS's own plugins use two levels).
const MAX_DEPTH: usize = 8;

/// Reads a Corefile.
pub fn parse(corefile: &str) -> Result<Parsed, CorefileError> {
    let lines = tokenize(corefile)?;
    let blocks = blocks(&lines)?;
    let mut parsed = Parsed::default();
    let mut saw_kubernetes = false;
    for block in &blocks {
        let mut zones = Vec::new();
        for key in &block.keys {
            let (zone, port) = server_key(key, block.line)?;
            if let Some(port) = port.filter(|p| *p != 53) {
                parsed.warnings.push(format!(
                    "Corefile line {}: server block {key:?} listens on port {port}; kubeboot's DNS serves \
                     every zone on its own listen address, port 53 by default",
                    block.line
                ));
            }
            zones.push(zone);
        }
        let is_root = zones.iter().any(|z| z.is_empty());
        let mut block_forward: Vec<ForwardTarget> = Vec::new();
        for d in &block.directives {
            match d.name.as_str() {
                "kubernetes" if is_root => {
                    saw_kubernetes = true;
                    kubernetes(d, &mut parsed)?;
                }
                "forward" => {
                    let Some(from) = d.args.first() else {
                        return Err(err(d.line, "forward needs a zone and at least one target: `forward . /etc/resolv.conf`"));
                    };
                    let targets = forward_targets(d, &mut parsed.warnings)?;
                    let from = zone_name(from, d.line)?;
                    if is_root && from.is_empty() {
                        parsed.forward.extend(targets);
                    } else if is_root {
                        parsed.stub_domains.push((from, targets));
                    } else {
                        block_forward.extend(targets);
                    }
                }
                name if COVERED.contains(&name) => {}
                name => parsed.warnings.push(format!(
                    "Corefile line {}: plugin {name:?} is not supported by kubeboot's DNS and is ignored",
                    d.line
                )),
            }
        }
        if !is_root {
            if block_forward.is_empty() {
                parsed.warnings.push(format!(
                    "Corefile line {}: server block {} has no forward; kubeboot's DNS serves only forwarding \
                     server blocks (stub domains) besides \".\", so it is ignored",
                    block.line,
                    block.keys.join(" ")
                ));
            } else {
                for zone in zones {
                    parsed.stub_domains.push((zone, block_forward.clone()));
                }
            }
        }
    }
    if !saw_kubernetes {
        parsed.warnings.push(
            "the Corefile's \".\" server block has no kubernetes plugin; kubeboot's DNS serves the cluster \
             domain it was started with"
                .to_string(),
        );
    }
    Ok(parsed)
}

/// The `kubernetes` directive: zones, `pods`, `ttl`; other options are warned about.
fn kubernetes(d: &Directive, parsed: &mut Parsed) -> Result<(), CorefileError> {
    for zone in &d.args {
        let zone = zone_name(zone, d.line)?;
        let reverse = zone == "in-addr.arpa"
            || zone == "ip6.arpa"
            || zone.ends_with(".in-addr.arpa")
            || zone.ends_with(".ip6.arpa");
        if !reverse && parsed.cluster_domain.is_none() && !zone.is_empty() {
            parsed.cluster_domain = Some(zone);
        }
    }
    for option in &d.block {
        match (option.name.as_str(), option.args.as_slice()) {
            ("pods", [mode]) => match mode.as_str() {
                "insecure" => parsed.pods_insecure = true,
                "disabled" => parsed.pods_insecure = false,
                "verified" => {
                    parsed.pods_insecure = true;
                    parsed.warnings.push(format!(
                        "Corefile line {}: \"pods verified\" is not supported by kubeboot's DNS; pod names are \
                         answered as with \"pods insecure\"",
                        option.line
                    ));
                }
                other => {
                    return Err(err(
                        option.line,
                        &format!("unknown pods mode {other:?}: use insecure, verified or disabled"),
                    ));
                }
            },
            ("pods", _) => return Err(err(option.line, "pods takes one mode: insecure, verified or disabled")),
            ("ttl", [ttl]) => match ttl.parse::<u32>() {
                Ok(ttl) if ttl <= 3600 => parsed.settings_ttl = Some(ttl),
                _ => return Err(err(option.line, &format!("ttl {ttl:?} is not a number of seconds from 0 to 3600"))),
            },
            ("ttl", _) => return Err(err(option.line, "ttl takes one number of seconds")),
            // kubeboot's DNS falls through for reverse names it does not know, as kubeadm's
            // Corefile asks; `upstream` is a no-op in CoreDNS itself since 1.7.
            ("fallthrough" | "upstream", _) => {}
            (name, _) => parsed.warnings.push(format!(
                "Corefile line {}: kubernetes option {name:?} is not supported by kubeboot's DNS and is ignored",
                option.line
            )),
        }
    }
    Ok(())
}

/// The targets of a `forward FROM TO...` directive, and its options' warnings.
fn forward_targets(
    d: &Directive,
    warnings: &mut Vec<String>,
) -> Result<Vec<ForwardTarget>, CorefileError> {
    let mut targets = Vec::new();
    for to in &d.args[1..] {
        if to.starts_with('/') {
            targets.push(ForwardTarget::ResolvConf(to.clone()));
            continue;
        }
        if to.starts_with("tls://") {
            warnings.push(format!(
                "Corefile line {}: forward target {to:?}: DNS over TLS is not supported by kubeboot's DNS; \
                 the target is ignored",
                d.line
            ));
            continue;
        }
        let plain = to.strip_prefix("dns://").unwrap_or(to);
        let addr = plain.parse::<SocketAddr>().ok().or_else(|| {
            plain
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        });
        match addr {
            Some(addr) => targets.push(ForwardTarget::Addr(addr)),
            None => {
                return Err(err(
                    d.line,
                    &format!(
                        "forward target {to:?} is not an IP address, IP:port ([IPv6]:port) or resolv.conf path"
                    ),
                ));
            }
        }
    }
    if targets.is_empty() && d.args.len() < 2 {
        return Err(err(
            d.line,
            "forward needs at least one target: `forward . /etc/resolv.conf`",
        ));
    }
    for option in &d.block {
        if !FORWARD_OPTIONS_COVERED.contains(&option.name.as_str()) {
            warnings.push(format!(
                "Corefile line {}: forward option {:?} is not supported by kubeboot's DNS and is ignored",
                option.line, option.name
            ));
        }
    }
    Ok(targets)
}

/// A server block key: its zone (lowercase, no trailing dot, "" for the root) and port.
fn server_key(key: &str, line: usize) -> Result<(String, Option<u16>), CorefileError> {
    let key = key.strip_prefix("dns://").unwrap_or(key);
    let (zone, port) = match key.rsplit_once(':') {
        Some((zone, port)) => {
            let port = port.parse::<u16>().map_err(|_| {
                err(
                    line,
                    &format!("server block key {key:?} has no valid port after ':'"),
                )
            })?;
            (zone, Some(port))
        }
        None => (key, None),
    };
    Ok((zone_name(zone, line)?, port))
}

/// A zone as written ("example.com.", ".", "Example.COM") -> lowercase, no trailing dot.
fn zone_name(zone: &str, line: usize) -> Result<String, CorefileError> {
    let lower = zone.trim_end_matches('.').to_ascii_lowercase();
    let valid = lower.is_empty()
        || (lower.len() <= 253
            && lower.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }));
    if !valid {
        return Err(err(line, &format!("{zone:?} is not a DNS zone name")));
    }
    Ok(lower)
}

fn err(line: usize, problem: &str) -> CorefileError {
    CorefileError {
        line,
        problem: problem.to_string(),
    }
}

/// One line's tokens ("{" and "}" are tokens of their own).
struct Line {
    number: usize,
    tokens: Vec<String>,
}

fn tokenize(corefile: &str) -> Result<Vec<Line>, CorefileError> {
    let mut lines = Vec::new();
    for (i, text) in corefile.lines().enumerate() {
        let number = i + 1;
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(&c) = chars.peek() {
            match c {
                c if c.is_whitespace() => {
                    chars.next();
                }
                '#' => break,
                '"' => {
                    chars.next();
                    let mut token = String::new();
                    loop {
                        match chars.next() {
                            Some('"') => break,
                            Some('\\') => token.extend(chars.next()),
                            Some(c) => token.push(c),
                            None => {
                                return Err(err(number, "a quoted argument has no closing '\"'"));
                            }
                        }
                    }
                    tokens.push(token);
                }
                _ => {
                    let mut token = String::new();
                    while let Some(&c) = chars.peek() {
                        if c.is_whitespace() || c == '"' {
                            break;
                        }
                        token.push(c);
                        chars.next();
                    }
                    // "example.com{", "9.9.9.9}", "}foo": braces glued to the ends of a
                    // word are tokens of their own, as Caddy reads them.
                    let mut word = token.as_str();
                    while word.len() > 1 && word.starts_with('}') {
                        tokens.push("}".into());
                        word = &word[1..];
                    }
                    let mut closing = Vec::new();
                    while word.len() > 1 && (word.ends_with('{') || word.ends_with('}')) {
                        closing.push(word[word.len() - 1..].to_string());
                        word = &word[..word.len() - 1];
                    }
                    tokens.push(word.into());
                    tokens.extend(closing.into_iter().rev());
                }
            }
        }
        if !tokens.is_empty() {
            lines.push(Line { number, tokens });
        }
    }
    Ok(lines)
}

/// A server block: its keys and directives.
struct Block {
    line: usize,
    keys: Vec<String>,
    directives: Vec<Directive>,
}

/// A directive (plugin) line, or an option line inside a directive's block.
struct Directive {
    line: usize,
    name: String,
    args: Vec<String>,
    block: Vec<Directive>,
}

/// Tokens flattened with their line numbers, for the block parser.
struct Cursor<'a> {
    tokens: Vec<(usize, &'a str, bool)>, // (line, token, first on its line)
    at: usize,
}

fn blocks(lines: &[Line]) -> Result<Vec<Block>, CorefileError> {
    let tokens = lines
        .iter()
        .flat_map(|l| {
            l.tokens
                .iter()
                .enumerate()
                .map(move |(i, t)| (l.number, t.as_str(), i == 0))
        })
        .collect();
    let mut cursor = Cursor { tokens, at: 0 };
    let mut out = Vec::new();
    while let Some(&(line, _, _)) = cursor.tokens.get(cursor.at) {
        let mut keys = Vec::new();
        loop {
            match cursor.tokens.get(cursor.at) {
                None => {
                    return Err(err(
                        line,
                        "server block keys with no '{': write `ZONE:53 { ... }`",
                    ));
                }
                Some((_, "{", _)) => {
                    cursor.at += 1;
                    break;
                }
                Some((l, "}", _)) => return Err(err(*l, "'}' closes no block")),
                Some((_, key, _)) => {
                    keys.push(key.to_string());
                    cursor.at += 1;
                }
            }
        }
        if keys.is_empty() {
            return Err(err(
                line,
                "a '{' block with no server key before it (write `.:53 {`)",
            ));
        }
        if keys.iter().any(|k| k.starts_with('(')) {
            return Err(err(
                line,
                "snippets (`(name) { ... }`) and `import` are not supported; write the block out",
            ));
        }
        let directives = directives(&mut cursor, line, 1)?;
        out.push(Block {
            line,
            keys,
            directives,
        });
    }
    Ok(out)
}

/// Directives until the '}' closing the block opened at `open_line`.
fn directives(
    cursor: &mut Cursor<'_>,
    open_line: usize,
    depth: usize,
) -> Result<Vec<Directive>, CorefileError> {
    if depth > MAX_DEPTH {
        return Err(err(open_line, "blocks nested too deep"));
    }
    let mut out = Vec::new();
    loop {
        let Some(&(line, token, _)) = cursor.tokens.get(cursor.at) else {
            return Err(err(
                open_line,
                "this '{' is never closed: add the missing '}'",
            ));
        };
        cursor.at += 1;
        match token {
            "}" => return Ok(out),
            "{" => return Err(err(line, "a '{' with no directive before it on its line")),
            name => {
                let mut args = Vec::new();
                let mut block = Vec::new();
                while let Some(&(l, t, first)) = cursor.tokens.get(cursor.at) {
                    if first || l != line {
                        break;
                    }
                    cursor.at += 1;
                    match t {
                        "{" => {
                            block = directives(cursor, l, depth + 1)?;
                            break;
                        }
                        "}" => {
                            // "forward . 1.2.3.4 }": the block ends on the directive's line.
                            out.push(Directive {
                                line,
                                name: name.to_string(),
                                args,
                                block,
                            });
                            return Ok(out);
                        }
                        arg => args.push(arg.to_string()),
                    }
                }
                if name == "import" {
                    return Err(err(
                        line,
                        "`import` is not supported; write the imported lines out",
                    ));
                }
                out.push(Directive {
                    line,
                    name: name.to_string(),
                    args,
                    block,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kubeadm v1.20's Corefile (cmd/kubeadm/app/phases/addons/dns/manifests.go
    /// CoreDNSConfigMap) rendered for `cluster.local`, `/etc/resolv.conf`, no stub domain.
    const KUBEADM: &str = "\
.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
";

    fn addr(s: &str) -> ForwardTarget {
        ForwardTarget::Addr(s.parse().unwrap())
    }

    #[test]
    fn kubeadm_default_parses_without_warnings() {
        let p = parse(KUBEADM).unwrap();
        assert_eq!(
            p,
            Parsed {
                cluster_domain: Some("cluster.local".into()),
                settings_ttl: Some(30),
                pods_insecure: true,
                forward: vec![ForwardTarget::ResolvConf("/etc/resolv.conf".into())],
                stub_domains: vec![],
                warnings: vec![],
            }
        );
    }

    #[test]
    fn forward_addresses_with_and_without_ports() {
        let text = KUBEADM.replace(
            "forward . /etc/resolv.conf {",
            "forward . 1.2.3.4 5.6.7.8:5353 dns://[fd00::53]:53 2001:db8::1 {",
        );
        let p = parse(&text).unwrap();
        assert_eq!(
            p.forward,
            [
                addr("1.2.3.4:53"),
                addr("5.6.7.8:5353"),
                addr("[fd00::53]:53"),
                addr("[2001:db8::1]:53")
            ]
        );
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn extra_server_blocks_are_stub_domains() {
        let text = format!(
            "{KUBEADM}example.com:53 {{ forward . 10.0.0.1 }}\nCorp.Example.ORG. {{\n  errors\n  cache 30\n  forward . 10.0.0.2:5353 10.0.0.3\n}}\n"
        );
        let p = parse(&text).unwrap();
        assert_eq!(
            p.stub_domains,
            [
                ("example.com".to_string(), vec![addr("10.0.0.1:53")]),
                (
                    "corp.example.org".to_string(),
                    vec![addr("10.0.0.2:5353"), addr("10.0.0.3:53")]
                )
            ]
        );
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        // `forward ZONE ...` inside the "." block is a stub domain too.
        let p = parse(&KUBEADM.replace("    loop\n", "    forward consul 10.0.0.9\n    loop\n"))
            .unwrap();
        assert_eq!(
            p.stub_domains,
            [("consul".to_string(), vec![addr("10.0.0.9:53")])]
        );
    }

    #[test]
    fn kubernetes_domain_ttl_and_pod_modes() {
        let p = parse(
            &KUBEADM
                .replace("cluster.local in-addr", "k8s.example. in-addr")
                .replace("ttl 30", "ttl 5"),
        )
        .unwrap();
        assert_eq!(p.cluster_domain.as_deref(), Some("k8s.example"));
        assert_eq!(p.settings_ttl, Some(5));
        let p = parse(&KUBEADM.replace("pods insecure", "pods disabled")).unwrap();
        assert!(!p.pods_insecure);
        assert!(p.warnings.is_empty());
        let p = parse(&KUBEADM.replace("       pods insecure\n", "")).unwrap();
        assert!(!p.pods_insecure, "CoreDNS's default is pods disabled");
        let p = parse(&KUBEADM.replace("pods insecure", "pods verified")).unwrap();
        assert!(p.pods_insecure);
        assert_eq!(p.warnings.len(), 1);
        assert!(
            p.warnings[0].contains("line 8") && p.warnings[0].contains("verified"),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn other_plugins_and_options_are_warned_about_by_name_and_line() {
        let text = KUBEADM
            .replace("    ready\n", "    ready\n    rewrite name foo.example.com foo.default.svc.cluster.local\n    hosts {\n      1.2.3.4 foo\n    }\n")
            .replace("       ttl 30\n", "       ttl 30\n       endpoint_pod_names\n")
            .replace("max_concurrent 1000", "max_concurrent 1000\n       force_tcp");
        let p = parse(&text).unwrap();
        let w = p.warnings.join("\n");
        assert_eq!(p.warnings.len(), 4, "{w}");
        assert!(
            w.contains(
                "line 7: plugin \"rewrite\" is not supported by kubeboot's DNS and is ignored"
            ),
            "{w}"
        );
        assert!(w.contains("line 8: plugin \"hosts\""), "{w}");
        assert!(
            w.contains("kubernetes option \"endpoint_pod_names\""),
            "{w}"
        );
        assert!(w.contains("forward option \"force_tcp\""), "{w}");
        // Everything kubeadm's Corefile has is still read.
        assert_eq!(p.settings_ttl, Some(30));
        assert_eq!(
            p.forward,
            [ForwardTarget::ResolvConf("/etc/resolv.conf".into())]
        );
    }

    #[test]
    fn a_server_block_without_forward_is_warned_about() {
        let p = parse(&format!(
            "{KUBEADM}example.com {{\n  file /etc/db.example\n}}\n"
        ))
        .unwrap();
        assert!(p.stub_domains.is_empty());
        assert!(
            p.warnings.iter().any(|w| w.contains("\"file\"")),
            "{:?}",
            p.warnings
        );
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("example.com has no forward")),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        let cases: &[(&str, usize, &str)] = &[
            (".:53 {\n  errors\n", 1, "never closed"),
            (".:53 {\n  errors\n}\n}\n", 4, "closes no block"),
            (
                ".:53 {\n  forward . 1.2.3\n}\n",
                2,
                "\"1.2.3\" is not an IP address",
            ),
            (
                ".:53 {\n  forward . 10.0.0.1:99999\n}\n",
                2,
                "not an IP address",
            ),
            (".:53 {\n  forward .\n}\n", 2, "at least one target"),
            (
                ".:53 {\n  kubernetes cluster.local {\n    ttl forever\n  }\n}\n",
                3,
                "ttl \"forever\"",
            ),
            (
                ".:53 {\n  kubernetes cluster.local {\n    pods sometimes\n  }\n}\n",
                3,
                "unknown pods mode",
            ),
            (".:53\n", 1, "no '{'"),
            (".:abc {\n}\n", 1, "valid port"),
            ("exa mple!.com {\n}\n", 1, "not a DNS zone name"),
            (".:53 {\n  import common\n}\n", 2, "import"),
            (".:53 {\n  log \"unterminated\n}\n", 2, "closing"),
        ];
        for (text, line, problem) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.to_string().contains(problem), "{text:?}: {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("Corefile line {line}: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn comments_quotes_and_glued_braces() {
        let text = "# the cluster\n.:53{ # root\n  kubernetes \"cluster.local\" {\n    pods insecure # yes\n  }\n  forward . 9.9.9.9}\n";
        let p = parse(text).unwrap();
        assert_eq!(p.cluster_domain.as_deref(), Some("cluster.local"));
        assert!(p.pods_insecure);
        assert_eq!(p.forward, [addr("9.9.9.9:53")]);
    }
}
