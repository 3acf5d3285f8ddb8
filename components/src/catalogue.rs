//! The system components per Kubernetes version: images, binaries, ports, health endpoints and
//! version-gated flags.
//!
//! Everything here is a table read by small lookup functions; nothing outside this module says
//! `if version < ...`. A fact that changed between minors is a row with the range of minors it
//! holds for (`since` inclusive, `until` exclusive), as kubeadm's code changed from release to
//! release (kubeadm: app/constants/constants.go, app/images/images.go,
//! app/phases/controlplane/manifests.go, app/phases/etcd/local.go).

use std::fmt;

use crate::Version;
use crate::names;

/// A Kubernetes minor release (`1.24`), what version gates compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Minor {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

/// Shorthand for a minor release: `v(1, 24)`.
pub const fn v(major: u32, minor: u32) -> Minor {
    Minor { major, minor }
}

/// The first minor every gate starts from, for facts as old as kubeboot's support.
pub const ANY: Minor = v(1, 0);
/// An `until` that has not come yet: the fact still holds in the newest release.
pub const NEVER: Minor = v(u32::MAX, u32::MAX);

impl Minor {
    /// The minor of a full version (`v1.20.2` -> `1.20`; a pre-release counts as its minor).
    pub fn of(version: &Version) -> Minor {
        v(version.major, version.minor)
    }
}

impl fmt::Display for Minor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The minors a fact holds for: `since <= minor < until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    /// First minor the fact holds for.
    pub since: Minor,
    /// First minor it no longer holds for ([`NEVER`] if it still does).
    pub until: Minor,
}

impl Gate {
    /// Always.
    pub const ALWAYS: Gate = Gate {
        since: ANY,
        until: NEVER,
    };

    /// True when the fact holds for `version`'s minor.
    pub fn contains(&self, version: &Version) -> bool {
        let m = Minor::of(version);
        self.since <= m && m < self.until
    }
}

/// The system components kubeboot knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// etcd (stacked, as a static pod).
    Etcd,
    /// kube-apiserver.
    KubeApiServer,
    /// kube-controller-manager.
    KubeControllerManager,
    /// kube-scheduler.
    KubeScheduler,
    /// kube-proxy.
    KubeProxy,
    /// The kubelet.
    Kubelet,
    /// CoreDNS (addon).
    CoreDns,
    /// The pause (sandbox) container.
    Pause,
}

impl Component {
    /// The control-plane static pods kubeadm writes, in kubeadm's init phase order
    /// (control-plane/{apiserver,controller-manager,scheduler}, then etcd/local).
    pub const STATIC_PODS: [Component; 4] = [
        Component::KubeApiServer,
        Component::KubeControllerManager,
        Component::KubeScheduler,
        Component::Etcd,
    ];

    /// Every component.
    pub const ALL: [Component; 8] = [
        Component::Etcd,
        Component::KubeApiServer,
        Component::KubeControllerManager,
        Component::KubeScheduler,
        Component::KubeProxy,
        Component::Kubelet,
        Component::CoreDns,
        Component::Pause,
    ];

    /// kubeadm's name (constants.KubeAPIServer, ...): pod name, container name, label value.
    pub fn name(self) -> &'static str {
        match self {
            Component::Etcd => names::ETCD,
            Component::KubeApiServer => names::KUBE_APISERVER,
            Component::KubeControllerManager => names::KUBE_CONTROLLER_MANAGER,
            Component::KubeScheduler => names::KUBE_SCHEDULER,
            Component::KubeProxy => names::KUBE_PROXY,
            Component::Kubelet => names::KUBELET,
            Component::CoreDns => "coredns",
            Component::Pause => "pause",
        }
    }

    /// Looks a component up by [`Component::name`].
    pub fn from_name(name: &str) -> Option<Component> {
        Component::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The host binary that runs it (the process runtime's view of its image).
    pub fn binary(self) -> &'static str {
        match self {
            Component::Pause => "pause",
            other => other.name(),
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------

/// The images kubeadm pins for one Kubernetes minor (kubeadm: constants.SupportedEtcdVersion,
/// PauseVersion, CoreDNSVersion/CoreDNSImageName of that release's `.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinorImages {
    /// The Kubernetes minor.
    pub minor: Minor,
    /// etcd image tag.
    pub etcd: &'static str,
    /// pause image tag.
    pub pause: &'static str,
    /// CoreDNS image name under the repository (`coredns`, later `coredns/coredns`).
    pub coredns_image: &'static str,
    /// CoreDNS image tag.
    pub coredns: &'static str,
}

