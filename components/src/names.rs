//! Well-known names: files, directories, labels, annotations and API objects. Each constant
//! names the kubeadm constant it mirrors (kubeadm: app/constants/constants.go unless noted).

/// KubernetesDir.
pub const KUBERNETES_DIR: &str = "/etc/kubernetes";
/// ManifestsSubDirName.
pub const MANIFESTS_SUBDIR: &str = "manifests";
/// TempDirForKubeadm.
pub const TEMP_DIR: &str = "tmp";
/// DefaultCertificatesDir (kubeadm: apis/kubeadm/v1beta2/defaults.go).
pub const DEFAULT_CERTIFICATES_DIR: &str = "/etc/kubernetes/pki";
/// DefaultEtcdDataDir.
pub const DEFAULT_ETCD_DATA_DIR: &str = "/var/lib/etcd";
/// KubeletRunDirectory.
pub const KUBELET_RUN_DIR: &str = "/var/lib/kubelet";
/// kubeboot's own state directory (no kubeadm equivalent).
pub const KUBEBOOT_STATE_DIR: &str = "/var/lib/kubeboot";
/// The marker, in [`KUBEBOOT_STATE_DIR`], of a full `init` under way: a re-run that finds it
/// resumes the interrupted init (no kubeadm equivalent: kubeadm refuses its own leftovers).
pub const INIT_IN_PROGRESS_FILE: &str = "init-in-progress";
/// The agent's own static pods (kubelet, containerd) when the kubelet runs the manifest
/// directory, `--static-pod-runner kubelet` (no kubeadm equivalent).
pub const KUBEBOOT_AGENT_MANIFESTS_DIR: &str = "/etc/kubeboot/manifests";
/// kubeboot's runtime directory (no kubeadm equivalent).
pub const KUBEBOOT_RUN_DIR: &str = "/run/kubeboot";
/// kubeboot's log directory (no kubeadm equivalent).
pub const KUBEBOOT_LOG_DIR: &str = "/var/log/kubeboot";
/// The agent's pod log directory, in the layout of the kubelet's `/var/log/pods`
/// (kubelet: kuberuntime.podLogsRootDirectory) but apart from it: the kubelet's container GC
/// deletes every directory of `/var/log/pods` whose pod it does not run, which includes all
/// of the agent's static pods.
pub const POD_LOGS_DIR: &str = "/var/log/kubeboot/pods";

/// AdminKubeConfigFileName.
pub const ADMIN_KUBECONFIG: &str = "admin.conf";
/// KubeletKubeConfigFileName.
pub const KUBELET_KUBECONFIG: &str = "kubelet.conf";
/// KubeletBootstrapKubeConfigFileName.
pub const KUBELET_BOOTSTRAP_KUBECONFIG: &str = "bootstrap-kubelet.conf";
/// ControllerManagerKubeConfigFileName.
pub const CONTROLLER_MANAGER_KUBECONFIG: &str = "controller-manager.conf";
/// SchedulerKubeConfigFileName.
pub const SCHEDULER_KUBECONFIG: &str = "scheduler.conf";
/// SuperAdminKubeConfigFileName (kubeadm >= 1.29: the break-glass credential in
/// `system:masters`, written by `init` only).
pub const SUPER_ADMIN_KUBECONFIG: &str = "super-admin.conf";

/// Etcd.
pub const ETCD: &str = "etcd";
/// KubeAPIServer.
pub const KUBE_APISERVER: &str = "kube-apiserver";
/// KubeControllerManager.
pub const KUBE_CONTROLLER_MANAGER: &str = "kube-controller-manager";
/// KubeScheduler.
pub const KUBE_SCHEDULER: &str = "kube-scheduler";
/// KubeProxy.
pub const KUBE_PROXY: &str = "kube-proxy";
/// Kubelet.
pub const KUBELET: &str = "kubelet";

/// The namespace of every static pod and system object (metav1.NamespaceSystem).
pub const KUBE_SYSTEM: &str = "kube-system";
/// metav1.NamespacePublic.
pub const KUBE_PUBLIC: &str = "kube-public";

/// The `component` label on static pods (kubeadm: util/staticpod/utils.go).
pub const LABEL_COMPONENT: &str = "component";
/// The `tier` label on static pods.
pub const LABEL_TIER: &str = "tier";
/// The `tier` label's value for control-plane pods.
pub const TIER_CONTROL_PLANE: &str = "control-plane";
/// KubeAPIServerAdvertiseAddressEndpointAnnotationKey.
pub const ANNOTATION_APISERVER_ENDPOINT: &str =
    "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint";
