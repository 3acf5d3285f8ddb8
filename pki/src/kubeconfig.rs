//! The kubeconfig files of a control-plane node (kubeadm: app/phases/kubeconfig/
//! kubeconfig.go), as a serde struct with client-go's field names.

use std::net::IpAddr;
use std::time::SystemTime;

use base64::Engine as _;
use components::config::KeyAlgorithm;
use components::names;
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::AttributeTypeAndValue;

use crate::certs::{AltNames, ExtKeyUsage, KeyUsage};
use crate::issue::{Issuer, Template, sign};
use crate::key::PrivateKey;
use crate::verify::Decision;
use crate::{PkiError, certs};

/// Whose name the client certificate carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientName {
    /// A fixed user name.
    Fixed(&'static str),
    /// `system:node:<node name>` (kubeadm: NodesUserPrefix + nodeRegistration.name).
    Node,
    /// A prefix followed by the node name (kubeboot's own per-node users, such as the
    /// agent's `kubeboot:agent:<node>`).
    NodePrefixed(&'static str),
}

/// Which API server URL a kubeconfig points at (kubeadm 1.20: admin and kubelet use the
/// control plane endpoint, controller-manager and scheduler the local API endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// `controlPlaneEndpoint`, else the local API endpoint (util.GetControlPlaneEndpoint).
    ControlPlaneEndpoint,
    /// This node's advertise address and bind port (util.GetLocalAPIEndpoint).
    LocalApiEndpoint,
}

/// One kubeconfig file kubeadm writes (kubeadm: kubeconfig.go, getKubeConfigSpecsBase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigSpec {
    /// The phase name, `kubeadm init phase kubeconfig <name>`.
    pub name: &'static str,
    /// kubeadm's help line for the phase.
    pub short: &'static str,
    /// The file name under `/etc/kubernetes`.
    pub file_name: &'static str,
    /// The client certificate's CN, which is also the kubeconfig's user name.
    pub client: ClientName,
    /// The client certificate's organizations (groups).
    pub organizations: &'static [&'static str],
    /// Which API server URL it uses.
    pub server: ServerKind,
}

impl KubeconfigSpec {
    /// The user name (and client certificate CN) for `node_name`.
    pub fn client_name(&self, node_name: &str) -> String {
        match self.client {
            ClientName::Fixed(name) => name.to_string(),
            ClientName::Node => format!("{}{node_name}", names::NODES_USER_PREFIX),
            ClientName::NodePrefixed(prefix) => format!("{prefix}{node_name}"),
        }
    }

    /// The API server URL this kubeconfig uses.
    ///
    /// # Errors
    /// [`PkiError::InvalidControlPlaneEndpoint`].
    pub fn server_url(
        &self,
        control_plane_endpoint: Option<&str>,
        advertise_address: IpAddr,
        bind_port: u16,
    ) -> Result<String, PkiError> {
        match self.server {
            ServerKind::ControlPlaneEndpoint => {
                server_url(control_plane_endpoint, advertise_address, bind_port)
            }
            ServerKind::LocalApiEndpoint => Ok(local_server_url(advertise_address, bind_port)),
        }
    }
}

/// The kubeconfig files of a control-plane node, in kubeadm's phase order, as kubeadm 1.20
/// writes them. admin.conf's group changed in 1.29 ([`versioned`]), and 1.29 added
/// [`SUPER_ADMIN_KUBECONFIG`].
pub static KUBECONFIGS: &[KubeconfigSpec] = &[
    KubeconfigSpec {
        name: "admin",
        short: "Generate a kubeconfig file for the admin to use and for kubeadm itself",
        file_name: names::ADMIN_KUBECONFIG,
        client: ClientName::Fixed(names::ADMIN_USER),
        organizations: &[names::SYSTEM_PRIVILEGED_GROUP],
        server: ServerKind::ControlPlaneEndpoint,
    },
    KubeconfigSpec {
        name: "kubelet",
        short: "Generate a kubeconfig file for the kubelet to use *only* for cluster bootstrapping purposes",
        file_name: names::KUBELET_KUBECONFIG,
        client: ClientName::Node,
        organizations: &[names::NODES_GROUP],
        server: ServerKind::ControlPlaneEndpoint,
    },
    KubeconfigSpec {
        name: "controller-manager",
        short: "Generate a kubeconfig file for the controller manager to use",
        file_name: names::CONTROLLER_MANAGER_KUBECONFIG,
        client: ClientName::Fixed(names::CONTROLLER_MANAGER_USER),
        organizations: &[],
        server: ServerKind::LocalApiEndpoint,
    },
    KubeconfigSpec {
        name: "scheduler",
        short: "Generate a kubeconfig file for the scheduler to use",
        file_name: names::SCHEDULER_KUBECONFIG,
        client: ClientName::Fixed(names::SCHEDULER_USER),
        organizations: &[],
        server: ServerKind::LocalApiEndpoint,
    },
];