const fn images(
    minor: Minor,
    etcd: &'static str,
    pause: &'static str,
    coredns_image: &'static str,
    coredns: &'static str,
) -> MinorImages {
    MinorImages {
        minor,
        etcd,
        pause,
        coredns_image,
        coredns,
    }
}

/// Images per minor, oldest first. Minors outside the table fall back to the nearest row, as
/// kubeadm's EtcdSupportedVersion does.
pub const IMAGES: &[MinorImages] = &[
    images(v(1, 19), "3.4.13-0", "3.2", "coredns", "1.7.0"),
    images(v(1, 20), "3.4.13-0", "3.2", "coredns", "1.7.0"),
    images(v(1, 21), "3.4.13-0", "3.4.1", "coredns/coredns", "v1.8.0"),
    images(v(1, 22), "3.5.0-0", "3.5", "coredns/coredns", "v1.8.4"),
    images(v(1, 23), "3.5.1-0", "3.6", "coredns/coredns", "v1.8.6"),
    images(v(1, 24), "3.5.3-0", "3.7", "coredns/coredns", "v1.8.6"),
    images(v(1, 25), "3.5.4-0", "3.8", "coredns/coredns", "v1.9.3"),
    images(v(1, 26), "3.5.6-0", "3.9", "coredns/coredns", "v1.9.3"),
    images(v(1, 27), "3.5.7-0", "3.9", "coredns/coredns", "v1.10.1"),
    images(v(1, 28), "3.5.9-0", "3.9", "coredns/coredns", "v1.10.1"),
    images(v(1, 29), "3.5.10-0", "3.9", "coredns/coredns", "v1.11.1"),
    images(v(1, 30), "3.5.12-0", "3.9", "coredns/coredns", "v1.11.1"),
    images(v(1, 31), "3.5.15-0", "3.10", "coredns/coredns", "v1.11.3"),
    images(v(1, 32), "3.5.16-0", "3.10", "coredns/coredns", "v1.11.3"),
    images(v(1, 33), "3.5.21-0", "3.10", "coredns/coredns", "v1.12.0"),
    images(v(1, 34), "3.6.4-0", "3.10.1", "coredns/coredns", "v1.12.1"),
];

/// The image row for `version`'s minor, or the nearest one (kubeadm falls back to the nearest
/// supported etcd version with a warning).
pub fn images_for(version: &Version) -> &'static MinorImages {
    let m = Minor::of(version);
    let first = IMAGES.first().expect("IMAGES is not empty");
    let last = IMAGES.last().expect("IMAGES is not empty");
    IMAGES
        .iter()
        .find(|row| row.minor == m)
        .unwrap_or(if m < first.minor { first } else { last })
}

/// True when `version`'s minor has its own row in [`IMAGES`] (kubeadm warns otherwise).
pub fn has_images_for(version: &Version) -> bool {
    IMAGES.iter().any(|row| row.minor == Minor::of(version))
}

/// The default image repository per range of minors (kubeadm: DefaultImageRepository; the
/// move from `k8s.gcr.io` to `registry.k8s.io` landed in 1.25).
pub const IMAGE_REPOSITORIES: &[(Gate, &str)] = &[
    (
        Gate {
            since: ANY,
            until: v(1, 25),
        },
        "k8s.gcr.io",
    ),
    (
        Gate {
            since: v(1, 25),
            until: NEVER,
        },
        "registry.k8s.io",
    ),
];

/// kubeadm's default image repository for `version`.
pub fn default_image_repository(version: &Version) -> &'static str {
    IMAGE_REPOSITORIES
        .iter()
        .find(|(gate, _)| gate.contains(version))
        .map(|(_, repo)| *repo)
        .expect("IMAGE_REPOSITORIES covers every minor")
}

/// The group of admin.conf's client certificate per range of minors (kubeadm:
/// phases/kubeconfig/kubeconfig.go, getKubeConfigSpecsBase). Up to 1.28 it is
/// `system:masters`, which no RBAC rule can take away; from 1.29 on (kubeadm 1.29's
/// constants.go, ClusterAdminsGroupAndClusterRoleBinding) it is `kubeadm:cluster-admins`,
/// bound to `cluster-admin` by a ClusterRoleBinding init creates, and only the break-glass
/// `super-admin.conf` of the first control-plane node is in `system:masters`.
pub const ADMIN_KUBECONFIG_GROUPS: &[(Gate, &str)] = &[
    (
        Gate {
            since: ANY,
            until: v(1, 29),
        },
        names::SYSTEM_PRIVILEGED_GROUP,
    ),
    (
        Gate {
            since: v(1, 29),
            until: NEVER,
        },
        names::CLUSTER_ADMINS_GROUP,
    ),
];