/// EtcdAdvertiseClientUrlsAnnotationKey.
pub const ANNOTATION_ETCD_CLIENT_URLS: &str = "kubeadm.kubernetes.io/etcd.advertise-client-urls";
/// The annotation kubeboot's agent adds to a pod it runs: the manifest's content hash.
pub const ANNOTATION_CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// The kubelet's mirror pod annotation (kubelet: kubetypes.ConfigMirrorAnnotationKey).
pub const ANNOTATION_CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";
/// The kubelet's config source annotation (kubetypes.ConfigSourceAnnotationKey).
pub const ANNOTATION_CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// AnnotationKubeadmCRISocket.
pub const ANNOTATION_CRI_SOCKET: &str = "kubeadm.alpha.kubernetes.io/cri-socket";

/// The priority class of control-plane static pods.
pub const PRIORITY_CLASS_NODE_CRITICAL: &str = "system-node-critical";
/// The priority class of cluster addons.
pub const PRIORITY_CLASS_CLUSTER_CRITICAL: &str = "system-cluster-critical";

/// ControlPlaneTier name for the label/taint up to v1.23 (LabelNodeRoleOldControlPlane).
pub const LABEL_NODE_ROLE_MASTER: &str = "node-role.kubernetes.io/master";
/// LabelNodeRoleControlPlane (v1.20+ label; the only taint from v1.24 on).
pub const LABEL_NODE_ROLE_CONTROL_PLANE: &str = "node-role.kubernetes.io/control-plane";
/// LabelExcludeFromExternalLB.
pub const LABEL_EXCLUDE_FROM_EXTERNAL_LB: &str =
    "node.kubernetes.io/exclude-from-external-load-balancers";

/// KubeadmConfigConfigMap.
pub const KUBEADM_CONFIG_CONFIGMAP: &str = "kubeadm-config";
/// KubeadmCertsSecret: the control-plane certificates `--upload-certs` shares, encrypted.
pub const KUBEADM_CERTS_SECRET: &str = "kubeadm-certs";
/// KubeadmCertsClusterRoleName: the Role (and RoleBinding) that lets bootstrap tokens get
/// the `kubeadm-certs` Secret (a Role despite kubeadm's constant name).
pub const KUBEADM_CERTS_ROLE: &str = "kubeadm:kubeadm-certs";
/// ClusterConfigurationConfigMapKey.
pub const CLUSTER_CONFIGURATION_KEY: &str = "ClusterConfiguration";
/// ClusterStatusConfigMapKey.
pub const CLUSTER_STATUS_KEY: &str = "ClusterStatus";
/// KubeletBaseConfigurationConfigMapPrefix.
pub const KUBELET_CONFIG_CONFIGMAP_PREFIX: &str = "kubelet-config-";
/// ClusterInfo ConfigMap name (bootstrapapi.ConfigMapClusterInfo).
pub const CLUSTER_INFO_CONFIGMAP: &str = "cluster-info";

/// The user kubeadm puts in admin.conf (kubeadm: constants.KubernetesAdminUser is not a
/// constant; phases/kubeconfig uses "kubernetes-admin").
pub const ADMIN_USER: &str = "kubernetes-admin";
/// SystemPrivilegedGroup.
pub const SYSTEM_PRIVILEGED_GROUP: &str = "system:masters";
/// The user kubeadm >= 1.29 puts in super-admin.conf (phases/kubeconfig,
/// getKubeConfigSpecsBase: "kubernetes-super-admin").
pub const SUPER_ADMIN_USER: &str = "kubernetes-super-admin";
/// ClusterAdminsGroupAndClusterRoleBinding (kubeadm >= 1.29): admin.conf's group, and the
/// name of the ClusterRoleBinding that binds it to `cluster-admin`.
pub const CLUSTER_ADMINS_GROUP: &str = "kubeadm:cluster-admins";
/// The API server's bootstrap ClusterRole with every right (rbac bootstrappolicy).
pub const CLUSTER_ADMIN_CLUSTER_ROLE: &str = "cluster-admin";
/// NodesGroup.
pub const NODES_GROUP: &str = "system:nodes";
/// NodesUserPrefix.
pub const NODES_USER_PREFIX: &str = "system:node:";
/// ControllerManagerUser.
pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
/// SchedulerUser.
pub const SCHEDULER_USER: &str = "system:kube-scheduler";
/// APIServerKubeletClientCertCommonName's organization: MastersGroup is used up to v1.x.
pub const APISERVER_KUBELET_CLIENT_CN: &str = "kube-apiserver-kubelet-client";
/// EtcdHealthcheckClientCertCommonName.
pub const ETCD_HEALTHCHECK_CLIENT_CN: &str = "kube-etcd-healthcheck-client";
/// APIServerEtcdClientCertCommonName.
pub const APISERVER_ETCD_CLIENT_CN: &str = "kube-apiserver-etcd-client";
/// FrontProxyClientCertCommonName.
pub const FRONT_PROXY_CLIENT_CN: &str = "front-proxy-client";

