//! Bootstrap tokens on the cluster: what `init phase bootstrap-token` and `kubeboot token
//! create|list|delete` share (kubeadm: cmd/token.go, phases/bootstraptoken/node/token.go).
//! Input checks and the table are pure; writes go through [`Cluster`].

use std::time::{Duration, SystemTime};

use anyhow::Context;
use components::names;
use k8s_openapi::api::core::v1::Secret;
use manifests::cluster::TokenSpec;
use pki::token as tk;
use pki::{BootstrapToken, TokenSecret};

use crate::cluster::{Cluster, secret_data};

pub use pki::token::parse_ttl;

/// A new random token (`kubeboot token generate`).
pub fn generate() -> BootstrapToken {
    BootstrapToken::generate()
}

/// What the user asked for a new token (flags or an InitConfiguration's bootstrapTokens).
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// The token, or `None` to generate one.
    pub token: Option<String>,
    /// Description.
    pub description: String,
    /// Time to live; zero for a token that never expires.
    pub ttl: Duration,
    /// Usages.
    pub usages: Vec<String>,
    /// Extra groups.
    pub groups: Vec<String>,
}

/// Checks a request and builds the Secret's content at `now` (pure).
///
/// # Errors
/// A malformed token, unknown usages, a group outside `system:bootstrappers:` or a TTL whose
/// expiry date does not exist; every check runs before anything is sent.
pub fn token_spec(req: &TokenRequest, now: SystemTime) -> anyhow::Result<TokenSpec> {
    let token = match &req.token {
        Some(t) => BootstrapToken::parse(t)?,
        None => BootstrapToken::generate(),
    };
    tk::validate_usages(&req.usages)?;
    for g in &req.groups {
        tk::validate_group(g)?;
    }
    Ok(TokenSpec {
        token,
        description: req.description.clone(),
        expiration: tk::expiration(now, req.ttl)?,
        usages: req.usages.clone(),
        groups: req.groups.clone(),
    })
}

/// Creates (or, unless `fail_if_exists`, replaces) the token's Secret (kubeadm:
/// UpdateOrCreateTokens).
///
/// # Errors
/// The token exists and `fail_if_exists`, or the API server refused.
pub fn create_token(c: &Cluster, spec: &TokenSpec, fail_if_exists: bool) -> anyhow::Result<()> {
    let id = spec.token.id();
    let name = tk::secret_name(id);
    let existing: Option<Secret> = c.get(Some(names::KUBE_SYSTEM), &name)?;
    if existing.is_some() && fail_if_exists {
        anyhow::bail!("a token with id {id:?} already exists");
    }
    c.create_or_update(&manifests::cluster::bootstrap_token_secret(spec))
        .with_context(|| format!("failed to create or update bootstrap token with name {name}"))
}

/// The bootstrap tokens on the cluster, with the Secrets that are not valid tokens as
/// messages (kubeadm prints those on stderr and goes on).
///
/// # Errors
/// The API server could not list Secrets.
pub fn list_tokens(c: &Cluster) -> anyhow::Result<(Vec<TokenSecret>, Vec<String>)> {
    let secrets: Vec<Secret> = c
        .list(
            Some(names::KUBE_SYSTEM),
            Some(&format!("type={}", tk::SECRET_TYPE)),
        )
        .context("failed to list bootstrap tokens")?;
    let mut tokens = Vec::new();
    let mut invalid = Vec::new();
    for s in &secrets {
        // A server that ignores the field selector (or the recorder) may return others.
        if s.type_.as_deref() != Some(tk::SECRET_TYPE) {
            continue;
        }
        let name = s.metadata.name.clone().unwrap_or_default();
        match TokenSecret::from_data(&name, &secret_data(s)) {
            Ok(t) => tokens.push(t),
            Err(e) => invalid.push(e.to_string()),
        }
    }
    Ok((tokens, invalid))
}

