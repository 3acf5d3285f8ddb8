//! `kubeboot dns`: the cluster DNS server (no kubeadm counterpart: kubeadm deploys CoreDNS).
//! The work is in `agent::dns`; this file is its flags.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Args;

/// Run the cluster DNS server (the process inside the kubeboot-dns pods)
///
/// Answers the Kubernetes DNS-based service discovery names (Services, headless Services'
/// endpoints, SRV, ExternalName, PTR, pod names) of the cluster domain from memory, fed by
/// watches on Services and Endpoints, and forwards other names to the upstream resolvers. It
/// is what the kube-system/kubeboot-dns Deployment runs behind the kube-dns Service where no
/// CoreDNS image is available; it is not meant to be started by hand on a node.
/// Edits to the coredns ConfigMap's Corefile are honoured for forwarders and stub domains,
/// and warned about otherwise.
#[derive(Args, Debug, Clone)]
pub struct DnsArgs {
    /// The kubeconfig to reach the API server with. (default: the pod's service account, in-cluster)
    #[arg(long, value_name = "path")]
    pub kubeconfig: Option<PathBuf>,
    /// The cluster's DNS domain (kubeadm's --service-dns-domain).
    #[arg(long, value_name = "domain", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Where to answer queries, over UDP and TCP; repeatable.
    #[arg(long, value_name = "ip:port", default_value = "0.0.0.0:53")]
    pub listen: Vec<SocketAddr>,
    /// Where GET /health answers 200 while the server runs (the liveness probe).
    #[arg(long, value_name = "ip:port", default_value = "0.0.0.0:8080")]
    pub health_listen: SocketAddr,
    /// Where GET /ready answers 200 once Services and Endpoints have synced, 503 before (the readiness probe).
    #[arg(long, value_name = "ip:port", default_value = "0.0.0.0:8181")]
    pub ready_listen: SocketAddr,
    /// The resolv.conf naming the upstream resolvers (`forward . /etc/resolv.conf`); read at start.
    #[arg(long, value_name = "path", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// The ConfigMap holding the Corefile, as <namespace>/<name>; watched. An empty value watches none.
    #[arg(
        long,
        value_name = "namespace/name",
        default_value = "kube-system/coredns"
    )]
    pub corefile_configmap: String,
    /// This server's own Service IPs (the kube-dns ClusterIP), never used as upstreams; repeatable.
    #[arg(long, value_name = "ip")]
    pub cluster_dns_ip: Vec<IpAddr>,
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(args: DnsArgs) -> anyhow::Result<()> {
    let corefile_configmap = configmap(&args.corefile_configmap)?;
    agent::dns::serve::run(agent::dns::serve::DnsConfig {
        kubeconfig: args.kubeconfig,
        cluster_domain: args.cluster_domain,
        listen: args.listen,
        health_listen: args.health_listen,
        ready_listen: args.ready_listen,
        resolv_conf: args.resolv_conf,
        corefile_configmap,
        cluster_dns_ips: args.cluster_dns_ip,
    })
}

/// `--corefile-configmap`: `<namespace>/<name>`, or empty for none.
fn configmap(value: &str) -> anyhow::Result<Option<(String, String)>> {
    if value.is_empty() {
        return Ok(None);
    }
    match value.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(Some((ns.to_string(), name.to_string())))
        }
        _ => anyhow::bail!(
            "--corefile-configmap {value:?} is not <namespace>/<name>; pass e.g. kube-system/coredns, or \"\" for none"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configmap_flag() {
        assert_eq!(
            configmap("kube-system/coredns").expect("valid"),
            Some(("kube-system".into(), "coredns".into()))
        );
        assert_eq!(configmap("").expect("valid"), None);
        for bad in ["coredns", "/coredns", "kube-system/", "a/b/c"] {
            let e = configmap(bad).expect_err(bad).to_string();
            assert!(e.contains("<namespace>/<name>"), "{e}");
        }
    }
}
