//! `init phase bootstrap-token`: the initial bootstrap token, the RBAC that lets bootstrap
//! tokens get nodes, post CSRs and have them approved, and `kube-public/cluster-info` with
//! its anonymous Role (kubeadm: app/cmd/phases/init/bootstraptoken.go).

use std::time::Duration;

use anyhow::Context;
use components::names;
use manifests::cluster;

use crate::init::data::InitData;
use crate::runner::Phase;
use crate::say;
use crate::token::{TokenRequest, create_token, token_spec};

/// The `bootstrap-token` phase.
pub fn phase() -> Phase<InitData> {
    Phase::new(
        "bootstrap-token",
        "Generates bootstrap tokens used to join a node to a cluster",
        run,
    )
    .flags(&["config", "kubeconfig", "skip-token-print", "dry-run"])
}

fn run(d: &mut InitData) -> anyhow::Result<()> {
    let out = d.out.clone();
    let tokens = d.tokens()?;
    let specs = d
        .cfg
        .bootstrap_tokens
        .iter()
        .zip(&tokens)
        .map(|(t, token)| {
            token_spec(
                &TokenRequest {
                    token: Some(token.to_string()),
                    description: t.description.clone().unwrap_or_default(),
                    ttl: Duration::from_secs(t.ttl_secs),
                    usages: t.usages.clone(),
                    groups: t.groups.clone(),
                },
                d.now,
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let admin = d.layout.kubeconfig(names::ADMIN_KUBECONFIG);
    let admin_yaml = d.fs.read_string_if_exists(&admin)?.with_context(|| {
        format!(
            "{:?} is missing; run \"kubeboot init phase kubeconfig admin\" first",
            admin.display().to_string()
        )
    })?;
    let (ca_data, server) =
        admin_cluster(&admin_yaml).context("failed to load admin kubeconfig")?;

    match tokens.as_slice() {
        _ if d.skip_token_print => {}
        [] => {}
        [one] => say!(out, "bootstrap-token", "Using token: {one}"),
        many => {
            let shown: Vec<String> = many.iter().map(ToString::to_string).collect();
            say!(
                out,
                "bootstrap-token",
                "Using tokens: [{}]",
                shown.join(" ")
            );
        }
    }
    say!(
        out,
        "bootstrap-token",
        "Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles"
    );
    let c = d.cluster()?;
    for spec in &specs {
        create_token(c, spec, false).context("error updating or creating token")?;
    }
    say!(
        out,
        "bootstrap-token",
        "configured RBAC rules to allow Node Bootstrap tokens to get nodes"
    );
    c.create_or_update(&cluster::get_nodes_cluster_role())
        .context("error allowing bootstrap tokens to get Nodes")?;
    for (message, binding) in cluster::bootstrappers_rbac() {
        if let Some(m) = message {
            say!(out, "bootstrap-token", "{m}");
        }
        c.create_or_update(&binding)?;
    }
    say!(
        out,
        "bootstrap-token",
        "Creating the {:?} ConfigMap in the {:?} namespace",
        names::CLUSTER_INFO_CONFIGMAP,
        names::KUBE_PUBLIC
    );
    let kubeconfig = cluster::cluster_info_kubeconfig(&ca_data, &server);
    c.create_or_update(&cluster::cluster_info_config_map(&kubeconfig))
        .context("error creating bootstrap ConfigMap")?;
    let (role, binding) = cluster::cluster_info_rbac();
    c.create_or_update(&role)
        .and_then(|()| c.create_or_update(&binding))
        .context("error creating clusterinfo RBAC rules")?;
    Ok(())
}

/// admin.conf's current cluster: its CA data and server, which cluster-info copies.
fn admin_cluster(yaml: &str) -> anyhow::Result<(String, String)> {
    let kc = pki::Kubeconfig::from_yaml(yaml)?;
    let cluster = kc
        .current_cluster()
        .context("admin.conf has no current cluster")?;
    let ca = cluster
        .cluster
        .certificate_authority_data
        .clone()
        .context("admin.conf has no certificate-authority-data")?;
    Ok((ca, cluster.cluster.server.clone()))
}

#[cfg(test)]
mod tests {
    use crate::cluster::Cluster;
    use crate::init::data::tests::test_data;

    #[test]
    fn skip_token_print_withholds_the_token_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = test_data(dir.path());
        d.cfg.bootstrap_tokens[0].token = Some("abcdef.0123456789abcdef".into());
        d.api = Some(Cluster::recording(d.out.clone()));
        let phases: Vec<String> = ["certs", "kubeconfig", "bootstrap-token"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        crate::init::run(&mut d, &phases).expect("runs");
        let join = crate::init::join_commands(&mut d).unwrap().unwrap().0;
        assert!(join.contains("--token abcdef.0123456789abcdef"), "{join}");
        assert!(d.out.captured().contains("Using token: abcdef"));

        let mut d = test_data(dir.path());
        d.cfg.bootstrap_tokens[0].token = Some("abcdef.0123456789abcdef".into());
        d.api = Some(Cluster::recording(d.out.clone()));
        d.skip_token_print = true;
        crate::init::run(&mut d, &phases).expect("runs");
        let join = crate::init::join_commands(&mut d).unwrap().unwrap().0;
        assert!(join.contains("--token <value withheld>"), "{join}");
        let out = d.out.captured();
        assert!(!out.contains("abcdef.0123456789abcdef"), "{out}");
        // The token is still created.
        let rec = d.api.as_ref().unwrap().recorded();
        assert!(rec.iter().any(|r| r.verb == "CREATE"
            && r.body.as_ref().unwrap()["metadata"]["name"] == "bootstrap-token-abcdef"));
    }

    #[test]
    fn upload_config_and_bootstrap_token_send_kubeadms_requests_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = test_data(dir.path());
        d.cfg.bootstrap_tokens[0].token = Some("abcdef.0123456789abcdef".into());
        d.api = Some(Cluster::recording(d.out.clone()));
        let only: Vec<String> = ["certs", "kubeconfig", "upload-config", "bootstrap-token"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        crate::init::run(&mut d, &only).expect("runs");
        let rec = d.api.as_ref().unwrap().recorded();
        let got: Vec<String> = rec
            .iter()
            .map(|r| {
                format!(
                    "{} {}/{}",
                    r.verb,
                    r.resource,
                    r.name.clone().unwrap_or_else(|| {
                        r.body
                            .as_ref()
                            .and_then(|b| b["metadata"]["name"].as_str())
                            .unwrap_or("")
                            .to_string()
                    })
                )
            })
            .collect();
        // kubeadm 1.20.2 `init --dry-run` (manifests/tests/golden/v1.20.2/
        // init-dryrun-api-objects.txt), less the Node GET/PATCH kubeboot does in
        // mark-control-plane.
        assert_eq!(
            got,
            vec![
                "CREATE configmaps/kubeadm-config",
                "CREATE roles/kubeadm:nodes-kubeadm-config",
                "CREATE rolebindings/kubeadm:nodes-kubeadm-config",
                "CREATE configmaps/kubelet-config-1.20",
                "CREATE roles/kubeadm:kubelet-config-1.20",
                "CREATE rolebindings/kubeadm:kubelet-config-1.20",
                "GET secrets/bootstrap-token-abcdef",
                "CREATE secrets/bootstrap-token-abcdef",
                "CREATE clusterroles/kubeadm:get-nodes",
                "CREATE clusterrolebindings/kubeadm:get-nodes",
                "CREATE clusterrolebindings/kubeadm:kubelet-bootstrap",
                "CREATE clusterrolebindings/kubeadm:node-autoapprove-bootstrap",
                "CREATE clusterrolebindings/kubeadm:node-autoapprove-certificate-rotation",
                "CREATE configmaps/cluster-info",
                "CREATE roles/kubeadm:bootstrap-signer-clusterinfo",
                "CREATE rolebindings/kubeadm:bootstrap-signer-clusterinfo",
            ]
        );
        let out = d.out.captured();
        for line in [
            "[upload-config] Storing the configuration used in ConfigMap \"kubeadm-config\" in the \"kube-system\" Namespace",
            "[kubelet] Creating a ConfigMap \"kubelet-config-1.20\" in namespace kube-system with the configuration for the kubelets in the cluster",
            "[bootstrap-token] Using token: abcdef.0123456789abcdef",
            "[bootstrap-token] Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles",
            "[bootstrap-token] configured RBAC rules to allow Node Bootstrap tokens to get nodes",
            "[bootstrap-token] Creating the \"cluster-info\" ConfigMap in the \"kube-public\" namespace",
        ] {
            assert!(out.contains(line), "missing {line:?} in\n{out}");
        }
        // cluster-info holds admin.conf's server and CA.
        let ci = rec
            .iter()
            .find(|r| {
                r.resource == "configmaps"
                    && r.body.as_ref().unwrap()["metadata"]["name"] == "cluster-info"
            })
            .unwrap();
        let kc = ci.body.as_ref().unwrap()["data"]["kubeconfig"]
            .as_str()
            .unwrap();
        assert!(kc.contains("server: https://10.123.0.2:6443"), "{kc}");
    }
}