/// admin.conf from Kubernetes 1.29 on: the same file, user and server as the admin entry of
/// [`KUBECONFIGS`], but in the group `kubeadm:cluster-admins` (kubeadm 1.29:
/// phases/kubeconfig/kubeconfig.go, getKubeConfigSpecsBase), whose rights come from the
/// `kubeadm:cluster-admins` ClusterRoleBinding and so can be revoked. [`versioned`] picks it.
pub static CLUSTER_ADMINS_ADMIN_KUBECONFIG: KubeconfigSpec = KubeconfigSpec {
    name: "admin",
    short: "Generate a kubeconfig file for the admin to use and for kubeadm itself",
    file_name: names::ADMIN_KUBECONFIG,
    client: ClientName::Fixed(names::ADMIN_USER),
    organizations: &[names::CLUSTER_ADMINS_GROUP],
    server: ServerKind::ControlPlaneEndpoint,
};

/// super-admin.conf (Kubernetes 1.29 and later, `init` only): `kubernetes-super-admin` in
/// `system:masters`, the break-glass credential that bypasses RBAC; init uses it once, to
/// create the ClusterRoleBinding admin.conf's rights rest on (kubeadm 1.29:
/// getKubeConfigSpecsBase, SuperAdminKubeConfigFileName; `kubeadm init phase kubeconfig
/// super-admin`).
pub static SUPER_ADMIN_KUBECONFIG: KubeconfigSpec = KubeconfigSpec {
    name: "super-admin",
    short: "Generate a kubeconfig file for the super-admin",
    file_name: names::SUPER_ADMIN_KUBECONFIG,
    client: ClientName::Fixed(names::SUPER_ADMIN_USER),
    organizations: &[names::SYSTEM_PRIVILEGED_GROUP],
    server: ServerKind::ControlPlaneEndpoint,
};

/// The spec kubeboot writes for `spec` at Kubernetes `version`: admin.conf's group follows
/// [`components::catalogue::admin_kubeconfig_group`] (`system:masters` up to 1.28,
/// `kubeadm:cluster-admins` from 1.29); every other spec is the same for every version.
pub fn versioned(
    spec: &'static KubeconfigSpec,
    version: &components::Version,
) -> &'static KubeconfigSpec {
    if spec.file_name != names::ADMIN_KUBECONFIG {
        return spec;
    }
    let group = components::catalogue::admin_kubeconfig_group(version);
    [spec, &KUBECONFIGS[0], &CLUSTER_ADMINS_ADMIN_KUBECONFIG]
        .into_iter()
        .find(|s| s.organizations == [group])
        .expect("an admin.conf spec for every group of catalogue::ADMIN_KUBECONFIG_GROUPS")
}

/// The node-local kubeconfig of the kube-proxy that kubeboot's agent runs as a static pod,
/// `/var/lib/kube-proxy/kubeconfig.conf`: a client certificate for `system:kube-proxy`, the
/// user the API server's default RBAC binds to `system:node-proxier`. Not one of
/// [`KUBECONFIGS`] (kubeadm's DaemonSet uses its ServiceAccount token instead, and
/// `kubeadm init phase kubeconfig` has no such file); the `addon/kube-proxy` phase writes it.
pub static KUBE_PROXY_KUBECONFIG: KubeconfigSpec = KubeconfigSpec {
    name: "kube-proxy",
    short: "Generate a kubeconfig file for the kube-proxy the kubeboot agent runs",
    file_name: names::KUBE_PROXY_KUBECONFIG_KEY,
    client: ClientName::Fixed(names::KUBE_PROXY_USER),
    organizations: &[],
    server: ServerKind::ControlPlaneEndpoint,
};

/// The kubeconfig of kubeboot's node agent, `/etc/kubernetes/kubeboot-agent.conf`: a client
/// certificate for `kubeboot:agent:<node>` in the group `kubeboot:agents`, which the
/// `kubeboot:agent` ClusterRole (bound in kube-system only) lets publish the agent's static
/// pods as API objects (see the agent's `mirror` module). The node's own `system:node:`
/// identity cannot: the NodeRestriction admission plugin lets a node create only mirror pods
/// bound to itself, which the node's kubelet would delete. Not one of [`KUBECONFIGS`]
/// (kubeadm has no such file); the `kubeconfig/agent` phase writes it.
pub static KUBEBOOT_AGENT_KUBECONFIG: KubeconfigSpec = KubeconfigSpec {
    name: "agent",
    short: "Generate a kubeconfig file for the kubeboot agent to publish its static Pods with",
    file_name: names::KUBEBOOT_AGENT_KUBECONFIG,
    client: ClientName::NodePrefixed(names::KUBEBOOT_AGENT_USER_PREFIX),
    organizations: &[names::KUBEBOOT_AGENTS_GROUP],
    server: ServerKind::ControlPlaneEndpoint,
};

/// The spec named `name` (`admin`, `kubelet`, `controller-manager`, `scheduler`).
pub fn kubeconfig_spec(name: &str) -> Option<&'static KubeconfigSpec> {
    KUBECONFIGS.iter().find(|s| s.name == name)
}