/// The minors whose `init` writes `super-admin.conf` (in `system:masters`) and creates the
/// `kubeadm:cluster-admins` ClusterRoleBinding with it (kubeadm 1.29: init's
/// EnsureAdminClusterRoleBinding).
pub const SUPER_ADMIN_KUBECONFIG: Gate = Gate {
    since: v(1, 29),
    until: NEVER,
};

/// The group admin.conf's client certificate carries at `version`.
pub fn admin_kubeconfig_group(version: &Version) -> &'static str {
    ADMIN_KUBECONFIG_GROUPS
        .iter()
        .find(|(gate, _)| gate.contains(version))
        .map(|(_, group)| *group)
        .expect("ADMIN_KUBECONFIG_GROUPS covers every minor")
}

/// Whether `init` at `version` writes `super-admin.conf` and binds admin.conf's group to
/// `cluster-admin` (the two go together: the binding is what admin.conf's rights rest on).
pub fn has_super_admin(version: &Version) -> bool {
    SUPER_ADMIN_KUBECONFIG.contains(version)
}

/// The image tag of a Kubernetes component (kubeadm: util.KubernetesVersionToImageTag, which
/// replaces the `+` of build metadata, absent from [`Version`], with `_`).
pub fn kubernetes_image_tag(version: &Version) -> String {
    version.to_string().replace('+', "_")
}

/// `<repository>/<name>:<tag>` (kubeadm: images.GetGenericImage).
pub fn generic_image(repository: &str, name: &str, tag: &str) -> String {
    format!("{repository}/{name}:{tag}")
}

/// The image of a component for `version` from `repository` (kubeadm: GetKubernetesImage,
/// GetEtcdImage, GetPauseImage, GetDNSImage without per-component overrides).
pub fn image(component: Component, repository: &str, version: &Version) -> String {
    let row = images_for(version);
    match component {
        Component::Etcd => generic_image(repository, names::ETCD, row.etcd),
        Component::Pause => generic_image(repository, "pause", row.pause),
        Component::CoreDns => generic_image(repository, row.coredns_image, row.coredns),
        Component::KubeApiServer
        | Component::KubeControllerManager
        | Component::KubeScheduler
        | Component::KubeProxy
        | Component::Kubelet => {
            generic_image(repository, component.name(), &kubernetes_image_tag(version))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ports and health endpoints
// ---------------------------------------------------------------------------------------------

/// The URI scheme of a health endpoint (core/v1 URIScheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `HTTP`.
    Http,
    /// `HTTPS`.
    Https,
}

impl Scheme {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "HTTP",
            Scheme::Https => "HTTPS",
        }
    }
}

/// Which host a health endpoint is probed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeHost {
    /// The node's advertise address (kubeadm: GetAPIServerProbeAddress).
    AdvertiseAddress,
    /// Loopback of the advertise address's family (`127.0.0.1` or `::1`), unless the
    /// component's `bind-address` (or etcd's `listen-metrics-urls`) says otherwise.
    Loopback,
}

/// Which port a health endpoint is probed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbePort {
    /// The API server's configured bind port (`localAPIEndpoint.bindPort`).
    ApiServerBindPort,
    /// A fixed port.
    Fixed(u16),
}

/// Where a component answers health checks, as kubeadm's probes reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HealthEndpoint {
    /// Scheme.
    pub scheme: Scheme,
    /// Host.
    pub host: ProbeHost,
    /// Port.
    pub port: ProbePort,
}

/// The kinds of probe a static pod container has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// livenessProbe.
    Liveness,
    /// readinessProbe.
    Readiness,
    /// startupProbe.
    Startup,
}

/// One probe of one component, with the minors it has that path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSpec {
    /// The component.
    pub component: Component,
    /// Which probe.
    pub kind: ProbeKind,
    /// The HTTP path, query included.
    pub path: &'static str,
    /// The minors it holds for.
    pub gate: Gate,
}

/// Ports and health endpoints of the static pod components (kubeadm: constants.go,
/// phases/controlplane/manifests.go, util/staticpod/utils.go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentPorts {
    /// The component.
    pub component: Component,
    /// Its secure serving port (the API server's is configurable; this is the default).
    pub port: u16,
    /// Its health endpoint.
    pub health: HealthEndpoint,
}

