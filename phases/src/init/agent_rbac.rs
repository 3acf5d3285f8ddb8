//! `init phase agent-rbac`: lets the kubeboot agents publish their static pods to the API,
//! approve joining nodes' kube-proxy certificates and give Nodes their podCIDRs, and nothing
//! else (no kubeadm equivalent: the kubelet publishes mirror pods with its node
//! identity). The agent authenticates with `/etc/kubernetes/kubeboot-agent.conf`
//! (`kubeconfig/agent`) as `kubeboot:agent:<node>` in the group `kubeboot:agents`.
//!
//! In this order, so that the agents get their rights only once the check on them is in place:
//! 1. wait until this node's agent answers on its admission webhook (`https://127.0.0.1:10263
//!    /healthz`): once the webhook configuration exists, every kube-system pod write through
//!    this API server needs it;
//! 2. label kube-system `kubernetes.io/metadata.name=kube-system` (1.21+ does it itself), the
//!    label the webhooks select it by;
//! 3. the ValidatingWebhookConfiguration `kubeboot-agent` (caBundle: the cluster CA);
//! 4. the ClusterRole `kubeboot:agent` and its RoleBinding to the group in kube-system only;
//! 5. the ClusterRole `kubeboot:kube-proxy-approver` and its ClusterRoleBinding to the group:
//!    the agents approve joining nodes' kube-proxy certificate requests (the checks are in
//!    `agent::csr_approval`, why RBAC cannot make them in `manifests::agent_rbac`);
//! 6. the ClusterRole `kubeboot:node-ipam` (Nodes, CSINodes) and its ClusterRoleBinding, the
//!    Role `kubeboot:node-ipam` in kube-system (the Lease `kubeboot-node-ipam`) and its
//!    RoleBinding, all to the group, and that Lease, held by nobody (kept if it exists): the agents of the control-plane nodes give Nodes their
//!    podCIDRs where the controller-manager runs without its node IPAM controller
//!    (`agent::node_ipam`). Applied on every cluster, as the other rights: whether the agents
//!    use them follows the controller-manager's manifest, which may change later.
//!
//! The agent publishes as soon as all exist; until then it retries quietly.

use std::time::Duration;

use anyhow::Context;
use components::names;
use k8s_openapi::api::core::v1::Namespace;
use manifests::agent_rbac;

use crate::health::{self, Target};
use crate::init::data::InitData;
use crate::runner::Phase;
use crate::say;

/// How long the phase waits for the agent's webhook to answer (it starts with the agent,
/// long before this phase, once `agent-start` wrote its certificate).
const WEBHOOK_WAIT: Duration = Duration::from_secs(60);

/// The `agent-rbac` phase.
pub fn phase() -> Phase<InitData> {
    Phase::new(
        "agent-rbac",
        "Allow the kubeboot agents to publish their static Pods, approve kube-proxy certificates and give podCIDRs, and nothing else",
        run,
    )
    .flags(&["config", "kubeconfig", "cert-dir", "dry-run"])
}