/// `https://<controlPlaneEndpoint or advertise address>:<port>` (kubeadm: app/util/
/// endpoint.go, GetControlPlaneEndpoint): a port in the endpoint wins over `bind_port`;
/// IPv6 hosts go in brackets.
///
/// # Errors
/// [`PkiError::InvalidControlPlaneEndpoint`].
pub fn server_url(
    control_plane_endpoint: Option<&str>,
    advertise_address: IpAddr,
    bind_port: u16,
) -> Result<String, PkiError> {
    match control_plane_endpoint {
        None => Ok(local_server_url(advertise_address, bind_port)),
        Some(endpoint) => {
            let (host, port) = certs::parse_host_port(endpoint)?;
            Ok(format_url(&host, port.unwrap_or(bind_port)))
        }
    }
}

/// `https://<advertise address>:<bind port>` (kubeadm: GetLocalAPIEndpoint).
pub fn local_server_url(advertise_address: IpAddr, bind_port: u16) -> String {
    format_url(&advertise_address.to_string(), bind_port)
}

fn format_url(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    }
}

/// A kubeconfig file with client-go's field names (clientcmd/api/v1 Config), in the field
/// order kubeadm writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kubeconfig {
    /// `v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Clusters by name.
    #[serde(default)]
    pub clusters: Vec<NamedCluster>,
    /// Contexts by name.
    #[serde(default)]
    pub contexts: Vec<NamedContext>,
    /// The context in use, `<user>@<cluster>`.
    #[serde(rename = "current-context", default)]
    pub current_context: String,
    /// `Config`.
    pub kind: String,
    /// Always empty.
    #[serde(default)]
    pub preferences: Preferences,
    /// Users by name.
    #[serde(default)]
    pub users: Vec<NamedUser>,
}

/// client-go `Preferences`; kubeadm writes it empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {}

/// client-go `NamedCluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCluster {
    /// The cluster.
    pub cluster: Cluster,
    /// Its name.
    pub name: String,
}

/// client-go `Cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    /// The CA certificate PEM, base64.
    #[serde(
        rename = "certificate-authority-data",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate_authority_data: Option<String>,
    /// The API server URL.
    pub server: String,
    /// The name the server's certificate is verified for (and sent as SNI) instead of the
    /// URL's host: `kubernetes` when the URL is the node-local API load balancer
    /// ([`Kubeconfig::through_local_balancer`]).
    #[serde(
        rename = "tls-server-name",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tls_server_name: Option<String>,
}

/// client-go `NamedContext`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedContext {
    /// The context.
    pub context: Context,
    /// Its name.
    pub name: String,
}

/// client-go `Context`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// The cluster's name.
    pub cluster: String,
    /// The user's name.
    pub user: String,
}

/// client-go `NamedAuthInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedUser {
    /// Its name.
    pub name: String,
    /// The credentials.
    pub user: User,
}

/// client-go `AuthInfo`: a client certificate (inline or as files) or a bearer token.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The client certificate PEM, base64.
    #[serde(
        rename = "client-certificate-data",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_certificate_data: Option<String>,
    /// The client key PEM, base64.
    #[serde(
        rename = "client-key-data",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_key_data: Option<String>,
    /// The client certificate's file (the kubelet's rotated `kubelet-client-current.pem`).
    #[serde(
        rename = "client-certificate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_certificate: Option<String>,
    /// The client key's file.
    #[serde(
        rename = "client-key",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_key: Option<String>,
    /// A bearer token (a bootstrap token for TLS bootstrap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("client_certificate_data", &self.client_certificate_data)
            .field("client_certificate", &self.client_certificate)
            .finish_non_exhaustive()
    }
}

impl Kubeconfig {
    /// The file's YAML.
    pub fn to_yaml(&self) -> String {
        yaml_serde::to_string(self).expect("a Kubeconfig of strings always serializes")
    }

    /// Reads a kubeconfig file's YAML; unknown fields are ignored, as client-go does.
    ///
    /// # Errors
    /// [`PkiError::KubeconfigParse`].
    pub fn from_yaml(yaml: &str) -> Result<Self, PkiError> {
        yaml_serde::from_str(yaml).map_err(|e| PkiError::KubeconfigParse {
            file: "kubeconfig".to_string(),
            reason: e.to_string(),
        })
    }

    /// The current context's user, if the file names one.
    pub fn current_user(&self) -> Option<&NamedUser> {
        self.contexts
            .iter()
            .find(|c| c.name == self.current_context)
            .and_then(|ctx| self.users.iter().find(|u| u.name == ctx.context.user))
    }

