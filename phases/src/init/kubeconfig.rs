//! `init phase kubeconfig`: admin.conf, kubelet.conf, controller-manager.conf and
//! scheduler.conf with client certificates signed by the cluster CA (kubeadm:
//! app/cmd/phases/init/kubeconfig.go), and from Kubernetes 1.29 super-admin.conf, with
//! admin.conf in `kubeadm:cluster-admins` instead of `system:masters`. Sub-phases come from
//! `pki::KUBECONFIGS`.

use anyhow::Context;
use pki::{Decision, Issuer, KubeconfigSpec};

use crate::init::data::InitData;
use crate::runner::Phase;
use crate::say;

const FLAGS: &[&str] = &[
    "config",
    "cert-dir",
    "kubernetes-version",
    "apiserver-advertise-address",
    "apiserver-bind-port",
    "control-plane-endpoint",
    "node-name",
    "dry-run",
];

/// The `kubeconfig` phase and one sub-phase per file.
pub fn phase() -> Phase<InitData> {
    let mut p = Phase::new("kubeconfig", "Generate all kubeconfig files necessary to establish the control plane and the admin kubeconfig file", |d: &mut InitData| {
        say!(d.out, "kubeconfig", "Using kubeconfig folder {:?}", d.layout.kubernetes_dir().display().to_string());
        Ok(())
    })
    .flags(FLAGS);
    p.children = pki::KUBECONFIGS
        .iter()
        .map(|spec: &'static KubeconfigSpec| {
            Phase::new(spec.name, spec.short, move |d: &mut InitData| {
                let spec = pki::kubeconfig::versioned(spec, &d.cfg.cluster.kubernetes_version);
                run(d, spec)
            })
            .flags(FLAGS)
        })
        .collect();
    // kubeadm >= 1.29: super-admin.conf, right after admin.conf (phases/init/kubeconfig.go).
    let super_admin = &pki::kubeconfig::SUPER_ADMIN_KUBECONFIG;
    p.children.insert(
        1,
        Phase::new(
            super_admin.name,
            super_admin.short,
            move |d: &mut InitData| run(d, super_admin),
        )
        .when(|d| components::catalogue::has_super_admin(&d.cfg.cluster.kubernetes_version))
        .flags(FLAGS),
    );
    // kubeboot's own: the agent's identity for publishing its static pods to the API.
    let agent = &pki::kubeconfig::KUBEBOOT_AGENT_KUBECONFIG;
    p.children.push(
        Phase::new(agent.name, agent.short, move |d: &mut InitData| {
            run(d, agent)
        })
        .flags(FLAGS),
    );
    p
}

fn run(d: &mut InitData, spec: &'static KubeconfigSpec) -> anyhow::Result<()> {
    let path = d.layout.kubeconfig(spec.file_name);
    let shown = path.display().to_string();
    let (_, ca_key) = crate::shared::certs::cert_files(&d.cert_dir(), "ca");
    let ca_cert_pem = crate::shared::certs::read_ca_cert(&d.fs, &d.cert_dir())?;
    let cfg = &d.cfg;
    let ep = cfg.local_api_endpoint;
    let server = spec.server_url(
        cfg.cluster.control_plane_endpoint.as_deref(),
        ep.advertise_address,
        ep.bind_port,
    )?;
    let existing = d.fs.read_string_if_exists(&path)?;
    match pki::decide_kubeconfig(spec, existing.as_deref(), &ca_cert_pem, &server)
        .with_context(|| format!("{shown:?}"))?
    {
        Decision::Reuse => say!(
            d.out,
            "kubeconfig",
            "Using existing kubeconfig file: {shown:?}"
        ),
        Decision::Create => {
            let ca_key_pem = d.fs.read_string_if_exists(&ca_key)?.with_context(|| {
                format!("the CA key {:?} is missing; kubeboot needs it to sign the {} client certificate", ca_key.display().to_string(), spec.file_name)
            })?;
            let ca = Issuer {
                cert_pem: ca_cert_pem,
                key_pem: ca_key_pem,
            };
            let kubeconfig = pki::build_kubeconfig(
                spec,
                &cfg.node.name,
                &cfg.cluster.cluster_name,
                &server,
                &ca,
                cfg.cluster.encryption_algorithm,
                cfg.cluster.certificate_validity,
                d.now,
            )?;
            crate::node_record::create_dir(&d.fs, &d.layout, &d.layout.kubernetes_dir(), 0o755)?;
            crate::node_record::note_file(&d.fs, &d.layout, &path)?;
            d.fs.write_private(&path, kubeconfig.to_yaml().as_bytes())?;
            say!(
                d.out,
                "kubeconfig",
                "Writing {:?} kubeconfig file",
                spec.file_name
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::init::data::tests::test_data;

    /// A kubeconfig file's name and its client certificate's CN and O.
    type Written = (String, (String, Vec<String>));

    /// Runs `certs` and `kubeconfig` for `version`; the identity in each kubeconfig written,
    /// and the output.
    fn kubeconfigs(version: &str) -> (Vec<Written>, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = test_data(dir.path());
        d.cfg.cluster.kubernetes_version = version.parse().expect("version");
        crate::init::run(&mut d, &["certs".into(), "kubeconfig".into()]).expect("phases run");
        let mut found = Vec::new();
        for name in [
            "admin.conf",
            "super-admin.conf",
            "kubelet.conf",
            "controller-manager.conf",
            "scheduler.conf",
        ] {
            let path = d.layout.kubeconfig(name);
            if let Some(yaml) = d.fs.read_string_if_exists(&path).expect("readable") {
                let kc = pki::Kubeconfig::from_yaml(&yaml).expect("a kubeconfig");
                found.push((name.to_string(), kc.client_identity().expect("identity")));
            }
        }
        (found, d.out.captured())
    }

    fn id(cn: &str, groups: &[&str]) -> (String, Vec<String>) {
        (
            cn.to_string(),
            groups.iter().map(|g| g.to_string()).collect(),
        )
    }

    #[test]
    fn from_1_29_admin_conf_is_cluster_admins_and_super_admin_conf_is_written() {
        let (found, out) = kubeconfigs("v1.29.0");
        assert_eq!(
            found[..2],
            [
                (
                    "admin.conf".to_string(),
                    id("kubernetes-admin", &["kubeadm:cluster-admins"])
                ),
                (
                    "super-admin.conf".to_string(),
                    id("kubernetes-super-admin", &["system:masters"])
                ),
            ]
        );
        assert_eq!(found.len(), 5);
        let admin_at = out.find("Writing \"admin.conf\"").expect("admin.conf said");
        let super_at = out
            .find("[kubeconfig] Writing \"super-admin.conf\" kubeconfig file")
            .expect("super-admin.conf said");
        assert!(admin_at < super_at, "{out}");
    }

    #[test]
    fn v1_20_writes_kubeadm_1_20s_kubeconfigs_only() {
        let (found, out) = kubeconfigs("v1.20.2");
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "admin.conf",
                "kubelet.conf",
                "controller-manager.conf",
                "scheduler.conf"
            ]
        );
        assert_eq!(found[0].1, id("kubernetes-admin", &["system:masters"]));
        assert!(!out.contains("super-admin"), "{out}");
    }
}
