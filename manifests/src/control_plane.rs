//! kube-apiserver, kube-controller-manager and kube-scheduler static pods (kubeadm:
//! phases/controlplane/manifests.go, GetStaticPodSpecs).

use std::collections::BTreeMap;
use std::net::IpAddr;

use components::Layout;
use components::catalogue::{self, Component, ProbeHost, ProbePort};
use components::config::{ControlPlaneComponent, Etcd, InitConfig};
use components::names;
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::HostPaths;
use crate::args::{self, Args, insert_all};
use crate::paths::NodePaths;
use crate::staticpod::{self, ProbeTarget, component_pod, component_resources};
use crate::volumes::control_plane_mounts;

/// The kube-apiserver static pod.
pub fn apiserver_pod(cfg: &InitConfig, layout: &Layout, host: &HostPaths) -> Pod {
    let endpoint = apiserver_endpoint(cfg);
    let annotations =
        BTreeMap::from([(names::ANNOTATION_APISERVER_ENDPOINT.to_string(), endpoint)]);
    control_plane_pod(
        cfg,
        layout,
        host,
        Component::KubeApiServer,
        apiserver_command(cfg, layout),
        annotations,
    )
}

/// The kube-controller-manager static pod.
pub fn controller_manager_pod(cfg: &InitConfig, layout: &Layout, host: &HostPaths) -> Pod {
    let command = controller_manager_command(cfg, layout, host);
    control_plane_pod(
        cfg,
        layout,
        host,
        Component::KubeControllerManager,
        command,
        BTreeMap::new(),
    )
}

/// The kube-scheduler static pod.
pub fn scheduler_pod(cfg: &InitConfig, layout: &Layout, host: &HostPaths) -> Pod {
    let command = scheduler_command(cfg, layout);
    control_plane_pod(
        cfg,
        layout,
        host,
        Component::KubeScheduler,
        command,
        BTreeMap::new(),
    )
}

fn control_plane_pod(
    cfg: &InitConfig,
    layout: &Layout,
    host: &HostPaths,
    component: Component,
    command: Vec<String>,
    annotations: BTreeMap<String, String>,
) -> Pod {
    let version = &cfg.cluster.kubernetes_version;
    let mounts = control_plane_mounts(cfg, layout, host);
    let (liveness, readiness, startup) = staticpod::component_probes(
        component,
        version,
        &probe_target(cfg, component),
        cfg.cluster.api_server.timeout_for_control_plane_secs,
    );
    let container = Container {
        name: component.name().to_string(),
        image: Some(catalogue::image(component, &image_repository(cfg), version)),
        image_pull_policy: Some("IfNotPresent".to_string()),
        command: Some(command),
        volume_mounts: Some(mounts.volume_mounts(component)).filter(|m| !m.is_empty()),
        liveness_probe: liveness,
        readiness_probe: readiness,
        startup_probe: startup,
        resources: Some(component_resources(catalogue::resource_requests(
            component, version,
        ))),
        ..Container::default()
    };
    component_pod(container, mounts.volumes(component), annotations)
}

/// The configured image repository, or kubeadm's default for the version.
pub(crate) fn image_repository(cfg: &InitConfig) -> String {
    match cfg.cluster.image_repository.as_str() {
        "" => catalogue::default_image_repository(&cfg.cluster.kubernetes_version).to_string(),
        repo => repo.to_string(),
    }
}

/// `host:port` of this node's API server (kubeadm: APIEndpoint.String).
pub fn apiserver_endpoint(cfg: &InitConfig) -> String {
    join_host_port(
        &cfg.local_api_endpoint.advertise_address.to_string(),
        cfg.local_api_endpoint.bind_port,
    )
}

/// Go's net.JoinHostPort: brackets around IPv6 hosts.
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Loopback in the advertise address's family (kubeadm: etcdLocalhostAddress).
pub(crate) fn loopback(cfg: &InitConfig) -> &'static str {
    match cfg.local_api_endpoint.advertise_address {
        IpAddr::V6(_) => "::1",
        IpAddr::V4(_) => "127.0.0.1",
    }
}