/// The kubeadm API group.
pub const KUBEADM_API_GROUP: &str = "kubeadm.k8s.io";
/// The kubeadm config API version kubeadm 1.20 writes.
pub const KUBEADM_V1BETA2: &str = "kubeadm.k8s.io/v1beta2";
/// The kubeadm config API version of kubeadm 1.22 to 1.30.
pub const KUBEADM_V1BETA3: &str = "kubeadm.k8s.io/v1beta3";

/// DefaultAPIServerBindPort (kubeadm: apis/kubeadm/v1beta2/defaults.go).
pub const DEFAULT_APISERVER_BIND_PORT: u16 = 6443;
/// EtcdListenClientPort.
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// EtcdListenPeerPort.
pub const ETCD_PEER_PORT: u16 = 2380;
/// EtcdMetricsPort.
pub const ETCD_METRICS_PORT: u16 = 2381;
/// KubeControllerManagerPort (secure).
pub const KUBE_CONTROLLER_MANAGER_PORT: u16 = 10257;
/// KubeSchedulerPort (secure).
pub const KUBE_SCHEDULER_PORT: u16 = 10259;
/// KubeletPort.
pub const KUBELET_PORT: u16 = 10250;

/// The environment variable the agent sets on every process it runs, marking it as a pod
/// container of one agent: `<node-id>/<pod-uid>/<container>`.
pub const AGENT_MARKER_ENV: &str = "KUBEBOOT_POD";
/// The environment variable a detached agent is started with, marking the agent process itself
/// with its node id, so that `kubeboot reset` finds it even when its pid file and lock file
/// are gone.
pub const AGENT_PROCESS_ENV: &str = "KUBEBOOT_AGENT";

// ---------------------------------------------------------------------------------------------
// Addons (kubeadm: app/phases/addons/{dns,proxy}, app/constants)
// ---------------------------------------------------------------------------------------------

/// The `k8s-app` label addons select their pods by.
pub const LABEL_K8S_APP: &str = "k8s-app";
/// The `app` label on the kube-proxy ConfigMap (kubeadm: proxy/manifests.go).
pub const LABEL_APP: &str = "app";
/// The node OS label addons select (v1.LabelOSStable).
pub const LABEL_OS: &str = "kubernetes.io/os";
/// The well-known node label holding the node's hostname (LabelHostname), the topology key
/// of per-node (anti-)affinity.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// The `tier` label's value for node components kubeboot runs as static pods (kube-proxy).
pub const TIER_NODE: &str = "node";

/// KubeProxyConfigMap; also the ServiceAccount (proxy.KubeProxyServiceAccountName), Role,
/// RoleBinding and DaemonSet name.
pub const KUBE_PROXY_CONFIGMAP: &str = "kube-proxy";
/// KubeProxyConfigMapKey: the KubeProxyConfiguration's key in the ConfigMap and its file name
/// in the kube-proxy directory.
pub const KUBE_PROXY_CONFIG_KEY: &str = "config.conf";
/// The kubeconfig's key in the kube-proxy ConfigMap and its file name in the kube-proxy
/// directory (kubeadm: componentconfigs.kubeproxyKubeConfigFileName's base name).
pub const KUBE_PROXY_KUBECONFIG_KEY: &str = "kubeconfig.conf";
/// Where kube-proxy reads its configuration: the DaemonSet mounts the ConfigMap there, and
/// kubeboot's agent-run kube-proxy reads node-local files there (kubeadm: the DaemonSet's
/// mountPath and componentconfigs.kubeproxyKubeConfigFileName's directory).
pub const KUBE_PROXY_DIR: &str = "/var/lib/kube-proxy";
/// proxy.KubeProxyClusterRoleName, a role the API server's default RBAC creates.
pub const KUBE_PROXY_CLUSTER_ROLE: &str = "system:node-proxier";
/// The ClusterRoleBinding kubeadm creates for the kube-proxy ServiceAccount (proxy.go).
pub const KUBE_PROXY_CLUSTER_ROLE_BINDING: &str = "kubeadm:node-proxier";
/// The user the default RBAC binds to `system:node-proxier` (rbac bootstrappolicy: user
/// `system:kube-proxy`); kubeboot's agent-run kube-proxy authenticates as it.
pub const KUBE_PROXY_USER: &str = "system:kube-proxy";
/// NodeBootstrapTokenAuthGroup.
pub const NODE_BOOTSTRAP_TOKEN_AUTH_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
/// ComponentConfigHashAnnotationKey.
pub const ANNOTATION_COMPONENT_CONFIG_HASH: &str = "kubeadm.kubernetes.io/component-config.hash";
/// The xtables lock file kube-proxy shares with iptables on the host (kubeadm: proxy/manifests.go).
pub const XTABLES_LOCK: &str = "/run/xtables.lock";
/// The kernel modules directory kube-proxy reads (kubeadm: proxy/manifests.go).
pub const LIB_MODULES: &str = "/lib/modules";

