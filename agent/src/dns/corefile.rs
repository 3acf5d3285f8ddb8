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
                    // "example.com{" and "}" glued to a word: Caddy splits braces at the
                    // ends of a token; do the same.
                    let opens = token.len() > 1 && token.ends_with('{');
                    let word = if opens {
                        &token[..token.len() - 1]
                    } else {
                        &token[..]
                    };
                    if word.len() > 1 && word.starts_with('}') {
                        tokens.push("}".into());
                        tokens.push(word[1..].into());
                    } else {
                        tokens.push(word.into());
                    }
                    if opens {
                        tokens.push("{".into());
                    }
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