/// The token ID of a `token delete` argument: an ID, or a full token (kubeadm: RunDeleteTokens).
///
/// # Errors
/// Neither form.
pub fn delete_target(arg: &str) -> anyhow::Result<String> {
    if tk::is_valid_id(arg) {
        return Ok(arg.to_string());
    }
    match BootstrapToken::parse(arg) {
        Ok(t) => Ok(t.id().to_string()),
        Err(_) => anyhow::bail!(
            "given token didn't match pattern \"\\\\A([a-z0-9]{{6}})\\\\z\" or \"\\\\A([a-z0-9]{{6}})\\\\.([a-z0-9]{{16}})\\\\z\""
        ),
    }
}

/// Deletes the tokens named by `args` (IDs or tokens), after checking that every argument is
/// well formed and every token exists, so a bad argument changes nothing. Returns the deleted
/// IDs in order.
///
/// # Errors
/// A malformed argument, an unknown token, or the API server refused.
pub fn delete_tokens(c: &Cluster, args: &[String]) -> anyhow::Result<Vec<String>> {
    if args.is_empty() {
        anyhow::bail!(
            "missing subcommand; 'token delete' is missing token of form \"\\\\A([a-z0-9]{{6}})\\\\z\""
        );
    }
    let ids: Vec<String> = args
        .iter()
        .map(|a| delete_target(a))
        .collect::<anyhow::Result<_>>()?;
    for id in &ids {
        let found: Option<Secret> = c.get(Some(names::KUBE_SYSTEM), &tk::secret_name(id))?;
        if found.is_none() {
            anyhow::bail!(
                "failed to delete bootstrap token {id:?}: secrets {:?} not found",
                tk::secret_name(id)
            );
        }
    }
    for id in &ids {
        let name = tk::secret_name(id);
        if !c.delete::<Secret>(Some(names::KUBE_SYSTEM), &name)? {
            anyhow::bail!("failed to delete bootstrap token {id:?}: secrets {name:?} not found");
        }
    }
    Ok(ids)
}

/// apimachinery's duration.ShortHumanDuration: `5s`, `3m`, `23h`, `2d`, `1y`.
pub fn short_human_duration(remaining: Option<Duration>) -> String {
    let Some(d) = remaining else {
        return "<invalid>".into();
    };
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s / 60 < 60 {
        format!("{}m", s / 60)
    } else if s / 3600 < 24 {
        format!("{}h", s / 3600)
    } else if s / 3600 < 24 * 365 {
        format!("{}d", s / 3600 / 24)
    } else {
        format!("{}y", s / 3600 / 24 / 365)
    }
}

/// `kubeadm token list`'s table: the header and one row per token, each cell padded as
/// kubeadm pads them (`%-9s` TTL, `%-22s` usages, `%-56s` description), then aligned by a
/// tabwriter with minwidth 10, padding 3. kubeadm makes a new tabwriter for every token, so
/// the header is aligned with the first row only, and each later row on its own (pure: `now`
/// is a parameter).
pub fn token_table(tokens: &[TokenSecret], now: SystemTime) -> String {
    let header: Vec<String> = [
        "TOKEN",
        "TTL",
        "EXPIRES",
        "USAGES",
        "DESCRIPTION",
        "EXTRA GROUPS",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut out = String::new();
    for (i, t) in tokens.iter().enumerate() {
        let (ttl, expires) = match (&t.expires, &t.expiration) {
            (Some(at), Some(text)) => (
                short_human_duration(at.duration_since(now).ok()),
                text.clone(),
            ),
            _ => ("<forever>".to_string(), "<never>".to_string()),
        };
        let or_none = |s: String| {
            if s.is_empty() {
                "<none>".to_string()
            } else {
                s
            }
        };
        let row = vec![
            t.token.to_string(),
            format!("{ttl:<9}"),
            expires,
            format!("{:<22}", or_none(t.usages.join(","))),
            format!("{:<56}", or_none(t.description.clone())),
            or_none(t.groups.join(",")),
        ];
        if i == 0 {
            out.push_str(&tabwriter(&[header.clone(), row], 10, 3));
        } else {
            out.push_str(&tabwriter(&[row], 10, 3));
        }
    }
    if tokens.is_empty() {
        // kubeadm prints nothing at all when there is no token.
        return String::new();
    }
    out
}

/// Go's text/tabwriter with `minwidth`, `padding`, padchar ' ', no flags: every cell but a
/// line's last is padded to its column's width (widest cell + padding, at least minwidth).
fn tabwriter(rows: &[Vec<String>], minwidth: usize, padding: usize) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            widths[i] = widths[i].max((cell.chars().count() + padding).max(minwidth));
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}", w = widths[i]));
            }
        }
        out.push('\n');
    }
    out
}

