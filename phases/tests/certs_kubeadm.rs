//! `certs check-expiration` against the real kubeadm v1.20.2 (DESIGN.md tier 2): both read
//! the same PKI, which kubeboot's init phases wrote in a temp dir (with one kubeconfig
//! missing and one CA key removed), and print the same tables. kubeadm 1.20 always reads the
//! kubeconfigs from /etc/kubernetes, so it runs in a private mount namespace where the temp
//! dir is bind-mounted there; the host's /etc/kubernetes is never touched.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use phases::certs::CertsCtx;

/// Where kubeboot's report knowingly differs from kubeadm v1.20.2's, with the reason; the
/// comparison leaves out exactly these.
const DELIBERATE_DIFFERENCES: &[(&str, &str)] = &[
    (
        "kubeboot-agent-webhook",
        "kubeboot's own certificate (the agent's admission webhook), unknown to kubeadm",
    ),
    (
        "kubeboot-agent.conf",
        "kubeboot's own kubeconfig (the agent's identity), unknown to kubeadm",
    ),
];

fn kubeadm() -> PathBuf {
    let dir = std::env::var("KUBEBOOT_BIN_DIR").unwrap_or_else(|_| {
        panic!("KUBEBOOT_BIN_DIR is not set; run scripts/setup.sh to build kubeadm v1.20.2 and export it")
    });
    let path = Path::new(&dir).join("kubeadm");
    assert!(
        path.is_file(),
        "{} is missing; run scripts/setup.sh",
        path.display()
    );
    path
}

/// Minutes since the epoch of kubeadm's `Jan 02, 2006 15:04 UTC`, for a tolerance check.
fn minutes(date: &str) -> i64 {
    let format =
        time::macros::format_description!("[month repr:short] [day], [year] [hour]:[minute] UTC");
    let t =
        time::PrimitiveDateTime::parse(date, &format).unwrap_or_else(|e| panic!("{date:?}: {e}"));
    t.assume_utc().unix_timestamp() / 60
}

/// Compares two tables line by line: equal, except that an EXPIRES date may be a minute
/// apart (the two commands run at slightly different times) and RESIDUAL TIME with it.
fn assert_same_tables(kubeadm: &str, ours: &str) {
    let (k, o): (Vec<&str>, Vec<&str>) = (kubeadm.lines().collect(), ours.lines().collect());
    assert_eq!(k.len(), o.len(), "kubeadm:\n{kubeadm}\nkubeboot:\n{ours}");
    let mut expires_at = 0;
    for (kl, ol) in k.iter().zip(&o) {
        if let Some(col) = kl.find("EXPIRES") {
            expires_at = col;
        }
        if kl == ol {
            continue;
        }
        let date = |l: &str| l.get(expires_at..expires_at + 22).map(str::to_string);
        let (kd, od) = (date(kl), date(ol));
        let close =
            matches!((&kd, &od), (Some(a), Some(b)) if (minutes(a) - minutes(b)).abs() <= 1);
        let blank = |l: &str| {
            let mut s = l.to_string();
            s.replace_range(expires_at..expires_at + 22, &" ".repeat(22));
            s.split_whitespace()
                .filter(|w| !w.ends_with('d') && !w.ends_with('y'))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert!(
            close && blank(kl) == blank(ol),
            "line differs:\nkubeadm:  {kl:?}\nkubeboot: {ol:?}\n\nkubeadm:\n{kubeadm}\nkubeboot:\n{ours}"
        );
    }
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR and root (a private mount namespace)"]
fn check_expiration_prints_what_kubeadm_prints() {
    let kubeadm = kubeadm();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let mut d = common::data(root);
    let only: Vec<String> = ["certs", "kubeconfig"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    phases::init::run(&mut d, &only).expect("certs and kubeconfig phases");
    phases::shared::certs::agent_webhook_cert(&mut d).expect("agent webhook cert");
    let k8s = root.join("etc/kubernetes");
    // A missing kubeconfig and an externally managed CA, as kubeadm reports them.
    std::fs::remove_file(k8s.join("controller-manager.conf")).expect("rm");
    std::fs::remove_file(k8s.join("pki/front-proxy-ca.key")).expect("rm");
    let config = root.join("kubeadm.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\nlocalAPIEndpoint:\n  advertiseAddress: 10.123.0.2\nnodeRegistration:\n  name: node1\n---\napiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\nkubernetesVersion: v1.20.2\ncertificatesDir: {}\n",
            k8s.join("pki").display()
        ),
    )
    .expect("config");

    let script = format!(
        "mount --bind '{}' /etc/kubernetes && exec '{}' certs check-expiration --config '{}'",
        k8s.display(),
        kubeadm.display(),
        config.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("runs unshare");
    let theirs = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "kubeadm failed:\n{theirs}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let fs = agent::host::fs::Fs::real();
    let mut cluster = phases::certs::init_config_from_file(&fs, &config)
        .expect("config")
        .cluster;
    // The layout is rooted in the temp dir: the directory as the node sees it.
    cluster.certificates_dir = "/etc/kubernetes/pki".into();
    let ctx = CertsCtx {
        layout: components::Layout::under(root),
        fs,
        out: phases::out::Out::capture(),
        cluster,
        cert_dir_flag: None,
        now: SystemTime::now(),
    };
    let mut info = phases::certs::expiration::check_expiration(&ctx).expect("report");
    for (name, _why) in DELIBERATE_DIFFERENCES {
        let before = info.certificates.len();
        info.certificates.retain(|c| c.name != *name);
        assert_eq!(before - 1, info.certificates.len(), "kubeboot lists {name}");
    }
    let ours = pki::expiry::table(&info);
    assert!(
        theirs.contains("!MISSING! controller-manager.conf"),
        "{theirs}"
    );
    assert!(theirs.contains("front-proxy-ca          yes"), "{theirs}");
    assert_same_tables(&theirs, &ours);
}
