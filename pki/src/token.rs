//! Bootstrap tokens `[a-z0-9]{6}.[a-z0-9]{16}` (kubeadm: apis/bootstraptoken; client-go
//! tools/bootstrap/token/util), their usages, extra groups, time to live and the data of
//! their `bootstrap-token-<id>` Secrets (k8s.io/cluster-bootstrap token/api).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use rand::Rng;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::PkiError;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;

/// A bootstrap token. `Display` prints `id.secret`; `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    id: String,
    secret: String,
}

impl BootstrapToken {
    /// A new random token (bootstraputil.GenerateBootstrapToken).
    pub fn generate() -> Self {
        let mut rng = rand::rngs::OsRng;
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
                .collect()
        };
        let id = pick(ID_LEN);
        let secret = pick(SECRET_LEN);
        Self { id, secret }
    }

    /// Parses `id.secret`.
    ///
    /// # Errors
    /// [`PkiError::InvalidToken`], which never repeats the secret.
    pub fn parse(value: &str) -> Result<Self, PkiError> {
        let fail = |reason| PkiError::InvalidToken { reason };
        let (id, secret) = value.split_once('.').ok_or_else(|| fail("missing '.'"))?;
        let valid = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if !valid(id, ID_LEN) {
            return Err(fail("the token ID must be 6 characters of [a-z0-9]"));
        }
        if !valid(secret, SECRET_LEN) {
            return Err(fail("the token secret must be 16 characters of [a-z0-9]"));
        }
        Ok(Self {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// The public part, named in the Secret `bootstrap-token-<id>`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The secret part.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl std::fmt::Display for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

impl std::fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BootstrapToken({}.<redacted>)", self.id)
    }
}

/// The usages a bootstrap token may have (bootstrapapi.KnownTokenUsages), in its order.
pub const KNOWN_USAGES: [&str; 2] = ["signing", "authentication"];
/// The Secret type of bootstrap tokens (bootstrapapi.SecretTypeBootstrapToken).
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The prefix of a token's Secret name (bootstrapapi.BootstrapTokenSecretPrefix).
pub const SECRET_PREFIX: &str = "bootstrap-token-";
/// Secret key: the token ID (bootstrapapi.BootstrapTokenIDKey).
pub const KEY_TOKEN_ID: &str = "token-id";
/// Secret key: the token secret (bootstrapapi.BootstrapTokenSecretKey).
pub const KEY_TOKEN_SECRET: &str = "token-secret";
/// Secret key: the description (bootstrapapi.BootstrapTokenDescriptionKey).
pub const KEY_DESCRIPTION: &str = "description";
/// Secret key: the RFC 3339 expiry (bootstrapapi.BootstrapTokenExpirationKey).
pub const KEY_EXPIRATION: &str = "expiration";
/// Secret key prefix of a usage, value `true` (bootstrapapi.BootstrapTokenUsagePrefix).
pub const USAGE_PREFIX: &str = "usage-bootstrap-";
/// Secret key: comma-separated extra groups (bootstrapapi.BootstrapTokenExtraGroupsKey).
pub const KEY_EXTRA_GROUPS: &str = "auth-extra-groups";
/// The prefix every extra group must have (bootstrapapi.BootstrapDefaultGroup + ":").
pub const GROUP_PREFIX: &str = "system:bootstrappers:";

/// The name of the Secret of token `id` (bootstraputil.BootstrapTokenSecretName).
pub fn secret_name(id: &str) -> String {
    format!("{SECRET_PREFIX}{id}")
}

fn is_token_chars(s: &str, n: usize) -> bool {
    s.len() == n
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Whether `s` is a token ID, `[a-z0-9]{6}` (bootstraputil.IsValidBootstrapTokenID).
pub fn is_valid_id(s: &str) -> bool {
    is_token_chars(s, ID_LEN)
}

/// Checks usages against [`KNOWN_USAGES`] (bootstraputil.ValidateUsages).
///
/// # Errors
/// [`PkiError::InvalidTokenUsage`] listing every unknown usage, sorted.
pub fn validate_usages(usages: &[String]) -> Result<(), PkiError> {
    let mut invalid: Vec<&str> = usages
        .iter()
        .map(String::as_str)
        .filter(|u| !KNOWN_USAGES.contains(u))
        .collect();
    invalid.sort_unstable();
    invalid.dedup();
    if invalid.is_empty() {
        Ok(())
    } else {
        Err(PkiError::InvalidTokenUsage {
            invalid: invalid.join(","),
        })
    }
}

/// Checks an extra group against `\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\z`
/// (bootstraputil.ValidateBootstrapGroupName).
///
/// # Errors
/// [`PkiError::InvalidBootstrapGroup`].
pub fn validate_group(group: &str) -> Result<(), PkiError> {
    let ok = group.strip_prefix(GROUP_PREFIX).is_some_and(|rest| {
        let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        !rest.is_empty()
            && rest.len() <= 256
            && rest.bytes().all(|b| allowed(b) || b == b':' || b == b'-')
            && rest.bytes().last().is_some_and(allowed)
    });
    if ok {
        Ok(())
    } else {
        Err(PkiError::InvalidBootstrapGroup {
            group: group.to_string(),
        })
    }
}

/// Parses a token time to live as Go's `time.ParseDuration` (`1s`, `2m`, `24h0m0s`); `0`
/// means the token never expires.
///
/// # Errors
/// [`PkiError::InvalidTtl`]: not a duration, negative, or more than Go's largest duration
/// (`2562047h47m16.854775807s`, what kubeadm accepts).
pub fn parse_ttl(value: &str) -> Result<Duration, PkiError> {
    components::config::duration::parse_go_duration(value).map_err(|reason| PkiError::InvalidTtl {
        value: value.to_string(),
        reason,
    })
}

/// `now + ttl` as RFC 3339 in UTC, as kubeadm writes the `expiration` key; `None` for a zero
/// TTL (the token never expires). A TTL below a second still expires, a second later.
///
/// # Errors
/// [`PkiError::TtlOutOfRange`] when the date would be past what RFC 3339 holds (checked
/// arithmetic: `SystemTime + Duration` and `time`'s conversion would panic).
pub fn expiration(now: SystemTime, ttl: Duration) -> Result<Option<String>, PkiError> {
    if ttl.is_zero() {
        return Ok(None);
    }
    let out_of_range = || PkiError::TtlOutOfRange {
        ttl_secs: ttl.as_secs(),
    };
    let ttl = ttl.max(Duration::from_secs(1));
    let at = now.checked_add(ttl).ok_or_else(out_of_range)?;
    let since_epoch = match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => time::Duration::try_from(d).ok(),
        Err(before) => time::Duration::try_from(before.duration())
            .ok()
            .and_then(time::Duration::checked_neg),
    };
    let at = since_epoch
        .and_then(|d| OffsetDateTime::UNIX_EPOCH.checked_add(d))
        .and_then(|t| t.replace_nanosecond(0).ok())
        .ok_or_else(out_of_range)?;
    at.format(&Rfc3339).map(Some).map_err(|_| out_of_range())
}

/// Parses an RFC 3339 `expiration` value.
pub fn parse_expiration(value: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(value, &Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// A bootstrap token as its Secret describes it (kubeadm: BootstrapTokenFromSecret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSecret {
    /// The token.
    pub token: BootstrapToken,
    /// The description, empty for none.
    pub description: String,
    /// The `expiration` value as written, if any.
    pub expiration: Option<String>,
    /// When it expires, if it does.
    pub expires: Option<SystemTime>,
    /// Usages, sorted as kubeadm lists them (by key name).
    pub usages: Vec<String>,
    /// Extra groups.
    pub groups: Vec<String>,
}

impl TokenSecret {
    /// Reads a token Secret's decoded `data`.
    ///
    /// # Errors
    /// [`PkiError::InvalidTokenSecret`] when the ID or secret is missing or malformed, the
    /// ID does not match the name, or the expiration is not RFC 3339.
    pub fn from_data(name: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<Self, PkiError> {
        let fail = |reason: String| PkiError::InvalidTokenSecret {
            name: name.to_string(),
            reason,
        };
        let get = |k: &str| data.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
        let id = get(KEY_TOKEN_ID).ok_or_else(|| fail(format!("no {KEY_TOKEN_ID:?} key")))?;
        let secret =
            get(KEY_TOKEN_SECRET).ok_or_else(|| fail(format!("no {KEY_TOKEN_SECRET:?} key")))?;
        if name != secret_name(&id) {
            return Err(fail(format!(
                "its name does not match its token ID {id:?} (want {:?})",
                secret_name(&id)
            )));
        }
        let token =
            BootstrapToken::parse(&format!("{id}.{secret}")).map_err(|e| fail(e.to_string()))?;
        let expiration = get(KEY_EXPIRATION);
        let expires = match &expiration {
            None => None,
            Some(e) => Some(
                parse_expiration(e)
                    .ok_or_else(|| fail(format!("expiration {e:?} is not RFC 3339")))?,
            ),
        };
        let usages = data
            .iter()
            .filter(|(k, v)| k.starts_with(USAGE_PREFIX) && v.as_slice() == b"true")
            .map(|(k, _)| k[USAGE_PREFIX.len()..].to_string())
            .collect();
        let groups = get(KEY_EXTRA_GROUPS)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            token,
            description: get(KEY_DESCRIPTION).unwrap_or_default(),
            expiration,
            expires,
            usages,
            groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usages_are_checked_against_the_known_ones() {
        let ok: Vec<String> = vec!["signing".into(), "authentication".into()];
        validate_usages(&ok).expect("known");
        let bad: Vec<String> = vec!["signing".into(), "zzz".into(), "aaa".into()];
        assert_eq!(
            validate_usages(&bad).expect_err("unknown").to_string(),
            "invalid bootstrap token usage string: aaa,zzz, valid usage options: signing,authentication"
        );
    }

    #[test]
    fn groups_must_be_bootstrappers() {
        validate_group("system:bootstrappers:kubeadm:default-node-token").expect("default");
        validate_group("system:bootstrappers:a").expect("short");
        for bad in [
            "system:bootstrappers:",
            "system:bootstrappers:x-",
            "system:bootstrappers:UPPER",
            "system:nodes",
            "system:bootstrappers",
        ] {
            let e = validate_group(bad).expect_err(bad);
            assert!(e.to_string().contains("must match"), "{e}");
        }
        let long = format!("system:bootstrappers:{}", "a".repeat(257));
        assert!(validate_group(&long).is_err());
    }

    #[test]
    fn ttl_parses_go_durations() {
        assert_eq!(parse_ttl("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_ttl("24h0m0s").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_ttl("0").unwrap(), Duration::ZERO);
        for bad in ["", "abc", "-1h", "10"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    /// Issue 8: `kubeboot token create --ttl 100000000h` panicked ("overflow adding duration
    /// to date"); it is now refused when the flag is parsed.
    #[test]
    fn ttl_past_go_durations_is_refused_by_the_parser() {
        let e = parse_ttl("100000000h").expect_err("too large");
        assert_eq!(
            e.to_string(),
            "invalid token TTL \"100000000h\": it is too large (max 2562047h47m16.854775807s); use a duration such as 1s, 2m or 3h, or 0 for a token that never expires"
        );
        let e = parse_ttl("-1h").expect_err("negative");
        assert!(e.to_string().contains("it is negative"), "{e}");
    }

    /// The largest TTL the parser lets through, from any plausible clock, and any TTL at all
    /// from an absurd one, end in a date or an error, never a panic.
    #[test]
    fn expiration_is_checked_arithmetic() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let max = parse_ttl("2562047h47m16.854775807s").expect("Go's max");
        assert_eq!(
            expiration(now, max).expect("in range").as_deref(),
            Some("2316-02-24T22:00:36Z")
        );
        let e = expiration(now, Duration::from_secs(100_000_000 * 3600)).expect_err("year 13000");
        assert!(e.to_string().contains("after the year 9999"), "{e}");
        assert!(expiration(now, Duration::MAX).is_err());
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(i64::MAX as u64 / 2);
        assert!(expiration(far, Duration::from_secs(1)).is_err());
        let before_1970 = SystemTime::UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(
            expiration(before_1970, Duration::from_secs(1))
                .expect("1969")
                .as_deref(),
            Some("1969-12-31T00:00:01Z")
        );
    }

    #[test]
    fn sub_second_ttl_expires_a_second_later_not_never() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            expiration(now, Duration::from_millis(500))
                .expect("in range")
                .as_deref(),
            Some("2023-11-14T22:13:21Z")
        );
    }

    #[test]
    fn expiration_is_rfc3339_utc_and_round_trips() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        let e = expiration(now, Duration::from_secs(3600))
            .expect("in range")
            .expect("expires");
        assert_eq!(e, "2023-11-14T23:13:20Z");
        assert_eq!(
            parse_expiration(&e),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_003_600))
        );
        assert_eq!(expiration(now, Duration::ZERO).expect("in range"), None);
    }

    #[test]
    fn token_secret_reads_kubeadm_data() {
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
            ("expiration", "2026-11-24T20:58:47Z"),
            ("description", "d"),
        ] {
            data.insert(k.to_string(), v.as_bytes().to_vec());
        }
        let t = TokenSecret::from_data("bootstrap-token-abcdef", &data).expect("valid");
        assert_eq!(t.token.to_string(), "abcdef.0123456789abcdef");
        assert_eq!(t.usages, vec!["authentication", "signing"]);
        assert_eq!(
            t.groups,
            vec!["system:bootstrappers:kubeadm:default-node-token"]
        );
        assert!(t.expires.is_some());
        assert_eq!(t.description, "d");
        let e = TokenSecret::from_data("bootstrap-token-zzzzzz", &data).expect_err("name");
        assert!(e.to_string().contains("does not match"), "{e}");
    }

    #[test]
    fn generated_tokens_parse() {
        let t = BootstrapToken::generate();
        let again = BootstrapToken::parse(&t.to_string()).expect("valid");
        assert_eq!(again, t);
        assert_eq!(t.id().len(), 6);
        assert_eq!(t.secret().len(), 16);
        assert!(!format!("{t:?}").contains(t.secret()));
    }

    #[test]
    fn split_and_errors() {
        let t = BootstrapToken::parse("abcdef.0123456789abcdef").expect("valid");
        assert_eq!((t.id(), t.secret()), ("abcdef", "0123456789abcdef"));
        let e = BootstrapToken::parse("ABCDEF.0123456789abcdef").expect_err("upper");
        assert!(e.to_string().contains("token ID"), "{e}");
        let e = BootstrapToken::parse("abcdef.secretsecret").expect_err("short");
        assert!(!e.to_string().contains("secretsecret"), "{e}");
        assert!(BootstrapToken::parse("abcdef0123456789abcdef").is_err());
    }
}