/// kubeadm's join command on one line (cmd/util/join.go, with the line breaks removed as
/// `token create --print-join-command` removes them), for `kubeboot join`.
pub fn join_command(
    endpoint: &str,
    token: &str,
    ca_hashes: &[String],
    control_plane: bool,
    certificate_key: Option<&str>,
) -> String {
    let mut s = format!("kubeboot join {endpoint} --token {token} ");
    for h in ca_hashes {
        s.push_str(&format!("--discovery-token-ca-cert-hash {h} "));
    }
    if control_plane {
        s.push_str("--control-plane ");
        if let Some(k) = certificate_key {
            s.push_str(&format!("--certificate-key {k}"));
        }
    }
    s
}

/// The control-plane endpoint (`host:port`) and the CA pins of a kubeconfig's current
/// cluster, as kubeadm's getJoinCommand reads them from admin.conf.
///
/// # Errors
/// No current cluster, or its CA cannot be read.
pub fn join_facts(kubeconfig_yaml: &str) -> anyhow::Result<(String, Vec<String>)> {
    let kc = pki::Kubeconfig::from_yaml(kubeconfig_yaml)?;
    let cluster = kc
        .current_cluster()
        .context("failed to get default cluster config")?;
    let ca_b64 = cluster
        .cluster
        .certificate_authority_data
        .as_deref()
        .context("no CA certificates found in kubeconfig")?;
    let ca_pem = decode_ca(ca_b64)?;
    let hash =
        pki::ca_cert_hash(&ca_pem).context("failed to parse CA certificate from kubeconfig")?;
    Ok((cluster.cluster.server.replace("https://", ""), vec![hash]))
}

