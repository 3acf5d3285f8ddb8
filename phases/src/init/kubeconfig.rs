//! `init phase kubeconfig`: admin.conf, kubelet.conf, controller-manager.conf and
//! scheduler.conf with client certificates signed by the cluster CA (kubeadm:
//! app/cmd/phases/init/kubeconfig.go). Sub-phases come from `pki::KUBECONFIGS`.

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
            Phase::new(spec.name, spec.short, move |d: &mut InitData| run(d, spec)).flags(FLAGS)
        })
        .collect();
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