/// The node label saying who runs kube-proxy on a node; kubeboot's agent sets it to
/// [`KUBE_PROXY_RUNNER_AGENT`] on nodes where it runs kube-proxy as a static pod, and the
/// kube-proxy DaemonSet's node affinity keeps its pods off those nodes (no kubeadm
/// equivalent: kubeadm runs kube-proxy only from the DaemonSet).
pub const LABEL_KUBE_PROXY_RUNNER: &str = "node.kubeboot.io/kube-proxy";
/// [`LABEL_KUBE_PROXY_RUNNER`]'s value on nodes whose kube-proxy the agent runs.
pub const KUBE_PROXY_RUNNER_AGENT: &str = "agent";

/// CoreDNSDeploymentName; also its ServiceAccount's name.
pub const COREDNS: &str = "coredns";
/// CoreDNSConfigMap.
pub const COREDNS_CONFIGMAP: &str = "coredns";
/// The Corefile's key in the CoreDNS ConfigMap.
pub const COREDNS_COREFILE_KEY: &str = "Corefile";
/// The ClusterRole and ClusterRoleBinding of CoreDNS (dns/manifests.go).
pub const COREDNS_CLUSTER_ROLE: &str = "system:coredns";
/// KubeDNSServiceName: the DNS Service, whatever the DNS addon (also the `k8s-app` label value).
pub const KUBE_DNS: &str = "kube-dns";
/// The index of the DNS Service's address in the service subnet (kubeadm: GetDNSIP).
pub const DNS_SERVICE_IP_INDEX: u32 = 10;

/// kubeboot's cluster DNS (no kubeadm equivalent; kubeadm runs CoreDNS from a registry image):
/// the Deployment, its ServiceAccount and the `app.kubernetes.io/name` label value of its pods.
pub const KUBEBOOT_DNS: &str = "kubeboot-dns";
/// The ClusterRole, ClusterRoleBinding, Role and RoleBinding of kubeboot's DNS.
pub const KUBEBOOT_DNS_RBAC: &str = "kubeboot:dns";
/// The repository of the image each kubeboot node builds from its own executable and imports
/// into its containerd; the tag is the kubeboot version.
pub const KUBEBOOT_DNS_IMAGE_REPOSITORY: &str = "kubeboot.local/kubeboot-dns";
/// The node label kubeboot sets on nodes whose containerd holds the kubeboot-dns image; its
/// value is the image's tag (label-safe). The Deployment's nodeSelector requires it, so no
/// replica lands on a node (a kubeadm-joined one) that lacks the image.
pub const LABEL_DNS_IMAGE: &str = "kubeboot.io/dns-image";
/// The annotation on kubeadm's `coredns` Deployment when kubeboot's DNS serves the cluster
/// (its replicas are 0); the value names the Deployment that serves DNS.
pub const ANNOTATION_DNS_SERVED_BY: &str = "kubeboot.io/dns-served-by";
/// The standard name label (`app.kubernetes.io/name`).
pub const LABEL_APP_NAME: &str = "app.kubernetes.io/name";

// ---------------------------------------------------------------------------------------------
// The agent's static pods in the API (no kubeadm equivalent; see agent/src/mirror.rs)
// ---------------------------------------------------------------------------------------------