/// Ports and health endpoints.
pub const PORTS: &[ComponentPorts] = &[
    ComponentPorts {
        component: Component::KubeApiServer,
        port: names::DEFAULT_APISERVER_BIND_PORT,
        health: HealthEndpoint {
            scheme: Scheme::Https,
            host: ProbeHost::AdvertiseAddress,
            port: ProbePort::ApiServerBindPort,
        },
    },
    ComponentPorts {
        component: Component::KubeControllerManager,
        port: names::KUBE_CONTROLLER_MANAGER_PORT,
        health: HealthEndpoint {
            scheme: Scheme::Https,
            host: ProbeHost::Loopback,
            port: ProbePort::Fixed(names::KUBE_CONTROLLER_MANAGER_PORT),
        },
    },
    ComponentPorts {
        component: Component::KubeScheduler,
        port: names::KUBE_SCHEDULER_PORT,
        health: HealthEndpoint {
            scheme: Scheme::Https,
            host: ProbeHost::Loopback,
            port: ProbePort::Fixed(names::KUBE_SCHEDULER_PORT),
        },
    },
    ComponentPorts {
        component: Component::Etcd,
        port: names::ETCD_CLIENT_PORT,
        health: HealthEndpoint {
            scheme: Scheme::Http,
            host: ProbeHost::Loopback,
            port: ProbePort::Fixed(names::ETCD_METRICS_PORT),
        },
    },
];

/// The ports row of a static pod component, `None` for the others.
pub fn ports(component: Component) -> Option<&'static ComponentPorts> {
    PORTS.iter().find(|p| p.component == component)
}

/// Every probe kubeadm puts on a static pod, per range of minors. kubeadm 1.25 moved etcd to
/// etcd 3.5.3+'s per-member health checks (kubernetes PRs 110072 and 110744).
pub const PROBES: &[ProbeSpec] = &[
    ProbeSpec {
        component: Component::KubeApiServer,
        kind: ProbeKind::Liveness,
        path: "/livez",
        gate: Gate::ALWAYS,
    },
    ProbeSpec {
        component: Component::KubeApiServer,
        kind: ProbeKind::Readiness,
        path: "/readyz",
        gate: Gate::ALWAYS,
    },
    ProbeSpec {
        component: Component::KubeApiServer,
        kind: ProbeKind::Startup,
        path: "/livez",
        gate: Gate::ALWAYS,
    },
    ProbeSpec {
        component: Component::KubeControllerManager,
        kind: ProbeKind::Liveness,
        path: "/healthz",
        gate: Gate::ALWAYS,
    },
    ProbeSpec {
        component: Component::KubeControllerManager,
        kind: ProbeKind::Startup,
        path: "/healthz",
        gate: Gate::ALWAYS,
    },
    ProbeSpec {
        component: Component::KubeScheduler,
        kind: ProbeKind::Liveness,
        path: "/healthz",
        gate: Gate::ALWAYS,
    },
    ProbeSpec {
        component: Component::KubeScheduler,
        kind: ProbeKind::Startup,
        path: "/healthz",
        gate: Gate::ALWAYS,
    },
    ProbeSpec {
        component: Component::Etcd,
        kind: ProbeKind::Liveness,
        path: "/health",
        gate: Gate {
            since: ANY,
            until: v(1, 25),
        },
    },
    ProbeSpec {
        component: Component::Etcd,
        kind: ProbeKind::Startup,
        path: "/health",
        gate: Gate {
            since: ANY,
            until: v(1, 25),
        },
    },
    ProbeSpec {
        component: Component::Etcd,
        kind: ProbeKind::Liveness,
        path: "/health?exclude=NOSPACE&serializable=true",
        gate: Gate {
            since: v(1, 25),
            until: NEVER,
        },
    },
    ProbeSpec {
        component: Component::Etcd,
        kind: ProbeKind::Startup,
        path: "/health?serializable=false",
        gate: Gate {
            since: v(1, 25),
            until: NEVER,
        },
    },
];

/// The path of a component's probe of `kind` for `version`, `None` if it has no such probe.
pub fn probe_path(
    component: Component,
    kind: ProbeKind,
    version: &Version,
) -> Option<&'static str> {
    PROBES
        .iter()
        .find(|p| p.component == component && p.kind == kind && p.gate.contains(version))
        .map(|p| p.path)
}

// ---------------------------------------------------------------------------------------------
// Resource requests
// ---------------------------------------------------------------------------------------------

/// One resource request of a static pod container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceRequest {
    /// The component.
    pub component: Component,
    /// The resource (`cpu`, `memory`, `ephemeral-storage`).
    pub resource: &'static str,
    /// The quantity.
    pub quantity: &'static str,
    /// The minors it holds for.
    pub gate: Gate,
}