fn run(d: &mut InitData) -> anyhow::Result<()> {
    let out = d.out.clone();
    let ca = crate::shared::certs::read_ca_cert(&d.fs, &d.cert_dir())?;
    let c = d.cluster()?;
    if !c.is_recording() {
        let url = format!("https://127.0.0.1:{}/healthz", names::AGENT_WEBHOOK_PORT);
        let target = Target {
            component: "kubeboot agent admission webhook".to_string(),
            url: url.clone(),
        };
        health::wait_all(&[target], WEBHOOK_WAIT, |_, elapsed| {
            say!(
                out,
                "agent-rbac",
                "Waiting for the kubeboot agent's admission webhook at {url} ({} so far)",
                health::human(elapsed)
            );
        })
        .map_err(|failures| {
            let last = failures.first().map(|f| f.last.clone()).unwrap_or_default();
            anyhow::anyhow!(
                "the kubeboot agent's admission webhook did not answer at {url} within {} ({last}); it needs the agent running (\"kubeboot init phase agent-start\") and its serving certificate (\"kubeboot init phase agent-start\"); see the agent's log",
                health::human(WEBHOOK_WAIT)
            )
        })?;
    }
    let kube_system = c
        .get::<Namespace>(None, names::KUBE_SYSTEM)
        .context("could not read the kube-system namespace")?;
    c.create_or_update(&agent_rbac::with_metadata_name_label(
        kube_system,
        names::KUBE_SYSTEM,
    ))?;
    c.create_or_update(&agent_rbac::agent_webhook_configuration(ca.as_bytes()))?;
    say!(
        out,
        "agent-rbac",
        "Sending Pod writes in namespace {} to each control-plane node's kubeboot agent for admission ({})",
        names::KUBE_SYSTEM,
        agent_rbac::agent_webhook_url()
    );
    c.create_or_update(&agent_rbac::agent_cluster_role())?;
    c.create_or_update(&agent_rbac::agent_role_binding(names::KUBE_SYSTEM))?;
    say!(
        out,
        "agent-rbac",
        "Allowed the kubeboot agents (group {:?}) to publish their static Pods in namespace {}",
        names::KUBEBOOT_AGENTS_GROUP,
        names::KUBE_SYSTEM
    );
    c.create_or_update(&agent_rbac::agent_csr_approver_cluster_role())?;
    c.create_or_update(&agent_rbac::agent_csr_approver_binding())?;
    say!(
        out,
        "agent-rbac",
        "Allowed the kubeboot agents to approve joining nodes' kube-proxy client certificate requests (ClusterRole {:?})",
        names::KUBEBOOT_AGENT_CSR_APPROVER_ROLE
    );
    c.create_or_update(&agent_rbac::node_ipam_cluster_role())?;
    c.create_or_update(&agent_rbac::node_ipam_cluster_role_binding())?;
    c.create_or_update(&agent_rbac::node_ipam_lease_role())?;
    c.create_or_update(&agent_rbac::node_ipam_lease_role_binding())?;
    // Made here, held by nobody, and kept if it exists: an agent may hold it right now.
    c.create_or_retain(&agent_rbac::node_ipam_lease())?;
    say!(
        out,
        "agent-rbac",
        "Allowed the kubeboot agents to give Nodes their podCIDRs (ClusterRole {:?}, Lease {}/{})",
        names::KUBEBOOT_NODE_IPAM_ROLE,
        names::KUBE_SYSTEM,
        names::KUBEBOOT_NODE_IPAM_LEASE
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Cluster;
    use crate::init::data::tests::test_data;

    #[test]
    fn labels_kube_system_registers_the_webhook_then_grants_the_role() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = test_data(dir.path());
        let ca = pki::issue(
            pki::cert_spec("ca").expect("ca"),
            &pki::CertInputs::from_config(&d.cfg),
            None,
            d.now,
        )
        .expect("ca");
        d.fs.create_dir(&d.cert_dir(), 0o755).expect("dir");
        d.fs.write_public(&d.cert_dir().join("ca.crt"), ca.cert_pem.as_bytes())
            .expect("ca.crt");
        d.api = Some(Cluster::recording(d.out.clone()));
        run(&mut d).expect("runs");
        let rec = d.api.as_ref().expect("api").recorded();
        let writes: Vec<(String, String, Option<String>, Option<String>)> = rec
            .iter()
            .filter(|r| r.verb != "GET")
            .map(|r| {
                (
                    r.verb.clone(),
                    r.resource.clone(),
                    r.namespace.clone(),
                    r.body
                        .as_ref()
                        .and_then(|b| b["metadata"]["name"].as_str())
                        .map(str::to_string),
                )
            })
            .collect();
        let w = |verb: &str, res: &str, ns: Option<&str>, name: &str| {
            (
                verb.to_string(),
                res.to_string(),
                ns.map(str::to_string),
                Some(name.to_string()),
            )
        };
        // The check is in place before the agents get their rights.
        assert_eq!(
            writes,
            vec![
                w("CREATE", "namespaces", None, "kube-system"),
                w(
                    "CREATE",
                    "validatingwebhookconfigurations",
                    None,
                    "kubeboot-agent"
                ),
                w("CREATE", "clusterroles", None, "kubeboot:agent"),
                w(
                    "CREATE",
                    "rolebindings",
                    Some("kube-system"),
                    "kubeboot:agent"
                ),
                w(
                    "CREATE",
                    "clusterroles",
                    None,
                    "kubeboot:kube-proxy-approver"
                ),
                w(
                    "CREATE",
                    "clusterrolebindings",
                    None,
                    "kubeboot:kube-proxy-approver"
                ),
                w("CREATE", "clusterroles", None, "kubeboot:node-ipam"),
                w("CREATE", "clusterrolebindings", None, "kubeboot:node-ipam"),
                w("CREATE", "roles", Some("kube-system"), "kubeboot:node-ipam"),
                w(
                    "CREATE",
                    "rolebindings",
                    Some("kube-system"),
                    "kubeboot:node-ipam"
                ),
                w(
                    "CREATE",
                    "leases",
                    Some("kube-system"),
                    "kubeboot-node-ipam"
                ),
            ],
            "{rec:?}"
        );
        let body = |res: &str| {
            rec.iter()
                .find(|r| r.resource == res && r.verb == "CREATE")
                .and_then(|r| r.body.clone())
                .expect("body")
        };
        assert_eq!(
            body("namespaces")["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "kube-system"
        );
        // caBundle is the cluster CA the phase read.
        let bundle =
            body("validatingwebhookconfigurations")["webhooks"][0]["clientConfig"]["caBundle"]
                .as_str()
                .expect("caBundle")
                .to_string();
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(bundle)
            .expect("base64");
        assert_eq!(decoded, ca.cert_pem.as_bytes());
        let out = d.out.captured();
        assert!(
            out.contains("[agent-rbac] Allowed the kubeboot agents (group \"kubeboot:agents\")"),
            "{out}"
        );
        assert!(
            out.contains("[agent-rbac] Allowed the kubeboot agents to approve joining nodes' kube-proxy client certificate requests (ClusterRole \"kubeboot:kube-proxy-approver\")"),
            "{out}"
        );
        assert!(
            out.contains("[agent-rbac] Allowed the kubeboot agents to give Nodes their podCIDRs (ClusterRole \"kubeboot:node-ipam\", Lease kube-system/kubeboot-node-ipam)\n"),
            "{out}"
        );
        let lease_role = rec
            .iter()
            .find(|r| r.resource == "roles" && r.verb == "CREATE")
            .and_then(|r| r.body.clone())
            .expect("Role body");
        assert_eq!(
            lease_role["rules"][0]["resourceNames"][0],
            "kubeboot-node-ipam"
        );
        assert!(
            out.contains("[agent-rbac] Sending Pod writes in namespace kube-system to each control-plane node's kubeboot agent for admission (https://127.0.0.1:10263/admission/pods)"),
            "{out}"
        );
    }

    #[test]
    fn without_the_ca_it_names_the_phase_that_writes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = test_data(dir.path());
        d.api = Some(Cluster::recording(d.out.clone()));
        let e = run(&mut d).expect_err("no CA");
        assert!(
            format!("{e:#}").contains("kubeboot init phase certs ca"),
            "{e:#}"
        );
        assert!(d.api.as_ref().expect("api").recorded().is_empty());
    }
}