    /// The PEM of the current context's embedded client certificate
    /// (`client-certificate-data`), as kubeadm's renewal reads it (renewal/readwriter.go,
    /// kubeConfigReadWriter.Read).
    ///
    /// # Errors
    /// [`PkiError::ParseCert`] when the current user has no embedded client certificate or
    /// it is not base64 text.
    pub fn client_certificate_pem(&self) -> Result<String, PkiError> {
        let fail = |reason: String| PkiError::ParseCert {
            what: "the kubeconfig's client certificate".to_string(),
            reason,
        };
        let user = self
            .current_user()
            .ok_or_else(|| fail("the current context has no user".to_string()))?;
        let data = user
            .user
            .client_certificate_data
            .as_deref()
            .ok_or_else(|| fail("no client-certificate-data".to_string()))?;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| fail(e.to_string()))?;
        String::from_utf8(pem).map_err(|e| fail(e.to_string()))
    }

    /// The user name (CN) and groups (O) of the current context's client certificate: who
    /// the API server takes this kubeconfig for.
    ///
    /// # Errors
    /// [`PkiError::ParseCert`] when the current user has no client certificate or it does
    /// not parse.
    pub fn client_identity(&self) -> Result<(String, Vec<String>), PkiError> {
        let fail = |reason: String| PkiError::ParseCert {
            what: "the kubeconfig's client certificate".to_string(),
            reason,
        };
        let pem = self.client_certificate_pem()?;
        let blocks = crate::der::pem_blocks(&pem).map_err(fail)?;
        let (_, der) = blocks
            .first()
            .ok_or_else(|| fail("no PEM block".to_string()))?;
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| fail(e.to_string()))?;
        let strings = |it: &mut dyn Iterator<Item = &AttributeTypeAndValue>| -> Vec<String> {
            it.filter_map(|a| a.as_str().ok().map(str::to_string))
                .collect()
        };
        let cn = strings(&mut cert.subject().iter_common_name())
            .into_iter()
            .next()
            .unwrap_or_default();
        Ok((cn, strings(&mut cert.subject().iter_organization())))
    }

    /// The same kubeconfig with every cluster reached through the node-local API load
    /// balancer: its server is `https://<listen>` (`127.0.0.1:6444`) and the API servers'
    /// certificates are verified for `tls_name` (`kubernetes`, a DNS SAN of every kubeadm and
    /// kubeboot API server certificate), so the certificates need no SAN for the loopback
    /// address and a kubeadm-made API server works behind the balancer as it is.
    pub fn through_local_balancer(mut self, listen: std::net::SocketAddr, tls_name: &str) -> Self {
        let server = format_url(&listen.ip().to_string(), listen.port());
        for c in &mut self.clusters {
            c.cluster.server = server.clone();
            c.cluster.tls_server_name = Some(tls_name.to_string());
        }
        self
    }

    /// The cluster of the current context, if the file is complete.
    pub fn current_cluster(&self) -> Option<&NamedCluster> {
        let ctx = self
            .contexts
            .iter()
            .find(|c| c.name == self.current_context)?;
        self.clusters.iter().find(|c| c.name == ctx.context.cluster)
    }
}

/// Builds the kubeconfig `spec` with a new client certificate signed by the cluster CA
/// (kubeadm: buildKubeConfigFromSpec; kubeconfigutil.CreateWithCerts): cluster
/// `cluster_name`, user = the client name, context `<user>@<cluster>`. `node_name` fills
/// the kubelet's `system:node:<node>`.
///
/// # Errors
/// CA parse errors, [`PkiError::KeyGeneration`], [`PkiError::Sign`].
// The kubeconfig's parts are independent inputs, as kubeadm's kubeConfigSpec fields are.
#[allow(clippy::too_many_arguments)]
pub fn build_kubeconfig(
    spec: &KubeconfigSpec,
    node_name: &str,
    cluster_name: &str,
    server_url: &str,
    ca: &Issuer,
    algorithm: KeyAlgorithm,
    validity: std::time::Duration,
    now: SystemTime,
) -> Result<Kubeconfig, PkiError> {
    let user = spec.client_name(node_name);
    let template = Template {
        name: spec.file_name,
        common_name: &user,
        organizations: spec.organizations,
        alt_names: AltNames::default(),
        key_usages: &[KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment],
        ext_key_usages: &[ExtKeyUsage::ClientAuth],
        is_ca: false,
        validity,
    };
    let key = PrivateKey::generate(algorithm)?;
    let cert_pem = sign(&template, &key, Some((ca, "ca")), now)?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let context = format!("{user}@{cluster_name}");
    Ok(Kubeconfig {
        api_version: "v1".to_string(),
        clusters: vec![NamedCluster {
            cluster: Cluster {
                certificate_authority_data: Some(b64(&ca.cert_pem)),
                server: server_url.to_string(),
                tls_server_name: None,
            },
            name: cluster_name.to_string(),
        }],
        contexts: vec![NamedContext {
            context: Context {
                cluster: cluster_name.to_string(),
                user: user.clone(),
            },
            name: context.clone(),
        }],
        current_context: context,
        kind: "Config".to_string(),
        preferences: Preferences {},
        users: vec![NamedUser {
            name: user,
            user: User {
                client_certificate_data: Some(b64(&cert_pem)),
                client_key_data: Some(b64(key.to_pem())),
                ..User::default()
            },
        }],
    })
}