/// Resource requests (kubeadm: staticpod.ComponentResources, etcd/local.go). etcd's
/// ephemeral-storage request left in 1.22 (kubernetes PR 102673; 1.20.8 and 1.21.2 dropped it
/// too, 1.20.2 has it).
pub const RESOURCE_REQUESTS: &[ResourceRequest] = &[
    ResourceRequest {
        component: Component::KubeApiServer,
        resource: "cpu",
        quantity: "250m",
        gate: Gate::ALWAYS,
    },
    ResourceRequest {
        component: Component::KubeControllerManager,
        resource: "cpu",
        quantity: "200m",
        gate: Gate::ALWAYS,
    },
    ResourceRequest {
        component: Component::KubeScheduler,
        resource: "cpu",
        quantity: "100m",
        gate: Gate::ALWAYS,
    },
    ResourceRequest {
        component: Component::Etcd,
        resource: "cpu",
        quantity: "100m",
        gate: Gate::ALWAYS,
    },
    ResourceRequest {
        component: Component::Etcd,
        resource: "memory",
        quantity: "100Mi",
        gate: Gate::ALWAYS,
    },
    ResourceRequest {
        component: Component::Etcd,
        resource: "ephemeral-storage",
        quantity: "100Mi",
        gate: Gate {
            since: ANY,
            until: v(1, 22),
        },
    },
];

/// The requests of a component for `version`, as `(resource, quantity)`.
pub fn resource_requests(
    component: Component,
    version: &Version,
) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
    RESOURCE_REQUESTS
        .iter()
        .filter(move |r| r.component == component && r.gate.contains(version))
        .map(|r| (r.resource, r.quantity))
}

// ---------------------------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------------------------

/// A default flag with a fixed value, for the minors it exists in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    /// The component.
    pub component: Component,
    /// The flag name without dashes.
    pub name: &'static str,
    /// Its value.
    pub value: &'static str,
    /// First minor kubeadm sets it in.
    pub since: Minor,
    /// First minor kubeadm no longer sets it in.
    pub until: Minor,
}

impl Flag {
    /// True when kubeadm sets this flag for `version`.
    pub fn applies(&self, version: &Version) -> bool {
        Gate {
            since: self.since,
            until: self.until,
        }
        .contains(version)
    }
}

const fn flag(component: Component, name: &'static str, value: &'static str) -> Flag {
    Flag {
        component,
        name,
        value,
        since: ANY,
        until: NEVER,
    }
}

const fn flag_until(
    component: Component,
    name: &'static str,
    value: &'static str,
    until: Minor,
) -> Flag {
    Flag {
        component,
        name,
        value,
        since: ANY,
        until,
    }
}

/// Default flags with fixed values (kubeadm: getAPIServerCommand, getControllerManagerCommand,
/// getSchedulerCommand, getEtcdCommand). Flags whose values come from the configuration
/// (addresses, paths, subnets) are built in `manifests`; [`CERT_FLAGS`] lists the file ones.
pub const FLAGS: &[Flag] = &[
    flag(Component::KubeApiServer, "allow-privileged", "true"),
    flag(
        Component::KubeApiServer,
        "enable-admission-plugins",
        "NodeRestriction",
    ),
    flag(
        Component::KubeApiServer,
        "enable-bootstrap-token-auth",
        "true",
    ),
    // The API server lost its insecure port in 1.24, and kubeadm the flag with it.
    flag_until(Component::KubeApiServer, "insecure-port", "0", v(1, 24)),
    flag(
        Component::KubeApiServer,
        "kubelet-preferred-address-types",
        "InternalIP,ExternalIP,Hostname",
    ),
    flag(
        Component::KubeApiServer,
        "requestheader-allowed-names",
        names::FRONT_PROXY_CLIENT_CN,
    ),
    flag(
        Component::KubeApiServer,
        "requestheader-extra-headers-prefix",
        "X-Remote-Extra-",
    ),
    flag(
        Component::KubeApiServer,
        "requestheader-group-headers",
        "X-Remote-Group",
    ),
    flag(
        Component::KubeApiServer,
        "requestheader-username-headers",
        "X-Remote-User",
    ),
    flag(
        Component::KubeControllerManager,
        "bind-address",
        "127.0.0.1",
    ),
    flag(
        Component::KubeControllerManager,
        "controllers",
        "*,bootstrapsigner,tokencleaner",
    ),
    flag(Component::KubeControllerManager, "leader-elect", "true"),
    // kubeadm dropped --port=0 from both in 1.23 (kubernetes PRs 104157 and 105034).
    flag_until(Component::KubeControllerManager, "port", "0", v(1, 23)),
    flag(
        Component::KubeControllerManager,
        "use-service-account-credentials",
        "true",
    ),
    flag(Component::KubeScheduler, "bind-address", "127.0.0.1"),
    flag(Component::KubeScheduler, "leader-elect", "true"),
    flag_until(Component::KubeScheduler, "port", "0", v(1, 23)),
    flag(Component::Etcd, "client-cert-auth", "true"),
    flag(Component::Etcd, "peer-client-cert-auth", "true"),
    flag(Component::Etcd, "snapshot-count", "10000"),
];

