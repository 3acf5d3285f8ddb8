//! Property tests of the static pod manifest reader (issue 8: "an error or a value, never a
//! panic"): arbitrary bytes, kubeadm's real manifests mutated, and generated manifests with
//! extreme grace periods and probe numbers. What the reader accepts can always be run and
//! stopped: the lifecycle gets through start, probes, stop and kill with it.

#[path = "../../components/tests/support/mutate.rs"]
mod mutate;

use std::path::Path;
use std::time::Instant;

use agent::BackoffConfig;
use agent::pod::lifecycle::{self, Action, Container, ContainerState, Event};
use agent::pod::spec::{MAX_GRACE, ProbeKind, StaticPod, parse_manifest};
use proptest::prelude::*;

/// Cases per property: issue 8 asks for at least 10,000 per parser in CI.
const CASES: u32 = 10_000;

fn golden() -> Vec<Vec<u8>> {
    // Read at run time (cargo and nextest set it), not baked in at compile time: a test
    // binary that cargo reuses from another checkout sharing the target directory must read
    // this checkout's files.
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::path::PathBuf::from,
        )
        .join("../manifests/tests/golden/v1.20.2");
    [
        "etcd.yaml",
        "kube-apiserver.yaml",
        "kube-controller-manager.yaml",
        "kube-scheduler.yaml",
    ]
    .iter()
    .map(|f| std::fs::read(dir.join(f)).expect("a golden manifest"))
    .collect()
}

/// Every container of an accepted pod goes through start, its probes' first deadlines,
/// removal (SIGTERM) and the grace period's end (SIGKILL) without a panic.
fn run_and_stop(pod: &StaticPod) {
    assert!(pod.grace <= MAX_GRACE, "grace {:?} accepted", pod.grace);
    let now = Instant::now();
    for spec in &pod.containers {
        let probes = ProbeKind::ALL
            .into_iter()
            .filter_map(|k| spec.probe(k).map(|p| (k, p.timing)))
            .collect();
        let c = Container::new(
            &spec.name,
            pod.restart_policy,
            pod.grace,
            BackoffConfig::default(),
            probes,
            now,
        );
        let (c, _) = lifecycle::next(&c, Event::Tick, now);
        let (c, _) = lifecycle::next(&c, Event::Started { pid: 42 }, now);
        let c = match c.next_deadline() {
            Some(at) => lifecycle::next(&c, Event::Tick, at).0,
            None => c,
        };
        let (c, actions) = lifecycle::next(&c, Event::Stop, now);
        assert!(
            actions.contains(&Action::Terminate { pid: 42 }),
            "{actions:?}"
        );
        let kill_at = c.next_deadline().expect("a SIGKILL deadline");
        let (c, actions) = lifecycle::next(&c, Event::Tick, kill_at);
        assert_eq!(actions, [Action::Kill { pid: 42 }]);
        assert!(matches!(
            c.state,
            ContainerState::Stopping { killed: true, .. }
        ));
    }
}

/// Reads `bytes` as a YAML and as a JSON manifest; true when either is accepted.
fn read(bytes: &[u8]) -> bool {
    let mut accepted = false;
    for path in [
        "/etc/kubernetes/manifests/x.yaml",
        "/etc/kubernetes/manifests/x.json",
    ] {
        for node in [None, Some("node1")] {
            if let Ok(pod) = parse_manifest(Path::new(path), bytes, node) {
                run_and_stop(&pod);
                accepted = true;
            }
        }
    }
    accepted
}

/// A number for an `int32` field: mostly in range (a value out of range is a YAML error
/// for the whole manifest), extremes and signs included.
fn int32(c: &mut mutate::Choices<'_>) -> String {
    match c.below(40) {
        0..=19 => c
            .pick(&["0", "1", "10", "-1", "2147483647", "-2147483648", "null"])
            .to_string(),
        20..=37 => (c.next() as i32).to_string(),
        38 => c
            .pick(&[
                "2147483648",
                "-2147483649",
                "1e999",
                "1.5",
                "\"10\"",
                "9223372036854775807",
            ])
            .to_string(),
        _ => (c.u64() as i64).to_string(),
    }
}

/// terminationGracePeriodSeconds (`int64`): around the agent's limit and the type's.
fn int64(c: &mut mutate::Choices<'_>) -> String {
    match c.below(4) {
        0 | 1 => c
            .pick(&[
                "30",
                "0",
                "-1",
                "9223372036",
                "9223372037",
                "9223372036854775807",
                "-9223372036854775808",
                "null",
            ])
            .to_string(),
        2 => (c.u64() as i64).to_string(),
        _ => (c.next() as i32).to_string(),
    }
}

/// A hostNetwork static pod with a probe of each kind, every number field extreme now and
/// then.
fn generated_manifest() -> impl Strategy<Value = String> {
    mutate::from_choices(48, |c| {
        let grace = int64(c);
        let policy = c.mostly(&["Always", "OnFailure", "Never"], &["Sometimes", "\"\""]);
        let port = c.mostly(
            &["probe", "8080", "1"],
            &["\"0\"", "65536", "-1", "\"\"", "\"nope\""],
        );
        let mut fields = || {
            [
                "initialDelaySeconds",
                "periodSeconds",
                "timeoutSeconds",
                "successThreshold",
                "failureThreshold",
            ]
            .iter()
            .map(|f| format!("      {f}: {}\n", int32(c)))
            .collect::<String>()
        };
        let (liveness, readiness, startup) = (fields(), fields(), fields());
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: fuzz\n  namespace: kube-system\nspec:\n  hostNetwork: true\n  restartPolicy: {policy}\n  terminationGracePeriodSeconds: {grace}\n  containers:\n  - name: c\n    image: k8s.gcr.io/pause:3.2\n    ports: [{{name: probe, containerPort: 8080}}]\n    livenessProbe:\n      httpGet: {{path: /healthz, port: {port}}}\n{liveness}    readinessProbe:\n      tcpSocket: {{port: {port}}}\n{readiness}    startupProbe:\n      exec: {{command: [\"true\"]}}\n{startup}"
        )
    })
}

proptest! {
    #![proptest_config(mutate::config(CASES))]

    #[test]
    fn manifest_reader_takes_any_bytes(bytes in mutate::from_choices(300, |c| {
        if c.chance(50) {
            c.text(300).into_bytes()
        } else {
            (0..c.below(300)).map(|_| c.next() as u8).collect::<Vec<u8>>()
        }
    })) {
        read(&bytes);
    }
}

#[test]
fn manifest_reader_takes_mutated_kubeadm_manifests() {
    let accepted = mutate::count(CASES, mutate::mutated(golden()), |b| read(&b));
    assert!(
        accepted >= CASES / 50,
        "only {accepted} of {CASES} mutants were read"
    );
}

#[test]
fn manifest_reader_takes_generated_manifests_with_extreme_numbers() {
    let accepted = mutate::count(CASES, generated_manifest(), |m| read(m.as_bytes()));
    assert!(
        accepted >= CASES / 50,
        "only {accepted} of {CASES} generated manifests were read"
    );
}
