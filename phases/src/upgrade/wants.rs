//! What the health gate ([`super::gate`]) waits for after each step or rollback: the
//! component's pod, its health URL and the check that tells which version answers.

use std::path::Path;

use components::{Version, names};
use k8s_openapi::api::core::v1::{Node, Pod};

use super::apply::{NodeFacts, Request, Step};
use super::etcd_data::minor_of;
use super::gate::Want;
use crate::cluster::Cluster;

/// The URL the gate checks: the readiness probe's when the pod's first container has an HTTP
/// one (kube-apiserver's `/readyz`: serving, not only alive), else its first HTTP probe's
/// ([`crate::health::targets`]).
pub(super) fn health_url(yaml: &str, component: &str) -> Option<String> {
    let mut pod: Pod = manifests::yaml::from_yaml(yaml).ok()?;
    if let Some(c) = pod.spec.as_mut().and_then(|s| s.containers.first_mut())
        && c.readiness_probe
            .as_ref()
            .is_some_and(|p| p.http_get.is_some())
    {
        c.startup_probe = None;
        c.liveness_probe = None;
    }
    crate::health::targets(&[(component.to_string(), pod)])
        .into_iter()
        .next()
        .map(|t| t.url)
}

pub(super) fn want_of(s: &Step, facts: &NodeFacts) -> Want {
    want_for(
        s.component,
        &s.manifest,
        &s.new_yaml,
        &s.image,
        s.agent,
        facts,
    )
}

/// What the gate waits for: the manifest's pod with `image`, its health URL, and the
/// version check that tells which binary answers.
pub(super) fn want_for(
    component: &str,
    manifest: &Path,
    yaml: &str,
    image: &str,
    agent: bool,
    facts: &NodeFacts,
) -> Want {
    let tag = components::image::ImageRef::parse(image)
        .ok()
        .and_then(|r| r.tag)
        .unwrap_or_default();
    let health = health_url(yaml, component);
    let version_url = match component {
        names::KUBE_APISERVER => health.as_ref().map(|h| {
            let base = h.rsplit_once('/').map_or(h.as_str(), |(b, _)| b);
            (format!("apiserver:{base}/version"), tag)
        }),
        names::ETCD => Some(("etcd".to_string(), minor_of(&tag))),
        names::KUBELET => Some(("kubelet".to_string(), tag)),
        _ if !agent => Some((
            format!("mirror:{component}-{}", facts.name),
            image.to_string(),
        )),
        _ => None,
    };
    Want {
        component: component.to_string(),
        manifest: manifest.to_path_buf(),
        image: image.to_string(),
        health_url: health,
        version_url,
        agent_runs_it: agent,
    }
}

/// The `/version` checks [`gate`] runs: the API server's (anonymous, certificate not
/// verified: it only tells which binary answers), etcd's (the member's own version, compared
/// by minor with the image tag's), the kubelet's (the Node's kubeletVersion), and a mirror
/// pod's running image under the kubelet runner.
pub(super) fn version_checker(
    req: &Request,
    facts: &NodeFacts,
) -> impl Fn(&str) -> Result<String, String> {
    let layout = req.inputs.layout.clone();
    let fs = req.inputs.fs.clone();
    let kubeconfig = req.inputs.kubeconfig.clone();
    let node = facts.name.clone();
    move |what: &str| -> Result<String, String> {
        let local_etcd_client = || -> Result<crate::etcd_members::EtcdClient, String> {
            crate::etcd_local::read(&fs, &layout)
                .map_err(|e| format!("{e:#}"))?
                .ok_or("no etcd manifest")?
                .client(&fs)
                .map_err(|e| format!("{e:#}"))
        };
        match what {
            apiserver if apiserver.starts_with("apiserver:") => {
                let client = crate::health::client();
                let v: serde_json::Value = client
                    .get(apiserver.trim_start_matches("apiserver:"))
                    .send()
                    .and_then(reqwest::blocking::Response::json)
                    .map_err(|e| e.to_string())?;
                v["gitVersion"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "no gitVersion".into())
            }
            "etcd" => {
                let client = local_etcd_client()?;
                let v =
                    client.version(&format!("https://127.0.0.1:{}", names::ETCD_CLIENT_PORT))?;
                // The image tag is `3.5.16-0`: the member must run that minor.
                Ok(minor_of(&v.server))
            }
            "etcd-cluster" => {
                let client = local_etcd_client()?;
                // The lowest minor any member runs: etcd raises its cluster version to it.
                let members = client.list().map_err(|e| format!("{e:#}"))?;
                let mut lowest: Option<Version> = None;
                for m in members {
                    // A member that does not answer is left out: see the caller.
                    let Some(url) = m.client_urls.first() else {
                        continue;
                    };
                    let Ok(v) = client.version(url) else { continue };
                    let Ok(v) = v.server.parse::<Version>() else {
                        continue;
                    };
                    lowest = Some(lowest.map_or(v.clone(), |l| l.min(v)));
                }
                let v = lowest.ok_or("no member answered")?;
                Ok(format!("{}.{}", v.major, v.minor))
            }
            "kubelet" => {
                let api = Cluster::from_kubeconfig(&kubeconfig).map_err(|e| format!("{e:#}"))?;
                let n = api
                    .get::<Node>(None, &node)
                    .map_err(|e| format!("{e:#}"))?
                    .ok_or("no Node")?;
                Ok(n.status
                    .and_then(|s| s.node_info)
                    .map(|i| i.kubelet_version)
                    .unwrap_or_default())
            }
            mirror => {
                let name = mirror.trim_start_matches("mirror:");
                let api = Cluster::from_kubeconfig(&kubeconfig).map_err(|e| format!("{e:#}"))?;
                let p = api
                    .get::<Pod>(Some(names::KUBE_SYSTEM), name)
                    .map_err(|e| format!("{e:#}"))?
                    .ok_or("no mirror pod yet")?;
                let cs = p
                    .status
                    .and_then(|s| s.container_statuses)
                    .unwrap_or_default();
                let c = cs.first().ok_or("no container status yet")?;
                if !c.ready {
                    return Err(format!("{} is not ready", c.image));
                }
                Ok(p.spec
                    .and_then(|s| s.containers.first().and_then(|c| c.image.clone()))
                    .unwrap_or_default())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::health_url;

    const PROBES: &str = r"
apiVersion: v1
kind: Pod
metadata: {name: kube-apiserver, namespace: kube-system}
spec:
  containers:
  - name: kube-apiserver
    image: k8s.gcr.io/kube-apiserver:v1.20.2
    livenessProbe:
      httpGet: {host: 10.0.0.1, path: /livez, port: 6443, scheme: HTTPS}
      initialDelaySeconds: 10
    readinessProbe:
      httpGet: {host: 10.0.0.1, path: /readyz, port: 6443, scheme: HTTPS}
    startupProbe:
      httpGet: {host: 10.0.0.1, path: /livez, port: 6443, scheme: HTTPS}
      initialDelaySeconds: 10
";

    #[test]
    fn the_gate_checks_the_readiness_url_when_there_is_one() {
        assert_eq!(
            health_url(PROBES, "kube-apiserver").as_deref(),
            Some("https://10.0.0.1:6443/readyz")
        );
        // Without a readiness probe (the controller-manager's manifest): the liveness one.
        let no_readiness = PROBES
            .lines()
            .filter(|l| !l.contains("readinessProbe") && !l.contains("/readyz"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            health_url(&no_readiness, "kube-apiserver").as_deref(),
            Some("https://10.0.0.1:6443/livez")
        );
        assert_eq!(health_url("not: [a pod", "kube-apiserver"), None);
    }
}