/// The fixed-value default flags of `component` for `version`, as `(name, value)`.
pub fn flags(
    component: Component,
    version: &Version,
) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
    FLAGS
        .iter()
        .filter(move |f| f.component == component && f.applies(version))
        .map(|f| (f.name, f.value))
}

/// A flag whose value is a file in the certificates directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertFlag {
    /// The component.
    pub component: Component,
    /// The flag name without dashes.
    pub name: &'static str,
    /// The file, relative to `certificatesDir` (kubeadm: constants.*CertName / *KeyName).
    pub file: &'static str,
    /// Only with a local (stacked) etcd: external etcd brings its own files.
    pub local_etcd_only: bool,
}

const fn cert(component: Component, name: &'static str, file: &'static str) -> CertFlag {
    CertFlag {
        component,
        name,
        file,
        local_etcd_only: false,
    }
}

/// The certificates, keys and CAs each component is pointed at: the certs each one needs.
pub const CERT_FLAGS: &[CertFlag] = &[
    cert(Component::KubeApiServer, "client-ca-file", "ca.crt"),
    CertFlag {
        component: Component::KubeApiServer,
        name: "etcd-cafile",
        file: "etcd/ca.crt",
        local_etcd_only: true,
    },
    CertFlag {
        component: Component::KubeApiServer,
        name: "etcd-certfile",
        file: "apiserver-etcd-client.crt",
        local_etcd_only: true,
    },
    CertFlag {
        component: Component::KubeApiServer,
        name: "etcd-keyfile",
        file: "apiserver-etcd-client.key",
        local_etcd_only: true,
    },
    cert(
        Component::KubeApiServer,
        "kubelet-client-certificate",
        "apiserver-kubelet-client.crt",
    ),
    cert(
        Component::KubeApiServer,
        "kubelet-client-key",
        "apiserver-kubelet-client.key",
    ),
    cert(
        Component::KubeApiServer,
        "proxy-client-cert-file",
        "front-proxy-client.crt",
    ),
    cert(
        Component::KubeApiServer,
        "proxy-client-key-file",
        "front-proxy-client.key",
    ),
    cert(
        Component::KubeApiServer,
        "requestheader-client-ca-file",
        "front-proxy-ca.crt",
    ),
    cert(
        Component::KubeApiServer,
        "service-account-key-file",
        "sa.pub",
    ),
    cert(
        Component::KubeApiServer,
        "service-account-signing-key-file",
        "sa.key",
    ),
    cert(Component::KubeApiServer, "tls-cert-file", "apiserver.crt"),
    cert(
        Component::KubeApiServer,
        "tls-private-key-file",
        "apiserver.key",
    ),
    cert(Component::KubeControllerManager, "client-ca-file", "ca.crt"),
    cert(
        Component::KubeControllerManager,
        "cluster-signing-cert-file",
        "ca.crt",
    ),
    cert(
        Component::KubeControllerManager,
        "cluster-signing-key-file",
        "ca.key",
    ),
    cert(
        Component::KubeControllerManager,
        "requestheader-client-ca-file",
        "front-proxy-ca.crt",
    ),
    cert(Component::KubeControllerManager, "root-ca-file", "ca.crt"),
    cert(
        Component::KubeControllerManager,
        "service-account-private-key-file",
        "sa.key",
    ),
    cert(Component::Etcd, "cert-file", "etcd/server.crt"),
    cert(Component::Etcd, "key-file", "etcd/server.key"),
    cert(Component::Etcd, "peer-cert-file", "etcd/peer.crt"),
    cert(Component::Etcd, "peer-key-file", "etcd/peer.key"),
    cert(Component::Etcd, "peer-trusted-ca-file", "etcd/ca.crt"),
    cert(Component::Etcd, "trusted-ca-file", "etcd/ca.crt"),
];

/// The certificate-file flags of `component`; `local_etcd` says whether etcd is stacked.
pub fn cert_flags(
    component: Component,
    local_etcd: bool,
) -> impl Iterator<Item = &'static CertFlag> {
    CERT_FLAGS
        .iter()
        .filter(move |f| f.component == component && (local_etcd || !f.local_etcd_only))
}

/// The kubeconfig file a component authenticates with, in `/etc/kubernetes`.
pub fn kubeconfig_file(component: Component) -> Option<&'static str> {
    match component {
        Component::KubeControllerManager => Some(names::CONTROLLER_MANAGER_KUBECONFIG),
        Component::KubeScheduler => Some(names::SCHEDULER_KUBECONFIG),
        _ => None,
    }
}