/// The kubeconfig the agent publishes its static pods with, in `/etc/kubernetes`.
pub const KUBEBOOT_AGENT_KUBECONFIG: &str = "kubeboot-agent.conf";
/// The agent's user name prefix: its client certificate's CN is `kubeboot:agent:<node>`.
/// Not under `system:`, which Kubernetes reserves for its own users.
pub const KUBEBOOT_AGENT_USER_PREFIX: &str = "kubeboot:agent:";
/// The group of every node agent's client certificate (its organization).
pub const KUBEBOOT_AGENTS_GROUP: &str = "kubeboot:agents";
/// The ClusterRole that lets an agent publish its static pods (pods and pods/status); a
/// RoleBinding of the same name in kube-system grants it to [`KUBEBOOT_AGENTS_GROUP`].
pub const KUBEBOOT_AGENT_CLUSTER_ROLE: &str = "kubeboot:agent";
/// The schedulerName of the agent's pods in the API: no scheduler serves it, so no scheduler
/// ever binds them to a node (kube-scheduler: eventhandlers.go responsibleForPod).
pub const KUBEBOOT_AGENT_SCHEDULER_NAME: &str = "kubeboot-agent";
/// The `kubernetes.io/config.source` value of the agent's pods (the kubelet writes `file`,
/// `http` or `api`).
pub const KUBEBOOT_AGENT_CONFIG_SOURCE: &str = "kubeboot-agent";
/// The label naming the node whose agent published a pod; each agent lists and deletes only
/// the pods that carry its own node here.
pub const LABEL_AGENT_NODE: &str = "kubeboot.io/agent-node";
/// The annotation with the full node name of the publishing agent (the label value may be a
/// hash when the node name is longer than a label value may be).
pub const ANNOTATION_AGENT_NODE: &str = "kubeboot.io/node";

/// The loopback port each control-plane node's agent serves its admission webhook on, for its
/// own API server (`https://127.0.0.1:10263`). Outside every port Kubernetes components use
/// (10248-10259: kubelet, kube-proxy, controller-manager, cloud-controller-manager, scheduler)
/// and outside the ephemeral range (no kubeadm equivalent).
pub const AGENT_WEBHOOK_PORT: u16 = 10263;
/// The node-local API load balancer's configuration (listen address, API servers, CA): the
/// agent runs the balancer while this file exists (no kubeadm equivalent: kubeadm leaves an HA
/// endpoint to the user, kubernetes/kubeadm#2059; k3s and rke2 agents run such a balancer).
pub const API_LB_CONFIG: &str = "/etc/kubeboot/api-lb.json";
/// The namespace of the `kubernetes` Service and Endpoints (metav1.NamespaceDefault).
pub const DEFAULT_NAMESPACE: &str = "default";
/// The Service (and Endpoints) the API servers keep with their own addresses (kube-apiserver:
/// pkg/controlplane/controller.go, kubernetesServiceName); the balancer learns them there.
pub const KUBERNETES_SERVICE: &str = "kubernetes";
/// The loopback port of the node-local API load balancer (`127.0.0.1:6444`, the port k3s's
/// agent load balancer uses for the same job).
pub const API_LB_PORT: u16 = 6444;
/// The server name clients verify the API servers' certificates for when they reach them
/// through the balancer (`tls-server-name`): every kubeadm and kubeboot API server
/// certificate has this DNS SAN (kubeadm: certs/util.go GetAPIServerAltNames).
pub const API_SERVER_TLS_NAME: &str = "kubernetes";
/// The path of the agent's admission webhook for pods.
pub const AGENT_WEBHOOK_PATH: &str = "/admission/pods";
/// The ValidatingWebhookConfiguration that sends kube-system pod writes to the agent's webhook.
pub const AGENT_WEBHOOK_CONFIGURATION: &str = "kubeboot-agent";
/// The webhook (in [`AGENT_WEBHOOK_CONFIGURATION`]) that checks pod creates and updates
/// (failurePolicy Fail).
pub const AGENT_WEBHOOK_WRITES: &str = "pods.agent.kubeboot.io";
/// The webhook that checks pod deletes (failurePolicy Ignore: deleting is no escalation, and
/// `kubeboot reset` deletes its node's pods after it stopped the agent).
pub const AGENT_WEBHOOK_DELETES: &str = "pod-deletes.agent.kubeboot.io";
/// The namespace label the webhooks select kube-system by. Kubernetes 1.21+ sets it on every
/// namespace itself (and restores it if removed); kubeboot sets it on kube-system at init so
/// that 1.20 has it too (k8s.io/api: core/v1 LabelMetadataName).
pub const LABEL_METADATA_NAME: &str = "kubernetes.io/metadata.name";
/// The common name of the agent webhook's serving certificate (IP SAN 127.0.0.1).
pub const AGENT_WEBHOOK_CN: &str = "kubeboot-agent-webhook";

