//! Property tests of bootstrap token input (issue 8: "an error or a value, never a panic"):
//! token and TTL parsing as `kubeboot token create` and `bootstrapTokens[]` take them, the
//! expiry computed from any TTL the parser accepts, and token Secrets as the API returns
//! them.

// The seeds are files of the repository (tests may read files; the crate may not).
#![allow(clippy::disallowed_methods)]

#[path = "../../components/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use pki::token::{self, BootstrapToken, TokenSecret};
use proptest::prelude::*;
use support::configs::resolve_file;
use support::mutate;

/// Cases per property: issue 8 asks for at least 10,000 per parser in CI.
const CASES: u32 = 10_000;

fn ttl_text() -> impl Strategy<Value = String> {
    support::configs::duration_text()
}

/// Token-like text: valid tokens, near misses, arbitrary text.
fn token_text() -> impl Strategy<Value = String> {
    mutate::from_choices(40, |c| match c.below(4) {
        0 => support::configs::token_from(c.u64()),
        1 => {
            let mut t = support::configs::token_from(c.u64());
            let at = c.below(23) as usize;
            t.replace_range(at..at, &c.text(2));
            t
        }
        _ => c.text(30),
    })
}

/// RFC 3339-like dates with every field out of range now and then, and arbitrary text.
fn date_text() -> impl Strategy<Value = String> {
    mutate::from_choices(12, |c| {
        if c.chance(80) {
            let frac = if c.chance(70) {
                String::new()
            } else {
                format!(".{}", c.next())
            };
            let zone = c.mostly(&["Z", "+00:00", "-07:30"], &["+24:00", "z", "", "+99:99"]);
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}{zone}",
                c.below(12_000),
                c.below(14),
                c.below(33),
                c.below(26),
                c.below(62),
                c.below(62)
            )
        } else {
            c.text(40)
        }
    })
}

/// A clock anywhere from 1970 to 2200: the TTLs the parser accepts (up to ~292 years) must
/// give a date from any of them.
fn plausible_now() -> impl Strategy<Value = SystemTime> {
    (0..7_258_118_400u64).prop_map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

proptest! {
    #![proptest_config(mutate::config(CASES))]

    #[test]
    fn token_parser_takes_any_text(text in token_text()) {
        if let Ok(t) = BootstrapToken::parse(&text) {
            prop_assert_eq!(t.to_string(), text);
            prop_assert!(token::is_valid_id(t.id()));
        }
    }

    #[test]
    fn ttl_parser_and_expiry_take_any_text(text in ttl_text(), now in plausible_now()) {
        if let Ok(ttl) = token::parse_ttl(&text) {
            let expiry = token::expiration(now, ttl);
            prop_assert!(expiry.is_ok(), "{text:?} accepted, then {expiry:?}");
            if let Ok(Some(e)) = expiry {
                prop_assert!(token::parse_expiration(&e).is_some_and(|at| at > now));
            }
        }
    }

    #[test]
    fn expiry_is_checked_for_any_clock_and_ttl(secs in any::<u64>(), nanos in 0..1_000_000_000u32, ttl in any::<u64>()) {
        // Whatever the inputs, a date or an error: SystemTime + Duration and the conversion
        // to a calendar date both panic on overflow when unchecked.
        if let Some(now) = SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos)) {
            let _ = token::expiration(now, Duration::from_secs(ttl));
        }
        if let Some(now) = SystemTime::UNIX_EPOCH.checked_sub(Duration::new(secs, nanos)) {
            let _ = token::expiration(now, Duration::from_secs(ttl));
        }
    }

    #[test]
    fn expiration_parser_takes_any_text(text in date_text()) {
        let _ = token::parse_expiration(&text);
    }

    #[test]
    fn token_secrets_from_the_api_are_read_or_refused(
        (id, secret) in token_text().prop_map(|t| match t.split_once('.') {
            Some((id, secret)) => (id.to_string(), secret.to_string()),
            None => (t, String::new()),
        }),
        expiration in prop::option::of(date_text()),
        extra in mutate::from_choices(40, |c| {
            let mut m = BTreeMap::new();
            for _ in 0..c.below(5) {
                let key = match c.below(5) {
                    0 => format!("usage-bootstrap-{}", c.pick(&["signing", "authentication", "x", ""])),
                    1 => "auth-extra-groups".to_string(),
                    2 => "description".to_string(),
                    _ => c.text(20),
                };
                let value = if c.chance(50) { "true".to_string() } else { c.text(40) };
                m.insert(key, value.into_bytes());
            }
            m
        }),
    ) {
        let mut data: BTreeMap<String, Vec<u8>> = extra;
        data.insert(token::KEY_TOKEN_ID.into(), id.clone().into_bytes());
        data.insert(token::KEY_TOKEN_SECRET.into(), secret.into_bytes());
        if let Some(e) = expiration {
            data.insert(token::KEY_EXPIRATION.into(), e.into_bytes());
        }
        let _ = TokenSecret::from_data(&token::secret_name(&id), &data);
        let _ = TokenSecret::from_data(&id, &data);
    }

    #[test]
    fn usages_and_groups_take_any_text(
        (usages, group) in mutate::from_choices(80, |c| {
            let usages: Vec<String> = (0..c.below(4))
                .map(|_| c.mostly(&["signing", "authentication"], &["", "Signing", "x"]).to_string())
                .collect();
            let group = match c.below(3) {
                0 => format!("system:bootstrappers:{}", c.text(300)),
                1 => c.pick(&["system:bootstrappers:kubeadm:default-node-token", "system:bootstrappers:"]).to_string(),
                _ => c.text(40),
            };
            (usages, group)
        }),
    ) {
        let _ = token::validate_usages(&usages);
        let _ = token::validate_group(&group);
    }
}

/// Every TTL `bootstrapTokens[].ttl` accepts (through the whole config resolver) gives an
/// expiry date at init: the TTL is validated before init changes anything, and nothing
/// accepted there can panic in the bootstrap-token phase.
#[test]
fn every_ttl_the_config_accepts_has_an_expiry() {
    let config = |ttl: &str| {
        format!(
            "apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\nbootstrapTokens:\n- ttl: {}\n",
            support::configs::quoted(ttl)
        )
    };
    let accepted = mutate::count(CASES, (ttl_text(), plausible_now()), |(ttl, now)| {
        let Some(cfg) = resolve_file(&config(&ttl)) else {
            return false;
        };
        let ttl = Duration::from_secs(cfg.bootstrap_tokens[0].ttl_secs);
        let expiry = token::expiration(now, ttl);
        assert!(expiry.is_ok(), "{ttl:?} at {now:?}: {expiry:?}");
        true
    });
    assert!(
        accepted >= CASES / 20,
        "only {accepted} of {CASES} TTLs were accepted"
    );
}