/// A feature gate kubeadm passes on to components as `--feature-gates=<gate>=<bool>` when the
/// user sets it in `featureGates` (kubeadm: the IPv6DualStack blocks in manifests.go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassedFeatureGate {
    /// The gate's name.
    pub gate: &'static str,
    /// The components it is passed to.
    pub components: &'static [Component],
    /// The minors kubeadm does it in.
    pub gate_range: Gate,
}

/// Feature gates kubeadm forwards to components (IPv6DualStack went GA in 1.23 and kubeadm
/// stopped forwarding it in 1.24).
pub const PASSED_FEATURE_GATES: &[PassedFeatureGate] = &[PassedFeatureGate {
    gate: "IPv6DualStack",
    components: &[
        Component::KubeApiServer,
        Component::KubeControllerManager,
        Component::KubeScheduler,
    ],
    gate_range: Gate {
        since: ANY,
        until: v(1, 24),
    },
}];

/// The gates forwarded to `component` for `version`.
pub fn passed_feature_gates(
    component: Component,
    version: &Version,
) -> impl Iterator<Item = &'static str> + '_ {
    PASSED_FEATURE_GATES
        .iter()
        .filter(move |g| g.components.contains(&component) && g.gate_range.contains(version))
        .map(|g| g.gate)
}

/// kube-apiserver authorization modes kubeadm accepts in `authorization-mode` (kubeadm:
/// isValidAuthzMode).
pub const AUTHORIZATION_MODES: &[&str] = &[
    "Node",
    "RBAC",
    "Webhook",
    "ABAC",
    "AlwaysAllow",
    "AlwaysDeny",
];

/// kubeadm's default authorization modes, in order.
pub const DEFAULT_AUTHORIZATION_MODES: &[&str] = &["Node", "RBAC"];

/// The default flexvolume directory the controller manager mounts (kubeadm:
/// defaultFlexvolumeDirVolumePath).
pub const DEFAULT_FLEXVOLUME_DIR: &str = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec";

/// The host's CA certificates directory, always mounted (kubeadm: caCertsVolumePath).
pub const CA_CERTS_DIR: &str = "/etc/ssl/certs";

/// Directories mounted next to `/etc/ssl/certs` when they exist on the host, because its
/// files may be symlinks into them (kubeadm: caCertsExtraVolumePaths).
pub const CA_CERTS_EXTRA_DIRS: &[&str] = &[
    "/etc/pki",
    "/usr/share/ca-certificates",
    "/usr/local/share/ca-certificates",
    "/etc/ca-certificates",
];

/// The startup probe's period; its failure threshold covers the control-plane timeout
/// (kubeadm: staticpod.StartupProbe).
pub const STARTUP_PROBE_PERIOD_SECS: u64 = 10;