/// The kubeconfig file `yaml` with the current user's embedded client certificate and key
/// replaced and the current cluster's embedded CA set to `ca_pem`; everything else is kept
/// as it is, fields kubeboot does not know included (kubeadm: renewal/readwriter.go,
/// kubeConfigReadWriter.Write).
///
/// # Errors
/// [`PkiError::KubeconfigParse`] when the file is not YAML, and
/// [`PkiError::KubeconfigIncomplete`] when its current context, user or cluster is missing.
pub fn replace_client_cert(
    file: &'static str,
    yaml: &str,
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
) -> Result<String, PkiError> {
    use yaml_serde::Value;
    let parse = |reason: String| PkiError::KubeconfigParse {
        file: file.to_string(),
        reason,
    };
    let incomplete = |what: String| PkiError::KubeconfigIncomplete { file, what };
    let mut doc: Value = yaml_serde::from_str(yaml).map_err(|e| parse(e.to_string()))?;
    let typed = Kubeconfig::from_yaml(yaml).map_err(|e| parse(e.to_string()))?;
    let ctx = typed
        .contexts
        .iter()
        .find(|c| c.name == typed.current_context)
        .ok_or_else(|| incomplete(format!("context {:?}", typed.current_context)))?
        .context
        .clone();
    let b64 = |s: &str| Value::String(base64::engine::general_purpose::STANDARD.encode(s));
    let set = |doc: &mut Value, list: &str, name: &str, field: &str, values: &[(&str, Value)]| {
        let item = doc
            .get_mut(list)
            .and_then(Value::as_sequence_mut)
            .and_then(|items| {
                items
                    .iter_mut()
                    .find(|i| i.get("name").and_then(Value::as_str) == Some(name))
            })
            .and_then(|i| i.get_mut(field))
            .and_then(Value::as_mapping_mut)
            .ok_or_else(|| incomplete(format!("{list} entry {name:?}")))?;
        for (k, v) in values {
            item.insert(Value::String((*k).to_string()), v.clone());
        }
        Ok::<(), PkiError>(())
    };
    set(
        &mut doc,
        "users",
        &ctx.user,
        "user",
        &[
            ("client-certificate-data", b64(cert_pem)),
            ("client-key-data", b64(key_pem)),
        ],
    )?;
    set(
        &mut doc,
        "clusters",
        &ctx.cluster,
        "cluster",
        &[("certificate-authority-data", b64(ca_pem))],
    )?;
    yaml_serde::to_string(&doc).map_err(|e| parse(e.to_string()))
}

/// A kubeconfig for `user` at `server` trusting `ca_pem` (kubeadm's
/// kubeconfigutil.CreateBasic): cluster `cluster_name`, context `<user>@<cluster>`.
pub fn basic_kubeconfig(
    cluster_name: &str,
    server_url: &str,
    ca_pem: &str,
    user_name: &str,
    user: User,
) -> Kubeconfig {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let context = format!("{user_name}@{cluster_name}");
    Kubeconfig {
        api_version: "v1".to_string(),
        clusters: vec![NamedCluster {
            cluster: Cluster {
                certificate_authority_data: Some(b64(ca_pem)),
                server: server_url.to_string(),
                tls_server_name: None,
            },
            name: cluster_name.to_string(),
        }],
        contexts: vec![NamedContext {
            context: Context {
                cluster: cluster_name.to_string(),
                user: user_name.to_string(),
            },
            name: context.clone(),
        }],
        current_context: context,
        kind: "Config".to_string(),
        preferences: Preferences {},
        users: vec![NamedUser {
            name: user_name.to_string(),
            user,
        }],
    }
}

/// The TLS bootstrap kubeconfig of a joining node (kubeadm: kubeconfigutil.CreateWithToken
/// with user `tls-bootstrap-token-user`).
pub fn bootstrap_kubeconfig(
    cluster_name: &str,
    server_url: &str,
    ca_pem: &str,
    token: &str,
) -> Kubeconfig {
    basic_kubeconfig(
        cluster_name,
        server_url,
        ca_pem,
        "tls-bootstrap-token-user",
        User {
            token: Some(token.to_string()),
            ..User::default()
        },
    )
}

/// A kubeconfig whose client certificate and key are one PEM file, as the kubelet writes
/// `kubelet.conf` after its TLS bootstrap (both point at `kubelet-client-current.pem`, which
/// the kubelet's certificate rotation replaces).
pub fn cert_file_kubeconfig(
    cluster_name: &str,
    server_url: &str,
    ca_pem: &str,
    user_name: &str,
    pem_file: &str,
) -> Kubeconfig {
    basic_kubeconfig(
        cluster_name,
        server_url,
        ca_pem,
        user_name,
        User {
            client_certificate: Some(pem_file.to_string()),
            client_key: Some(pem_file.to_string()),
            ..User::default()
        },
    )
}