fn decode_ca(b64: &str) -> anyhow::Result<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .context("the kubeconfig's certificate-authority-data is not base64")?;
    String::from_utf8(bytes).context("the kubeconfig's certificate-authority-data is not PEM")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::out::Out;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn req(token: Option<&str>) -> TokenRequest {
        TokenRequest {
            token: token.map(str::to_string),
            description: String::new(),
            ttl: Duration::from_secs(86400),
            usages: vec!["signing".into(), "authentication".into()],
            groups: vec!["system:bootstrappers:kubeadm:default-node-token".into()],
        }
    }

    #[test]
    fn bad_input_is_refused_before_anything_is_sent() {
        assert!(token_spec(&req(Some("abcdef.short")), now()).is_err());
        let mut r = req(None);
        r.usages.push("bogus".into());
        assert!(
            token_spec(&r, now())
                .unwrap_err()
                .to_string()
                .contains("invalid bootstrap token usage string: bogus")
        );
        let mut r = req(None);
        r.groups = vec!["system:nodes".into()];
        assert!(
            token_spec(&r, now())
                .unwrap_err()
                .to_string()
                .contains("must match")
        );
        let spec = token_spec(&req(None), now()).expect("generated");
        assert_eq!(spec.expiration.as_deref(), Some("2023-11-15T22:13:20Z"));
    }

    /// Issue 8: a TTL past the calendar panicked in `now + ttl`; it is an error now.
    #[test]
    fn a_ttl_past_the_calendar_is_an_error() {
        let mut r = req(None);
        r.ttl = Duration::from_secs(100_000_000 * 3600);
        let e = token_spec(&r, now()).unwrap_err();
        assert!(e.to_string().contains("ends after the year 9999"), "{e}");
        r.ttl = Duration::MAX;
        assert!(token_spec(&r, now()).is_err());
    }

    #[test]
    fn create_refuses_an_existing_token_when_asked() {
        let spec = token_spec(&req(Some("abcdef.0123456789abcdef")), now()).unwrap();
        let secret =
            serde_json::to_value(manifests::cluster::bootstrap_token_secret(&spec)).unwrap();
        let c = Cluster::recording(Out::capture()).with_objects([secret]);
        let e = create_token(&c, &spec, true).unwrap_err();
        assert_eq!(e.to_string(), "a token with id \"abcdef\" already exists");
        create_token(&c, &spec, false).expect("init replaces");
        assert_eq!(c.recorded().last().unwrap().verb, "CREATE");
    }

    #[test]
    fn delete_checks_every_argument_first() {
        let spec = token_spec(&req(Some("abcdef.0123456789abcdef")), now()).unwrap();
        let secret =
            serde_json::to_value(manifests::cluster::bootstrap_token_secret(&spec)).unwrap();
        let c = Cluster::recording(Out::capture()).with_objects([secret]);
        let e = delete_tokens(&c, &["abcdef".into(), "zzzzzz".into()]).unwrap_err();
        assert!(e.to_string().contains("\"zzzzzz\""), "{e}");
        assert!(c.recorded().iter().all(|r| r.verb != "DELETE"));
        let e = delete_tokens(&c, &["abcdef".into(), "NOPE".into()]).unwrap_err();
        assert!(e.to_string().contains("didn't match pattern"), "{e}");
        assert_eq!(
            delete_tokens(&c, &["abcdef.0123456789abcdef".into()]).unwrap(),
            vec!["abcdef"]
        );
        assert!(delete_tokens(&c, &[]).is_err());
    }

    #[test]
    fn table_matches_kubeadms_layout() {
        let mut data = BTreeMap::new();
        for (k, v) in [
            ("token-id", "abcdef"),
            ("token-secret", "0123456789abcdef"),
            ("usage-bootstrap-signing", "true"),
            ("usage-bootstrap-authentication", "true"),
            (
                "auth-extra-groups",
                "system:bootstrappers:kubeadm:default-node-token",
            ),
            ("expiration", "2023-11-15T21:13:20Z"),
            (
                "description",
                "The default bootstrap token generated by 'kubeadm init'.",
            ),
        ] {
            data.insert(k.to_string(), v.as_bytes().to_vec());
        }
        let t = TokenSecret::from_data("bootstrap-token-abcdef", &data).unwrap();
        let table = token_table(&[t], now());
        // kubeadm 1.20.2 `token list` for the same Secret, 23 hours before expiry.
        assert_eq!(
            table,
            "TOKEN                     TTL         EXPIRES                USAGES                   DESCRIPTION                                                EXTRA GROUPS\n\
             abcdef.0123456789abcdef   23h         2023-11-15T21:13:20Z   authentication,signing   The default bootstrap token generated by 'kubeadm init'.   system:bootstrappers:kubeadm:default-node-token\n"
        );
    }

    #[test]
    fn join_command_is_kubeadms_on_one_line() {
        assert_eq!(
            join_command(
                "10.0.0.1:6443",
                "abcdef.0123456789abcdef",
                &["sha256:aa".into()],
                false,
                None
            ),
            "kubeboot join 10.0.0.1:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:aa "
        );
        assert!(
            join_command("e:6443", "t", &["sha256:aa".into()], true, Some("k"))
                .ends_with("--control-plane --certificate-key k")
        );
    }

    #[test]
    fn short_human_duration_is_apimachinerys() {
        let d = |s| short_human_duration(Some(Duration::from_secs(s)));
        assert_eq!(d(5), "5s");
        assert_eq!(d(180), "3m");
        assert_eq!(d(86399), "23h");
        assert_eq!(d(86400 * 3), "3d");
        assert_eq!(short_human_duration(None), "<invalid>");
    }
}