/// kubeadm's DefaultControlPlaneTimeout, in seconds.
pub const DEFAULT_CONTROL_PLANE_TIMEOUT_SECS: u64 = 240;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::v as full;

    #[test]
    fn images_for_1_20_are_kubeadms() {
        let v120 = full(1, 20, 2);
        assert_eq!(
            image(Component::Etcd, "k8s.gcr.io", &v120),
            "k8s.gcr.io/etcd:3.4.13-0"
        );
        assert_eq!(
            image(Component::Pause, "k8s.gcr.io", &v120),
            "k8s.gcr.io/pause:3.2"
        );
        assert_eq!(
            image(Component::CoreDns, "k8s.gcr.io", &v120),
            "k8s.gcr.io/coredns:1.7.0"
        );
        assert_eq!(
            image(Component::KubeApiServer, "k8s.gcr.io", &v120),
            "k8s.gcr.io/kube-apiserver:v1.20.2"
        );
        assert_eq!(images_for(&full(1, 21, 0)).etcd, "3.4.13-0");
    }

    #[test]
    fn later_minors_use_etcd_3_5_and_coredns_path() {
        for minor in 22..=33 {
            let row = images_for(&full(1, minor, 0));
            assert!(row.etcd.starts_with("3.5."), "1.{minor}: {}", row.etcd);
            assert_eq!(row.coredns_image, "coredns/coredns");
        }
    }

    #[test]
    fn unknown_minors_fall_back_to_nearest_row() {
        assert_eq!(images_for(&full(1, 10, 0)).minor, v(1, 19));
        assert_eq!(
            images_for(&full(1, 99, 0)).minor,
            IMAGES.last().unwrap().minor
        );
        assert!(!has_images_for(&full(1, 99, 0)));
        assert!(has_images_for(&full(1, 20, 2)));
    }

    #[test]
    fn image_repository_moves_in_1_25() {
        assert_eq!(default_image_repository(&full(1, 20, 2)), "k8s.gcr.io");
        assert_eq!(default_image_repository(&full(1, 24, 9)), "k8s.gcr.io");
        assert_eq!(default_image_repository(&full(1, 25, 0)), "registry.k8s.io");
        assert_eq!(default_image_repository(&full(1, 33, 1)), "registry.k8s.io");
    }

    #[test]
    fn insecure_port_exists_until_1_24() {
        let has = |minor| {
            flags(Component::KubeApiServer, &full(1, minor, 0)).any(|(n, _)| n == "insecure-port")
        };
        assert!(has(20));
        assert!(has(23));
        assert!(!has(24));
        assert!(!has(33));
    }

    #[test]
    fn port_zero_exists_until_1_23() {
        for c in [Component::KubeControllerManager, Component::KubeScheduler] {
            let has = |minor| flags(c, &full(1, minor, 0)).any(|(n, v)| n == "port" && v == "0");
            assert!(has(20) && has(22), "{c}");
            assert!(!has(23) && !has(25), "{c}");
        }
    }

    #[test]
    fn flag_tables_have_no_duplicates_per_version() {
        for minor in 19..=34 {
            let version = full(1, minor, 0);
            for c in Component::ALL {
                let mut seen: Vec<&str> = flags(c, &version).map(|(n, _)| n).collect();
                seen.extend(cert_flags(c, true).map(|f| f.name));
                let n = seen.len();
                seen.sort_unstable();
                seen.dedup();
                assert_eq!(seen.len(), n, "{c} 1.{minor} has a flag twice");
            }
        }
    }

    #[test]
    fn etcd_probes_and_requests_change_by_minor() {
        let etcd = Component::Etcd;
        assert_eq!(
            probe_path(etcd, ProbeKind::Liveness, &full(1, 20, 2)),
            Some("/health")
        );
        assert_eq!(
            probe_path(etcd, ProbeKind::Liveness, &full(1, 25, 0)),
            Some("/health?exclude=NOSPACE&serializable=true")
        );
        assert_eq!(
            probe_path(etcd, ProbeKind::Readiness, &full(1, 20, 2)),
            None
        );
        let r120: Vec<_> = resource_requests(etcd, &full(1, 20, 2)).collect();
        assert_eq!(
            r120,
            [
                ("cpu", "100m"),
                ("memory", "100Mi"),
                ("ephemeral-storage", "100Mi")
            ]
        );
        let r125: Vec<_> = resource_requests(etcd, &full(1, 25, 0)).collect();
        assert_eq!(r125, [("cpu", "100m"), ("memory", "100Mi")]);
    }

    #[test]
    fn every_static_pod_has_ports_liveness_and_requests() {
        for c in Component::STATIC_PODS {
            assert!(ports(c).is_some(), "{c}");
            for minor in 20..=34 {
                let version = full(1, minor, 0);
                assert!(
                    probe_path(c, ProbeKind::Liveness, &version).is_some(),
                    "{c} 1.{minor}"
                );
                assert!(
                    probe_path(c, ProbeKind::Startup, &version).is_some(),
                    "{c} 1.{minor}"
                );
                assert!(
                    resource_requests(c, &version).any(|(r, _)| r == "cpu"),
                    "{c} 1.{minor}"
                );
            }
        }
    }

    #[test]
    fn feature_gates_forwarded_until_1_24() {
        let v120 = full(1, 20, 2);
        assert_eq!(
            passed_feature_gates(Component::KubeScheduler, &v120).collect::<Vec<_>>(),
            ["IPv6DualStack"]
        );
        assert_eq!(passed_feature_gates(Component::Etcd, &v120).count(), 0);
        assert_eq!(
            passed_feature_gates(Component::KubeApiServer, &full(1, 24, 0)).count(),
            0
        );
    }

    #[test]
    fn component_names_round_trip() {
        for c in Component::ALL {
            assert_eq!(Component::from_name(c.name()), Some(c));
        }
    }

    #[test]
    fn admin_kubeconfig_group_splits_at_1_29() {
        let at = |s: &str| s.parse::<Version>().expect("version");
        for (version, group, super_admin) in [
            ("v1.20.2", "system:masters", false),
            ("v1.28.9", "system:masters", false),
            ("v1.29.0", "kubeadm:cluster-admins", true),
            ("v1.33.1", "kubeadm:cluster-admins", true),
        ] {
            assert_eq!(admin_kubeconfig_group(&at(version)), group, "{version}");
            assert_eq!(has_super_admin(&at(version)), super_admin, "{version}");
        }
    }
}