// ---------------------------------------------------------------------------------------------
// A joining node's kube-proxy credential (no kubeadm equivalent; see agent/src/csr_approval.rs)
// ---------------------------------------------------------------------------------------------

/// The name prefix of the CertificateSigningRequest a joining node creates for its
/// kube-proxy's client certificate: `kubeboot-kube-proxy-<node>`. The control-plane agents
/// approve it only under this exact name for the requesting node.
pub const KUBE_PROXY_CSR_PREFIX: &str = "kubeboot-kube-proxy-";
/// The signer of client certificates for the API server (k8s.io/api: certificates/v1
/// KubeAPIServerClientSignerName); kube-controller-manager signs it with the cluster CA.
pub const KUBE_APISERVER_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
/// The group every authenticated request carries (apiserver: user.AllAuthenticated).
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The ClusterRole (and ClusterRoleBinding to [`KUBEBOOT_AGENTS_GROUP`]) that lets the
/// agents read CertificateSigningRequests and approve those for the kube-apiserver-client
/// signer (CSRs and signers are cluster-scoped: the kube-system RoleBinding of
/// [`KUBEBOOT_AGENT_CLUSTER_ROLE`] cannot grant them).
pub const KUBEBOOT_AGENT_CSR_APPROVER_ROLE: &str = "kubeboot:kube-proxy-approver";
/// The ClusterRole (and ClusterRoleBinding to [`KUBEBOOT_AGENTS_GROUP`]) that lets the agents
/// of the control-plane nodes give Nodes their podCIDRs where the controller-manager's node
/// IPAM controller is off (`pod_cidr::Allocation::Kubeboot`): Nodes get, list, watch and patch,
/// CSINodes get. Also the name of the kube-system Role (and RoleBinding) for their Lease,
/// [`KUBEBOOT_NODE_IPAM_LEASE`].
pub const KUBEBOOT_NODE_IPAM_ROLE: &str = "kubeboot:node-ipam";
/// The Lease in kube-system that one control-plane agent holds while it gives podCIDRs, so
/// that no two agents give two Nodes the same one.
pub const KUBEBOOT_NODE_IPAM_LEASE: &str = "kubeboot-node-ipam";

/// CACertName.
pub const CA_CERT_NAME: &str = "ca.crt";
/// KubeletConfigurationFileName (inside [`KUBELET_RUN_DIR`]).
pub const KUBELET_CONFIG_FILE: &str = "config.yaml";
/// KubeletEnvFileName (inside [`KUBELET_RUN_DIR`]).
pub const KUBELET_ENV_FILE: &str = "kubeadm-flags.env";
/// KubeletEnvFileVariableName.
pub const KUBELET_ENV_VARIABLE: &str = "KUBELET_KUBEADM_ARGS";
/// DefaultContainerdCRISocket (kubeadm: constants_unix.go, as a path).
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
/// containerd's own configuration file (containerd: defaults.DefaultConfigPath).
pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
/// The containerd configuration kubeboot writes when the user has none (no kubeadm
/// equivalent: kubeadm expects containerd installed and configured).
pub const KUBEBOOT_CONTAINERD_CONFIG: &str = "/etc/kubeboot/containerd.toml";
/// The CNI configuration directory (libcni's DefaultNetDir).
pub const CNI_CONF_DIR: &str = "/etc/cni/net.d";
/// Where CNI plugin binaries are looked up, in order (Debian's package, then upstream's).
pub const CNI_BIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];
/// CNI plugins' state (host-local IPAM leases: libcni's default data dir).
pub const CNI_STATE_DIR: &str = "/var/lib/cni";
/// The network configuration kubeboot writes for `--pod-network bridge` (no kubeadm
/// equivalent).
pub const KUBEBOOT_CNI_CONFLIST: &str = "10-kubeboot.conflist";
/// The name of kubeboot's CNI network and its Linux bridge.
pub const KUBEBOOT_CNI_NETWORK: &str = "kubeboot";
/// The Linux bridge kubeboot's CNI network uses.
pub const KUBEBOOT_CNI_BRIDGE: &str = "kbr0";