fn probe_target(cfg: &InitConfig, component: Component) -> ProbeTarget {
    let ports = catalogue::ports(component).expect("static pod component has ports");
    let health = ports.health;
    let host = match health.host {
        ProbeHost::AdvertiseAddress => {
            staticpod::probe_address(&cfg.local_api_endpoint.advertise_address.to_string())
        }
        // kubeadm: GetControllerManagerProbeAddress / GetSchedulerProbeAddress, which use
        // 127.0.0.1 whatever the address family.
        ProbeHost::Loopback => match component_settings(cfg, component)
            .and_then(|c| c.extra_args.get("bind-address"))
        {
            Some(addr) => staticpod::probe_address(addr),
            None => "127.0.0.1".to_string(),
        },
    };
    let port = match health.port {
        ProbePort::ApiServerBindPort => cfg.local_api_endpoint.bind_port,
        ProbePort::Fixed(p) => p,
    };
    ProbeTarget {
        host,
        port,
        scheme: health.scheme,
    }
}

fn component_settings(cfg: &InitConfig, component: Component) -> Option<&ControlPlaneComponent> {
    match component {
        Component::KubeApiServer => Some(&cfg.cluster.api_server.component),
        Component::KubeControllerManager => Some(&cfg.cluster.controller_manager),
        Component::KubeScheduler => Some(&cfg.cluster.scheduler),
        _ => None,
    }
}

/// Fixed catalogue flags, certificate files and forwarded feature gates of a component.
fn catalogue_args(cfg: &InitConfig, paths: &NodePaths<'_>, component: Component) -> Args {
    let version = &cfg.cluster.kubernetes_version;
    let mut a = Args::new();
    insert_all(&mut a, catalogue::flags(component, version));
    let local_etcd = matches!(cfg.cluster.etcd, Etcd::Local(_));
    for f in catalogue::cert_flags(component, local_etcd) {
        a.insert(f.name.to_string(), paths.cert(f.file));
    }
    let gates: Vec<String> = catalogue::passed_feature_gates(component, version)
        .filter_map(|gate| {
            cfg.cluster
                .feature_gates
                .get(gate)
                .map(|on| format!("{gate}={on}"))
        })
        .collect();
    if !gates.is_empty() {
        a.insert("feature-gates".to_string(), gates.join(","));
    }
    a
}

/// kube-apiserver's default flags before the user's extraArgs (kubeadm: getAPIServerCommand).
pub fn apiserver_default_args(cfg: &InitConfig, layout: &Layout) -> Args {
    let paths = NodePaths::new(cfg, layout);
    let c = &cfg.cluster;
    let mut a = catalogue_args(cfg, &paths, Component::KubeApiServer);
    a.insert(
        "advertise-address".into(),
        cfg.local_api_endpoint.advertise_address.to_string(),
    );
    a.insert(
        "secure-port".into(),
        cfg.local_api_endpoint.bind_port.to_string(),
    );
    a.insert(
        "service-cluster-ip-range".into(),
        c.networking.service_subnet.to_string(),
    );
    a.insert(
        "service-account-issuer".into(),
        format!("https://kubernetes.default.svc.{}", c.networking.dns_domain),
    );
    match &c.etcd {
        Etcd::External(external) => {
            a.insert("etcd-servers".into(), external.endpoints.join(","));
            if !external.ca_file.is_empty() {
                a.insert("etcd-cafile".into(), paths.node(&external.ca_file));
            }
            if !external.cert_file.is_empty() && !external.key_file.is_empty() {
                a.insert("etcd-certfile".into(), paths.node(&external.cert_file));
                a.insert("etcd-keyfile".into(), paths.node(&external.key_file));
            }
        }
        Etcd::Local(local) => {
            let servers = match local.extra_args.get("advertise-client-urls") {
                Some(urls) => urls.clone(),
                None => format!(
                    "https://{}",
                    join_host_port(loopback(cfg), names::ETCD_CLIENT_PORT)
                ),
            };
            a.insert("etcd-servers".into(), servers);
        }
    }
    a
}

