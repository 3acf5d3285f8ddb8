//! Property tests of the config loader and the Go duration parser (issue 8: "an error or a
//! value, never a panic"): arbitrary text, mutated real kubeadm configs, and generated
//! plausible configs with extreme values all end in `Ok` or `Err` from `load` and
//! `resolve_init`; what they accept is within what later phases can compute with.

// The seeds are files of the repository (tests may read files; the crate may not).
#![allow(clippy::disallowed_methods)]

#[path = "support/mod.rs"]
mod support;

use components::config::duration::{
    self, DurationError, MAX_GO_DURATION, format_go_duration, parse_go_duration,
    parse_go_duration_nanos,
};
use components::config::load;
use proptest::prelude::*;
use support::configs::{
    duration_text, generated_config, join_seeds, resolve_file, resolve_join_file, seeds,
};
use support::mutate;

/// Cases per property: issue 8 asks for at least 10,000 per parser in CI.
const CASES: u32 = 10_000;

/// Loads, defaults and validates `content` as `kubeboot init --config` does; checks what an
/// accepted config promises the phases. True when it is accepted.
fn resolve(content: &str) -> bool {
    if let Some(cfg) = resolve_file(content) {
        let max_secs = duration::ceil_secs(MAX_GO_DURATION);
        for t in &cfg.bootstrap_tokens {
            assert!(t.ttl_secs <= max_secs, "ttl {} accepted", t.ttl_secs);
        }
        assert!(cfg.cluster.api_server.timeout_for_control_plane_secs <= max_secs);
        assert_ne!(cfg.local_api_endpoint.bind_port, 0);
        return true;
    }
    false
}

proptest! {
    #![proptest_config(mutate::config(CASES))]

    #[test]
    fn config_loader_takes_any_text(text in mutate::from_choices(400, |c| c.text(400))) {
        let _accepted = resolve(&text);
    }

    #[test]
    fn go_duration_parser_takes_any_text(text in duration_text()) {
        if let Ok(n) = parse_go_duration_nanos(&text) {
            // What it accepts fits Go's time.Duration, and the unsigned form agrees.
            match parse_go_duration(&text) {
                Ok(d) => prop_assert_eq!(u128::try_from(n).ok(), Some(d.as_nanos())),
                Err(e) => prop_assert!(n < 0 && e == DurationError::Negative),
            }
        }
    }

    #[test]
    fn go_duration_parser_checks_every_magnitude(n in any::<u64>(), unit in 0..4usize) {
        let (suffix, nanos) = [("ns", 1u128), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000)][unit];
        let want = u128::from(n) * nanos;
        let got = parse_go_duration(&format!("{n}{suffix}"));
        if want <= MAX_GO_DURATION.as_nanos() {
            prop_assert_eq!(got.map(|d| d.as_nanos()), Ok(want));
        } else {
            prop_assert_eq!(got, Err(DurationError::TooLarge));
        }
    }

    #[test]
    fn go_durations_round_trip(secs in 0..=9_223_372_036u64) {
        prop_assert_eq!(parse_go_duration(&format_go_duration(secs)).map(|d| d.as_secs()), Ok(secs));
    }
}

#[test]
fn config_loader_takes_mutated_kubeadm_configs() {
    let accepted = mutate::count(CASES, mutate::mutated(seeds()), |b| {
        resolve(&String::from_utf8_lossy(&b))
    });
    assert!(
        accepted >= CASES / 50,
        "only {accepted} of {CASES} mutants were valid"
    );
}

/// `kubeboot join --config` on mutated join configs: an error or a configuration whose
/// promises hold (pins in their compared form, tokens well-formed, a timeout that a deadline
/// can be computed from), never a panic.
#[test]
fn join_resolver_takes_mutated_join_configs() {
    for seed in join_seeds() {
        let text = String::from_utf8_lossy(&seed).into_owned();
        assert!(resolve_join_file(&text).is_some(), "seed refused:\n{text}");
    }
    let accepted = mutate::count(CASES, mutate::mutated(join_seeds()), |b| {
        let Some(cfg) = resolve_join_file(&String::from_utf8_lossy(&b)) else {
            return false;
        };
        assert!(cfg.discovery_timeout > std::time::Duration::ZERO);
        assert!(cfg.discovery_timeout <= MAX_GO_DURATION);
        let token_ok =
            |t: &str| t.len() == 23 && t.as_bytes()[6] == b'.' && !t.contains(char::is_uppercase);
        assert!(cfg.tls_bootstrap_token.is_empty() || token_ok(&cfg.tls_bootstrap_token));
        if let components::config::JoinDiscovery::Token {
            token,
            ca_cert_hashes,
            ..
        } = &cfg.discovery
        {
            assert!(token_ok(token), "{token}");
            for h in ca_cert_hashes {
                assert!(h.len() == 71 && h.starts_with("sha256:"), "{h}");
                assert_eq!(h, &h.to_lowercase());
            }
        }
        if let Some(cp) = &cfg.control_plane {
            assert!(cp.local_api_endpoint.bind_port > 0);
        }
        true
    });
    assert!(
        accepted >= CASES / 50,
        "only {accepted} of {CASES} mutants were valid"
    );
}

#[test]
fn config_loader_takes_generated_configs_with_extreme_values() {
    let accepted = mutate::count(CASES, generated_config(), |text| resolve(&text));
    assert!(
        accepted >= CASES / 100,
        "only {accepted} of {CASES} generated configs were valid"
    );
}

/// Deep nesting, many documents and alias expansion ("billion laughs", in a component config
/// document the loader keeps as text): refused or read, without overflowing the stack or
/// expanding aliases without bound. (The YAML parser is quadratic in the nesting depth:
/// 16,000 levels take seconds, which is slow but not a panic.)
#[test]
fn hostile_yaml_shapes_are_errors_or_values() {
    let deep = format!(
        "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\napiServer:\n  extraArgs: {}{}\n",
        "[".repeat(2_000),
        "]".repeat(2_000)
    );
    let mut laughs = String::from(
        "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\n---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nx0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..12 {
        let p = i - 1;
        laughs.push_str(&format!(
            "x{i}: &x{i} [*x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}]\n"
        ));
    }
    let many_docs = "---\n".repeat(100_000);
    assert!(load(&deep).is_err());
    assert!(!resolve(&many_docs));
    // Kept as text for the kubelet-start phase, which reads it (phases/tests/fuzz_init_config.rs).
    assert!(resolve(&laughs));
}
