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
/// kubeboot's runtime directory (no kubeadm equivalent).
pub const KUBEBOOT_RUN_DIR: &str = "/run/kubeboot";
/// kubeboot's log directory (no kubeadm equivalent).
pub const KUBEBOOT_LOG_DIR: &str = "/var/log/kubeboot";
/// The kubelet's pod log directory (kubelet: kuberuntime.podLogsRootDirectory).
pub const POD_LOGS_DIR: &str = "/var/log/pods";

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