/// kube-apiserver's command: defaults, then extraArgs with `authorization-mode` filtered as
/// kubeadm's getAuthzModes does.
pub fn apiserver_command(cfg: &InitConfig, layout: &Layout) -> Vec<String> {
    let mut extra = cfg.cluster.api_server.component.extra_args.clone();
    let modes = authorization_modes(
        extra
            .get("authorization-mode")
            .map(String::as_str)
            .unwrap_or(""),
    );
    extra.insert("authorization-mode".into(), modes);
    args::command(
        names::KUBE_APISERVER,
        &apiserver_default_args(cfg, layout),
        &extra,
    )
}

/// The API server's authorization modes: the user's valid modes in their order, or `Node,RBAC`
/// if none is valid (kubeadm: getAuthzModes).
pub fn authorization_modes(requested: &str) -> String {
    let valid: Vec<&str> = requested
        .split(',')
        .filter(|m| !m.is_empty() && catalogue::AUTHORIZATION_MODES.contains(m))
        .collect();
    if valid.is_empty() {
        catalogue::DEFAULT_AUTHORIZATION_MODES.join(",")
    } else {
        valid.join(",")
    }
}

/// kube-controller-manager's default flags (kubeadm: getControllerManagerCommand).
pub fn controller_manager_default_args(
    cfg: &InitConfig,
    layout: &Layout,
    host: &HostPaths,
) -> Args {
    let paths = NodePaths::new(cfg, layout);
    let c = &cfg.cluster;
    let mut a = catalogue_args(cfg, &paths, Component::KubeControllerManager);
    let kubeconfig = paths.kubeconfig(Component::KubeControllerManager);
    for flag in [
        "kubeconfig",
        "authentication-kubeconfig",
        "authorization-kubeconfig",
    ] {
        a.insert(flag.into(), kubeconfig.clone());
    }
    if host.external_ca {
        // The csrsigning controller then fails to start, as kubeadm intends.
        a.insert("cluster-signing-cert-file".into(), String::new());
        a.insert("cluster-signing-key-file".into(), String::new());
    }
    if let Some(pod_subnet) = &c.networking.pod_subnet {
        a.insert("allocate-node-cidrs".into(), "true".into());
        a.insert("cluster-cidr".into(), pod_subnet.to_string());
        a.insert(
            "service-cluster-ip-range".into(),
            c.networking.service_subnet.to_string(),
        );
    }
    if !c.cluster_name.is_empty() {
        a.insert("cluster-name".into(), c.cluster_name.clone());
    }
    a
}

/// kube-controller-manager's command.
pub fn controller_manager_command(
    cfg: &InitConfig,
    layout: &Layout,
    host: &HostPaths,
) -> Vec<String> {
    args::command(
        names::KUBE_CONTROLLER_MANAGER,
        &controller_manager_default_args(cfg, layout, host),
        &cfg.cluster.controller_manager.extra_args,
    )
}

/// kube-scheduler's default flags (kubeadm: getSchedulerCommand).
pub fn scheduler_default_args(cfg: &InitConfig, layout: &Layout) -> Args {
    let paths = NodePaths::new(cfg, layout);
    let mut a = catalogue_args(cfg, &paths, Component::KubeScheduler);
    let kubeconfig = paths.kubeconfig(Component::KubeScheduler);
    for flag in [
        "kubeconfig",
        "authentication-kubeconfig",
        "authorization-kubeconfig",
    ] {
        a.insert(flag.into(), kubeconfig.clone());
    }
    a
}

/// kube-scheduler's command.
pub fn scheduler_command(cfg: &InitConfig, layout: &Layout) -> Vec<String> {
    args::command(
        names::KUBE_SCHEDULER,
        &scheduler_default_args(cfg, layout),
        &cfg.cluster.scheduler.extra_args,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_modes_follow_kubeadm() {
        assert_eq!(authorization_modes(""), "Node,RBAC");
        assert_eq!(authorization_modes("RBAC,Node"), "RBAC,Node");
        assert_eq!(authorization_modes("Bogus,Webhook"), "Webhook");
        assert_eq!(authorization_modes("Bogus"), "Node,RBAC");
    }

    #[test]
    fn join_host_port_brackets_ipv6() {
        assert_eq!(join_host_port("10.0.0.1", 6443), "10.0.0.1:6443");
        assert_eq!(join_host_port("fd00::1", 2379), "[fd00::1]:2379");
    }
}