/// Decides about an existing kubeconfig (kubeadm: validateKubeConfig): none means create;
/// one whose current cluster has the same CA (whitespace-trimmed) and server URL is reused;
/// anything else is an error naming what differs. kubeadm 1.20 only warns about another
/// server URL; kubeboot refuses it, since the file would point the component elsewhere.
///
/// # Errors
/// [`PkiError::KubeconfigParse`], [`PkiError::KubeconfigIncomplete`],
/// [`PkiError::KubeconfigWrongCa`], [`PkiError::KubeconfigWrongServer`].
pub fn decide_kubeconfig(
    spec: &KubeconfigSpec,
    existing_yaml: Option<&str>,
    ca_cert_pem: &str,
    server_url: &str,
) -> Result<Decision, PkiError> {
    let Some(yaml) = existing_yaml else {
        return Ok(Decision::Create);
    };
    let file = spec.file_name;
    let current = Kubeconfig::from_yaml(yaml).map_err(|e| match e {
        PkiError::KubeconfigParse { reason, .. } => PkiError::KubeconfigParse {
            file: file.to_string(),
            reason,
        },
        other => other,
    })?;
    let incomplete = |what: String| PkiError::KubeconfigIncomplete { file, what };
    let ctx = current
        .contexts
        .iter()
        .find(|c| c.name == current.current_context)
        .ok_or_else(|| {
            incomplete(format!(
                "context {:?} (its current-context)",
                current.current_context
            ))
        })?;
    let cluster = current
        .clusters
        .iter()
        .find(|c| c.name == ctx.context.cluster)
        .ok_or_else(|| incomplete(format!("cluster {:?}", ctx.context.cluster)))?;
    let ca_data = cluster
        .cluster
        .certificate_authority_data
        .as_deref()
        .ok_or_else(|| incomplete("certificate-authority-data".to_string()))?;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(ca_data.trim())
        .map_err(|e| PkiError::KubeconfigParse {
            file: file.to_string(),
            reason: format!("certificate-authority-data: {e}"),
        })?;
    if ca.trim_ascii() != ca_cert_pem.as_bytes().trim_ascii() {
        return Err(PkiError::KubeconfigWrongCa { file });
    }
    if cluster.cluster.server != server_url {
        return Err(PkiError::KubeconfigWrongServer {
            file,
            expected: server_url.to_string(),
            actual: cluster.cluster.server.clone(),
        });
    }
    Ok(Decision::Reuse)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::certs::{cert_spec, tests::inputs};
    use crate::issue::issue;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn ca() -> Issuer {
        issue(cert_spec("ca").expect("ca"), &inputs(), None, now())
            .expect("ca")
            .into()
    }

    fn spec(name: &str) -> &'static KubeconfigSpec {
        kubeconfig_spec(name).expect("known")
    }

    #[test]
    fn replacing_the_client_cert_keeps_everything_else() {
        let ca = ca();
        let kc = build_kubeconfig(
            spec("admin"),
            "node1",
            "kubernetes",
            "https://10.0.0.1:6443",
            &ca,
            KeyAlgorithm::EcdsaP256,
            crate::Validity::default().leaf,
            now(),
        )
        .expect("builds");
        let yaml = kc.to_yaml().replace(
            "    user: kubernetes-admin\n",
            "    namespace: team\n    user: kubernetes-admin\n",
        );
        assert!(yaml.contains("namespace: team"), "{yaml}");
        let new = replace_client_cert("admin.conf", &yaml, "CERT", "KEY", "CA").expect("replaced");
        let back = Kubeconfig::from_yaml(&new).expect("parses");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let user = back.current_user().expect("user");
        assert_eq!(user.user.client_certificate_data, Some(b64("CERT")));
        assert_eq!(user.user.client_key_data, Some(b64("KEY")));
        let cluster = back.current_cluster().expect("cluster");
        assert_eq!(cluster.cluster.certificate_authority_data, Some(b64("CA")));
        assert_eq!(cluster.cluster.server, "https://10.0.0.1:6443");
        assert!(new.contains("namespace: team"), "{new}");
        let broken = yaml.replace(
            "current-context: kubernetes-admin@kubernetes",
            "current-context: x",
        );
        assert!(replace_client_cert("admin.conf", &broken, "C", "K", "A").is_err());
    }

    #[test]
    fn server_urls() {
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let v6: IpAddr = "fd00::1".parse().expect("ip");
        assert_eq!(
            server_url(None, ip, 6443).expect("ok"),
            "https://10.0.0.1:6443"
        );
        assert_eq!(
            server_url(None, v6, 6443).expect("ok"),
            "https://[fd00::1]:6443"
        );
        assert_eq!(
            server_url(Some("lb.example.com"), ip, 6443).expect("ok"),
            "https://lb.example.com:6443"
        );
        assert_eq!(
            server_url(Some("lb.example.com:443"), ip, 6443).expect("ok"),
            "https://lb.example.com:443"
        );
        assert_eq!(
            server_url(Some("[fd00::9]:443"), ip, 6443).expect("ok"),
            "https://[fd00::9]:443"
        );
        let scheduler = spec("scheduler")
            .server_url(Some("lb.example.com"), ip, 6443)
            .expect("ok");
        assert_eq!(scheduler, "https://10.0.0.1:6443");
    }

    #[test]
    fn kubelet_kubeconfig_has_client_go_fields_and_node_identity() {
        let ca = ca();
        let kc = build_kubeconfig(
            spec("kubelet"),
            "node1",
            "kubernetes",
            "https://10.0.0.1:6443",
            &ca,
            KeyAlgorithm::EcdsaP256,
            crate::Validity::default().leaf,
            now(),
        )
        .expect("builds");
        let yaml = kc.to_yaml();
        let v: yaml_serde::Value = yaml_serde::from_str(&yaml).expect("yaml");
        assert_eq!(v["apiVersion"].as_str(), Some("v1"));
        assert_eq!(v["kind"].as_str(), Some("Config"));
        assert_eq!(
            v["current-context"].as_str(),
            Some("system:node:node1@kubernetes")
        );
        assert_eq!(
            v["contexts"][0]["name"].as_str(),
            Some("system:node:node1@kubernetes")
        );
        assert_eq!(
            v["contexts"][0]["context"]["cluster"].as_str(),
            Some("kubernetes")
        );
        assert_eq!(
            v["contexts"][0]["context"]["user"].as_str(),
            Some("system:node:node1")
        );
        assert_eq!(v["clusters"][0]["name"].as_str(), Some("kubernetes"));
        assert_eq!(
            v["clusters"][0]["cluster"]["server"].as_str(),
            Some("https://10.0.0.1:6443")
        );
        assert!(v["clusters"][0]["cluster"]["certificate-authority-data"].is_string());
        assert_eq!(v["users"][0]["name"].as_str(), Some("system:node:node1"));
        assert!(v["users"][0]["user"]["client-key-data"].is_string());
        assert!(v["preferences"].as_mapping().is_some_and(|m| m.is_empty()));

        let back = Kubeconfig::from_yaml(&yaml).expect("reads back");
        assert_eq!(back, kc);
        let b64 = base64::engine::general_purpose::STANDARD;
        let cert_pem = b64
            .decode(
                back.users[0]
                    .user
                    .client_certificate_data
                    .as_deref()
                    .expect("cert"),
            )
            .expect("b64");
        let cert_pem = String::from_utf8(cert_pem).expect("utf8");
        let blocks = crate::der::pem_blocks(&cert_pem).expect("pem");
        let (_, cert) = X509Certificate::from_der(&blocks[0].1).expect("der");
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().expect("str"))
            .collect();
        let o: Vec<_> = cert
            .subject()
            .iter_organization()
            .map(|a| a.as_str().expect("str"))
            .collect();
        assert_eq!(cn, ["system:node:node1"]);
        assert_eq!(o, ["system:nodes"]);
        assert_eq!(cert.issuer().to_string(), "CN=kubernetes");
        let eku = cert
            .extended_key_usage()
            .expect("eku")
            .expect("present")
            .value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(!cert.is_ca());
    }

    #[test]
    fn agent_kubeconfig_is_a_per_node_user_in_the_agents_group() {
        let spec = &KUBEBOOT_AGENT_KUBECONFIG;
        assert!(KUBECONFIGS.iter().all(|s| s.file_name != spec.file_name));
        assert_eq!(spec.file_name, "kubeboot-agent.conf");
        let kc = built(spec);
        assert_eq!(kc.current_context, "kubeboot:agent:node1@kubernetes");
        let b64 = base64::engine::general_purpose::STANDARD;
        let cert_pem = b64
            .decode(
                kc.users[0]
                    .user
                    .client_certificate_data
                    .as_deref()
                    .expect("cert"),
            )
            .expect("b64");
        let cert_pem = String::from_utf8(cert_pem).expect("utf8");
        let blocks = crate::der::pem_blocks(&cert_pem).expect("pem");
        let (_, cert) = X509Certificate::from_der(&blocks[0].1).expect("der");
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().expect("str"))
            .collect();
        let o: Vec<_> = cert
            .subject()
            .iter_organization()
            .map(|a| a.as_str().expect("str"))
            .collect();
        assert_eq!(cn, ["kubeboot:agent:node1"]);
        assert_eq!(o, ["kubeboot:agents"]);
        let eku = cert
            .extended_key_usage()
            .expect("eku")
            .expect("present")
            .value;
        assert!(eku.client_auth && !eku.server_auth);
    }

    #[test]
    fn admin_is_system_masters() {
        let kc = built(spec("admin"));
        assert_eq!(kc.current_context, "kubernetes-admin@kubernetes");
        assert_eq!(
            spec("controller-manager").client_name("x"),
            "system:kube-controller-manager"
        );
        assert_eq!(spec("scheduler").client_name("x"), "system:kube-scheduler");
    }

    #[test]
    fn admin_conf_is_cluster_admins_from_1_29_and_super_admin_is_system_masters() {
        let at = |s: &str| s.parse::<components::Version>().expect("version");
        for (version, group) in [
            ("v1.20.2", "system:masters"),
            ("v1.28.0", "system:masters"),
            ("v1.29.0", "kubeadm:cluster-admins"),
            ("v1.33.2", "kubeadm:cluster-admins"),
        ] {
            let admin = versioned(spec("admin"), &at(version));
            assert_eq!(admin.file_name, "admin.conf", "{version}");
            let kc = built(admin);
            assert_eq!(kc.current_context, "kubernetes-admin@kubernetes");
            assert_eq!(
                kc.client_identity().expect("identity"),
                ("kubernetes-admin".into(), vec![group.to_string()]),
                "{version}"
            );
        }
        // 1.20 keeps exactly kubeadm 1.20's spec (the goldens compare against it).
        assert!(std::ptr::eq(
            versioned(spec("admin"), &at("v1.20.2")),
            &KUBECONFIGS[0]
        ));
        for name in ["kubelet", "controller-manager", "scheduler"] {
            assert!(std::ptr::eq(
                versioned(spec(name), &at("v1.29.0")),
                spec(name)
            ));
        }
        let sa = built(&SUPER_ADMIN_KUBECONFIG);
        assert_eq!(SUPER_ADMIN_KUBECONFIG.file_name, "super-admin.conf");
        assert_eq!(sa.current_context, "kubernetes-super-admin@kubernetes");
        assert_eq!(
            sa.client_identity().expect("identity"),
            (
                "kubernetes-super-admin".into(),
                vec!["system:masters".into()]
            )
        );
        assert!(KUBECONFIGS.iter().all(|s| s.name != "super-admin"));
    }

    #[test]
    fn existing_kubeconfig_decisions() {
        let ca = ca();
        let url = "https://10.0.0.1:6443";
        let kc = build_kubeconfig(
            spec("admin"),
            "node1",
            "kubernetes",
            url,
            &ca,
            KeyAlgorithm::EcdsaP256,
            crate::Validity::default().leaf,
            now(),
        )
        .expect("builds");
        let yaml = kc.to_yaml();
        let admin = spec("admin");
        assert_eq!(
            decide_kubeconfig(admin, None, &ca.cert_pem, url).expect("ok"),
            Decision::Create
        );
        assert_eq!(
            decide_kubeconfig(admin, Some(&yaml), &ca.cert_pem, url).expect("ok"),
            Decision::Reuse
        );
        let e = decide_kubeconfig(admin, Some(&yaml), &ca.cert_pem, "https://10.0.0.2:6443")
            .expect_err("server");
        assert_eq!(
            e.to_string(),
            "a kubeconfig file admin.conf exists already but points at https://10.0.0.1:6443 instead of \
             https://10.0.0.2:6443; delete it or run \"kubeboot reset\""
        );
        let other = ca_other();
        let e = decide_kubeconfig(admin, Some(&yaml), &other, url).expect_err("ca");
        assert!(matches!(
            e,
            PkiError::KubeconfigWrongCa { file: "admin.conf" }
        ));
        let e = decide_kubeconfig(admin, Some("kind: [oops"), &ca.cert_pem, url).expect_err("yaml");
        assert!(
            e.to_string()
                .starts_with("the existing kubeconfig admin.conf is not valid"),
            "{e}"
        );
    }

    #[test]
    fn kube_proxy_kubeconfig_is_system_kube_proxy() {
        let kc = built(&KUBE_PROXY_KUBECONFIG);
        assert_eq!(kc.current_context, "system:kube-proxy@kubernetes");
        assert_eq!(kc.users[0].name, "system:kube-proxy");
        assert!(KUBECONFIGS.iter().all(|s| s.name != "kube-proxy"));
    }

    #[test]
    fn a_kubeconfig_through_the_local_balancer_names_the_server_certificate() {
        let kc = built(spec("kubelet"));
        assert!(
            !kc.to_yaml().contains("tls-server-name"),
            "absent unless set"
        );
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], names::API_LB_PORT));
        let lb = kc
            .clone()
            .through_local_balancer(listen, names::API_SERVER_TLS_NAME);
        let yaml = lb.to_yaml();
        let v: yaml_serde::Value = yaml_serde::from_str(&yaml).expect("yaml");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"].as_str(),
            Some("https://127.0.0.1:6444")
        );
        assert_eq!(
            v["clusters"][0]["cluster"]["tls-server-name"].as_str(),
            Some("kubernetes")
        );
        assert_eq!(Kubeconfig::from_yaml(&yaml).expect("reads back"), lb);
        // Only the cluster's address changes: same CA, same user.
        assert_eq!(lb.users, kc.users);
        assert_eq!(
            lb.clusters[0].cluster.certificate_authority_data,
            kc.clusters[0].cluster.certificate_authority_data
        );
        let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 6444));
        let lb6 = kc.through_local_balancer(v6, "kubernetes");
        assert_eq!(lb6.clusters[0].cluster.server, "https://[::1]:6444");
    }

    /// `spec` for node1 at https://10.0.0.1:6443, signed by [`ca`].
    fn built(spec: &KubeconfigSpec) -> Kubeconfig {
        build_kubeconfig(
            spec,
            "node1",
            "kubernetes",
            "https://10.0.0.1:6443",
            &ca(),
            KeyAlgorithm::EcdsaP256,
            crate::Validity::default().leaf,
            now(),
        )
        .expect("builds")
    }

    fn ca_other() -> String {
        ca().cert_pem
    }
}
