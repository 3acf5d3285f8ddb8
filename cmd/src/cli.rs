//! The command line: one clap derive struct per command, doc comments as help, kubeadm's flag
//! names, defaults and help lines. `init phase ...` is generated from the phase tree.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// kubeboot: easily bootstrap a secure Kubernetes cluster.
///
/// kubeboot does what kubeadm does (init, join, reset, tokens, certificates) and runs the
/// control plane as static Pods under its own node agent, from the Kubernetes binaries on the
/// node: no container runtime or registry needed.
#[derive(Parser, Debug)]
#[command(name = "kubeboot", version = env!("CARGO_PKG_VERSION"), propagate_version = false)]
pub struct Cli {
    /// number for the log level verbosity
    #[arg(
        short = 'v',
        long = "v",
        global = true,
        value_name = "Level",
        default_value_t = 0
    )]
    pub v: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Commands,
}

/// kubeboot's commands.
// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Run this command in order to set up the Kubernetes control plane
    Init(InitArgs),
    /// Run this on any machine you wish to join an existing cluster
    Join(JoinArgs),
    /// Performs a best effort revert of changes made to this host by 'kubeboot init' or 'kubeboot join'
    Reset(ResetArgs),
    /// Run or inspect the kubeboot node agent, which runs the static Pods of this node
    Agent(AgentArgs),
    /// Print the version of kubeboot
    Version(VersionArgs),
    /// Manage configuration for a kubeboot cluster
    Config(ConfigArgs),
    /// Manage bootstrap tokens
    Token(crate::token::TokenArgs),
    /// Commands related to handling kubernetes certificates
    Certs(crate::certs::CertsArgs),
    /// Upgrade your cluster smoothly to a newer version with this command
    Upgrade(crate::upgrade::UpgradeArgs),
    /// Kubeconfig file utilities
    Kubeconfig(crate::kubeconfig_cmd::KubeconfigArgs),
    /// Save and restore snapshots of the cluster's local etcd
    Etcd(crate::etcd::EtcdArgs),
    /// Output shell completion code for the specified shell (bash, zsh, fish)
    Completion(CompletionArgs),
    // No doc comment: the help (short and long) is DnsArgs's own.
    #[allow(missing_docs)]
    Dns(crate::dns::DnsArgs),
}

/// `kubeboot init` (kubeadm: cmd/init.go).
#[derive(Args, Debug, Default, Clone)]
pub struct InitArgs {
    /// The IP address the API Server will advertise it's listening on. If not set the default network interface will be used.
    #[arg(long, value_name = "string")]
    pub apiserver_advertise_address: Option<String>,
    /// Port for the API Server to bind to. (default 6443)
    #[arg(long, value_name = "int32")]
    pub apiserver_bind_port: Option<u16>,
    /// Optional extra Subject Alternative Names (SANs) to use for the API Server serving certificate. Can be both IP addresses and DNS names.
    #[arg(long, value_name = "strings", value_delimiter = ',')]
    pub apiserver_cert_extra_sans: Vec<String>,
    /// The path where to save and store the certificates. (default "/etc/kubernetes/pki")
    #[arg(long, value_name = "string")]
    pub cert_dir: Option<String>,
    /// Key used to encrypt the control-plane certificates in the kubeadm-certs Secret.
    #[arg(long, value_name = "string")]
    pub certificate_key: Option<String>,
    /// Path to a kubeadm configuration file.
    #[arg(long, value_name = "string")]
    pub config: Option<PathBuf>,
    /// Specify a stable IP address or DNS name for the control plane.
    #[arg(long, value_name = "string")]
    pub control_plane_endpoint: Option<String>,
    /// Path to the CRI socket to connect. If empty kubeboot will try to auto-detect this value; use this option only if you have more than one CRI installed or if you have non-standard CRI socket.
    #[arg(long, value_name = "string")]
    pub cri_socket: Option<String>,
    /// Don't apply any changes; just output what would be done.
    #[arg(long)]
    pub dry_run: bool,
    /// A set of key=value pairs that describe feature gates for various features.
    #[arg(long, value_name = "string")]
    pub feature_gates: Option<String>,
    /// A list of checks whose errors will be shown as warnings. Example: 'IsPrivilegedUser,Swap'. Value 'all' ignores errors from all checks.
    #[arg(long, value_name = "strings", value_delimiter = ',')]
    pub ignore_preflight_errors: Vec<String>,
    /// Choose a container registry to pull control plane images from (default "k8s.gcr.io")
    #[arg(long, value_name = "string")]
    pub image_repository: Option<String>,
    /// Choose a specific Kubernetes version for the control plane. (default: the version of the kube-apiserver binary on this node)
    #[arg(long, value_name = "string")]
    pub kubernetes_version: Option<String>,
    /// Specify the node name.
    #[arg(long, value_name = "string")]
    pub node_name: Option<String>,
    /// Specify range of IP addresses for the pod network. If set, the control plane will automatically allocate CIDRs for every node.
    #[arg(long, value_name = "string")]
    pub pod_network_cidr: Option<String>,
    /// Use alternative range of IP address for service VIPs. (default "10.96.0.0/12")
    #[arg(long, value_name = "string")]
    pub service_cidr: Option<String>,
    /// Use alternative domain for services, e.g. "myorg.internal". (default "cluster.local")
    #[arg(long, value_name = "string")]
    pub service_dns_domain: Option<String>,
    /// Don't print the key used to encrypt the control-plane certificates.
    #[arg(long)]
    pub skip_certificate_key_print: bool,
    /// List of phases to be skipped
    #[arg(long, value_name = "strings", value_delimiter = ',')]
    pub skip_phases: Vec<String>,
    /// Skip printing of the default bootstrap token generated by 'kubeboot init'.
    #[arg(long)]
    pub skip_token_print: bool,
    /// The token to use for establishing bidirectional trust between nodes and control-plane nodes. The format is [a-z0-9]{6}\.[a-z0-9]{16} - e.g. abcdef.0123456789abcdef
    #[arg(long, value_name = "string")]
    pub token: Option<String>,
    /// The duration before the token is automatically deleted (e.g. 1s, 2m, 3h). If set to '0', the token will never expire (default 24h0m0s)
    #[arg(long, value_name = "duration")]
    pub token_ttl: Option<String>,
    /// Upload control-plane certificates to the kubeadm-certs Secret.
    #[arg(long)]
    pub upload_certs: bool,
    /// Directory holding the component binaries (kube-apiserver, etcd, ...) the agent runs; repeatable, searched in order before /usr/local/bin and /usr/bin
    #[arg(long, value_name = "dir")]
    pub bin_dir: Vec<PathBuf>,
    /// The pod network: "bridge" (kubeboot's CNI bridge on each node's podCIDR, with routes between nodes) or "none" (install your own CNI network).
    #[arg(long, value_name = "bridge|none")]
    pub pod_network: Option<String>,
    /// Who runs the control plane's static Pods: "agent" (kubeboot's agent, from the host binaries; the default) or "kubelet" (the kubelet, through CRI from images, as kubeadm does; image archives go in /var/lib/kubeboot/images). Default: what this node was set up with, else agent.
    #[arg(long, value_name = "agent|kubelet")]
    pub static_pod_runner: Option<String>,
}

/// `kubeboot join` (kubeadm: cmd/join.go, 1.20's flags).
#[derive(Args, Debug, Default, Clone)]
pub struct JoinArgs {
    /// The API server endpoint to join through: `<host>:<port>` (kubeadm's positional argument).
    #[arg(value_name = "api-server-endpoint")]
    pub endpoint: Vec<String>,
    /// If the node should host a new control plane instance, the IP address the API Server will advertise it's listening on. If not set the default network interface will be used.
    #[arg(long, value_name = "string")]
    pub apiserver_advertise_address: Option<String>,
    /// If the node should host a new control plane instance, the port for the API Server to bind to. (default 6443)
    #[arg(long, value_name = "int32")]
    pub apiserver_bind_port: Option<u16>,
    /// Use this key to decrypt the certificate secrets uploaded by init.
    #[arg(long, value_name = "string")]
    pub certificate_key: Option<String>,
    /// Path to kubeadm config file.
    #[arg(long, value_name = "string")]
    pub config: Option<PathBuf>,
    /// Create a new control plane instance on this node
    #[arg(long)]
    pub control_plane: bool,
    /// Path to the CRI socket to connect. If empty kubeboot will try to auto-detect this value; use this option only if you have more than one CRI installed or if you have non-standard CRI socket.
    #[arg(long, value_name = "string")]
    pub cri_socket: Option<String>,
    /// For file-based discovery, a file or URL from which to load cluster information.
    #[arg(long, value_name = "string")]
    pub discovery_file: Option<String>,
    /// For token-based discovery, the token used to validate cluster information fetched from the API server.
    #[arg(long, value_name = "string")]
    pub discovery_token: Option<String>,
    /// For token-based discovery, validate that the root CA public key matches this hash (format: "<type>:<value>").
    #[arg(long, value_name = "strings", value_delimiter = ',')]
    pub discovery_token_ca_cert_hash: Vec<String>,
    /// For token-based discovery, allow joining without --discovery-token-ca-cert-hash pinning.
    #[arg(long)]
    pub discovery_token_unsafe_skip_ca_verification: bool,
    /// Don't apply any changes; just output what would be done.
    #[arg(long)]
    pub dry_run: bool,
    /// Path to a directory that contains files named "target[suffix][+patchtype].extension". For example, "kube-apiserver0+merge.yaml" or just "etcd.json". "patchtype" can be one of "strategic", "merge" or "json" and they match the patch formats supported by kubectl. The default "patchtype" is "strategic". "extension" must be either "json" or "yaml". "suffix" is an optional string that can be used to determine which patches are applied first alpha-numerically.
    #[arg(long, value_name = "string")]
    pub experimental_patches: Option<String>,
    /// A list of checks whose errors will be shown as warnings. Example: 'IsPrivilegedUser,Swap'. Value 'all' ignores errors from all checks.
    #[arg(long, value_name = "strings", value_delimiter = ',')]
    pub ignore_preflight_errors: Vec<String>,
    /// Specify the node name.
    #[arg(long, value_name = "string")]
    pub node_name: Option<String>,
    /// List of phases to be skipped
    #[arg(long, value_name = "strings", value_delimiter = ',')]
    pub skip_phases: Vec<String>,
    /// Specify the token used to temporarily authenticate with the Kubernetes Control Plane while joining the node.
    #[arg(long, value_name = "string")]
    pub tls_bootstrap_token: Option<String>,
    /// Use this token for both discovery-token and tls-bootstrap-token when those values are not provided.
    #[arg(long, value_name = "string")]
    pub token: Option<String>,
    /// Directory holding the component binaries (kubelet, kube-proxy, ...) the agent runs; repeatable, searched in order before /usr/local/bin and /usr/bin
    #[arg(long, value_name = "dir")]
    pub bin_dir: Vec<PathBuf>,
    /// The pod network: "bridge" (kubeboot's CNI bridge on this node's podCIDR, with routes between nodes) or "none" (the cluster's own CNI network).
    #[arg(long, value_name = "bridge|none")]
    pub pod_network: Option<String>,
    /// Who runs this node's static Pods: "agent" (kubeboot's agent, from the host binaries; the default) or "kubelet" (the kubelet, through CRI from images, as on a kubeadm node; kube-proxy then comes from the cluster's DaemonSet).
    #[arg(long, value_name = "agent|kubelet")]
    pub static_pod_runner: Option<String>,
}

/// `kubeboot reset` (kubeadm: cmd/reset.go).
#[derive(Args, Debug, Clone)]
pub struct ResetArgs {
    /// The path to the directory where the certificates are stored. If specified, clean this directory. (default "/etc/kubernetes/pki")
    #[arg(long, value_name = "string")]
    pub cert_dir: Option<PathBuf>,
    /// Reset the node without prompting for confirmation.
    #[arg(short, long)]
    pub force: bool,
    /// Don't apply any changes; just output what would be done.
    #[arg(long)]
    pub dry_run: bool,
    /// A list of checks whose errors will be shown as warnings. Example: 'IsPrivilegedUser,Swap'. Value 'all' ignores errors from all checks.
    #[arg(long, value_name = "strings", value_delimiter = ',')]
    pub ignore_preflight_errors: Vec<String>,
    /// List of phases to be skipped
    #[arg(long, value_name = "strings", value_delimiter = ',')]
    pub skip_phases: Vec<String>,
    /// The kubeconfig file to use when talking to the cluster. (default "/etc/kubernetes/admin.conf")
    #[arg(long, value_name = "string")]
    pub kubeconfig: Option<PathBuf>,
    /// Delete this node's Node object from the cluster (needs an admin credential: /etc/kubernetes/admin.conf on a control-plane node, or --kubeconfig).
    #[arg(long)]
    pub delete_node: bool,
    /// Reset even when this node's etcd member is the last healthy one of a multi-member cluster (or needed for its quorum): the cluster loses its quorum and this node's copy of the data. -f does not imply it.
    #[arg(long)]
    pub force_remove_last_etcd_member: bool,
}

/// `kubeboot agent`: runs the node agent in the foreground, or talks to the running one.
#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    /// What to do; without a subcommand the agent runs in the foreground.
    #[command(subcommand)]
    pub command: Option<AgentCommands>,
    /// Directory holding the component binaries; repeatable, searched in order before /usr/local/bin and /usr/bin
    #[arg(long, value_name = "dir")]
    pub bin_dir: Vec<PathBuf>,
    /// The node name static Pod names are suffixed with. (default: the host name)
    #[arg(long, value_name = "string")]
    pub node_name: Option<String>,
    /// "bridge": write kubeboot's CNI configuration once this node's podCIDR is known and keep routes to the other nodes' pods; "none" (default): leave the pod network alone.
    #[arg(long, value_name = "bridge|none")]
    pub pod_network: Option<String>,
    /// "agent" (default): run the static Pods of /etc/kubernetes/manifests and publish them to the API; "kubelet": the kubelet runs that directory, the agent runs /etc/kubeboot/manifests (the kubelet, containerd) and publishes nothing. Default: what /var/lib/kubelet/config.yaml says (staticPodPath), else agent.
    #[arg(long, value_name = "agent|kubelet")]
    pub static_pod_runner: Option<String>,
}

/// The agent's subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum AgentCommands {
    /// Show the static Pods the agent runs, their containers, restarts and probes
    Status {
        /// Output format: text or json
        #[arg(short, long, value_enum, default_value_t = StatusFormat::Text)]
        output: StatusFormat,
    },
    /// Run one container under the agent's supervision shim (internal)
    #[command(hide = true)]
    Shim {
        /// The shim's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// `agent status -o`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    /// A table.
    Text,
    /// The status document.
    Json,
}

/// `kubeboot version`.
#[derive(Args, Debug, Clone)]
pub struct VersionArgs {
    /// Output format; available options are 'yaml', 'json' and 'short'
    #[arg(short, long, value_name = "string")]
    pub output: Option<String>,
}

/// `kubeboot config`.
#[derive(Args, Debug, Clone)]
pub struct ConfigArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ConfigCommands,
}

/// `kubeboot config` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum ConfigCommands {
    /// Print configuration
    Print {
        /// What to print.
        #[command(subcommand)]
        what: PrintCommands,
    },
}

/// `kubeboot config print` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum PrintCommands {
    /// Print default init configuration, that can be used for 'kubeboot init'
    InitDefaults {
        /// The kubeadm config API version to print: v1beta2 (default, what kubeadm 1.20 prints) or v1beta3
        #[arg(long, value_name = "string", default_value = "v1beta2")]
        api_version: String,
        /// The Kubernetes version the defaults are for. (default: the version of the kube-apiserver binary on this node)
        #[arg(long, value_name = "string")]
        kubernetes_version: Option<String>,
        /// Directory holding the component binaries; repeatable.
        #[arg(long, value_name = "dir")]
        bin_dir: Vec<PathBuf>,
    },
    /// Print default join configuration, that can be used for 'kubeboot join'
    JoinDefaults {
        /// The kubeadm config API version to print: v1beta2 (default, what kubeadm 1.20 prints) or v1beta3
        #[arg(long, value_name = "string", default_value = "v1beta2")]
        api_version: String,
    },
}

/// `kubeboot completion`.
#[derive(Args, Debug, Clone)]
pub struct CompletionArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// The full command, with `init phase ...` and `join phase ...` generated from the phase
/// trees.
pub fn command() -> clap::Command {
    Cli::command()
        .mut_subcommand("init", |init| {
            let phase = phase_command(
                &init,
                "phase",
                "Use this command to invoke single phase of the init workflow",
                &phases::init::phases(),
            );
            init.subcommand(phase)
        })
        .mut_subcommand("join", |join| {
            let phase = phase_command(
                &join,
                "phase",
                "Use this command to invoke single phase of the join workflow",
                &phases::join::phases(),
            );
            join.subcommand(phase).args_conflicts_with_subcommands(true)
        })
        .mut_subcommand("reset", |reset| {
            let phase = phase_command(
                &reset,
                "phase",
                "Use this command to invoke single phase of the reset workflow",
                &phases::reset::phases(),
            );
            reset
                .subcommand(phase)
                .args_conflicts_with_subcommands(true)
        })
}

/// The command line to parse `args` (the whole of argv) with: [`command`], except for
/// `kubeboot agent ...`, the long-running agent: it gets the tree without the generated
/// `init phase` / `join phase` subcommands, which it can never match and whose construction
/// (every phase tree, the init and join flags copied into each phase) would stay in its
/// memory as touched code and freed-but-kept heap for as long as it runs.
pub fn command_for(args: &[std::ffi::OsString]) -> clap::Command {
    if args.get(1).is_some_and(|a| a == "agent") {
        Cli::command()
    } else {
        command()
    }
}

/// The shim's own arguments when `args` is `kubeboot agent shim <args>...` (how the agent
/// starts every container's shim), all UTF-8: what clap would hand over for the `shim`
/// subcommand (a trailing var-arg taking everything verbatim), without building it.
pub fn shim_args(args: &[std::ffi::OsString]) -> Option<Vec<String>> {
    if args.len() < 3 || args[1] != "agent" || args[2] != "shim" {
        return None;
    }
    args[3..]
        .iter()
        .map(|a| a.to_str().map(str::to_string))
        .collect()
}

/// Builds `phase <name> [<sub>|all]` from a phase tree, each accepting only the parent's args
/// its phase inherits (the others exist hidden, and are refused when given: see
/// [`refuse_foreign_flags`]).
fn phase_command<D>(
    parent: &clap::Command,
    name: &'static str,
    about: &'static str,
    tree: &[phases::runner::Phase<D>],
) -> clap::Command {
    let mut cmd = clap::Command::new(name)
        .about(about)
        .subcommand_required(true);
    for p in tree {
        cmd = cmd.subcommand(one_phase(parent, p));
    }
    cmd
}

fn one_phase<D>(parent: &clap::Command, p: &phases::runner::Phase<D>) -> clap::Command {
    let mut cmd = clap::Command::new(p.name).about(p.short).hide(p.hidden);
    let inherit: Vec<&str> = inherited(p);
    for arg in parent.get_arguments() {
        let long = arg.get_long().unwrap_or_default();
        if long == "help" {
            continue;
        }
        let keep = inherit.contains(&long);
        cmd = cmd.arg(arg.clone().hide(!keep));
    }
    if !p.children.is_empty() {
        let all_flags: Vec<&str> = p.children.iter().flat_map(inherited).collect();
        let mut all = clap::Command::new("all").about(format!("Run all the {} phases", p.name));
        for arg in parent.get_arguments() {
            let long = arg.get_long().unwrap_or_default();
            if long == "help" {
                continue;
            }
            all = all.arg(arg.clone().hide(!all_flags.contains(&long)));
        }
        cmd = cmd.subcommand(all);
        for c in &p.children {
            cmd = cmd.subcommand(one_phase(parent, c));
        }
    }
    cmd
}

fn inherited<D>(p: &phases::runner::Phase<D>) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = p.inherit_flags.to_vec();
    for c in &p.children {
        v.extend(inherited(c));
    }
    v
}

/// Refuses a flag given on `init phase X` that phase X does not take, as cobra does:
/// `unknown flag: --pod-network-cidr`.
///
/// # Errors
/// The first such flag.
pub fn refuse_foreign_flags(cmd: &clap::Command, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    for arg in cmd.get_arguments() {
        if arg.is_hide_set()
            && matches.value_source(arg.get_id().as_str())
                == Some(clap::parser::ValueSource::CommandLine)
        {
            anyhow::bail!(
                "unknown flag: --{}",
                arg.get_long().unwrap_or(arg.get_id().as_str())
            );
        }
    }
    Ok(())
}

/// The long names of the flags the user gave on the command line.
pub fn set_flags(cmd: &clap::Command, matches: &clap::ArgMatches) -> Vec<String> {
    cmd.get_arguments()
        .filter(|a| {
            matches.value_source(a.get_id().as_str())
                == Some(clap::parser::ValueSource::CommandLine)
        })
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;

    #[test]
    fn command_is_well_formed() {
        command().debug_assert();
    }

    fn os(args: &[&str]) -> Vec<std::ffi::OsString> {
        args.iter().map(Into::into).collect()
    }

    #[test]
    fn agent_parses_the_same_without_the_phase_tree() {
        let argv = os(&[
            "kubeboot",
            "agent",
            "--bin-dir",
            "/opt/bin",
            "--pod-network",
            "bridge",
            "--v=3",
        ]);
        let lean = command_for(&argv);
        // The lean tree is the one the agent gets, and it has no generated phases.
        assert!(
            lean.find_subcommand("init")
                .unwrap()
                .find_subcommand("phase")
                .is_none()
        );
        let full = Cli::from_arg_matches(&command().try_get_matches_from(&argv).unwrap()).unwrap();
        let got = Cli::from_arg_matches(&lean.try_get_matches_from(&argv).unwrap()).unwrap();
        assert_eq!(format!("{got:?}"), format!("{full:?}"));
        assert_eq!(got.v, 3);
    }

    #[test]
    fn other_commands_keep_the_phase_tree() {
        for first in ["init", "--v=2", "join", "-h"] {
            let cmd = command_for(&os(&["kubeboot", first]));
            assert!(
                cmd.find_subcommand("init")
                    .unwrap()
                    .find_subcommand("phase")
                    .is_some(),
                "{first}"
            );
        }
    }

    #[test]
    fn shim_args_are_what_clap_hands_the_shim() {
        let argv = os(&[
            "kubeboot",
            "agent",
            "shim",
            "--log",
            "/l",
            "--exit-file",
            "/e",
            "--netns",
            "/run/netns/x",
            "--",
            "/bin/sh",
            "-c",
            "exec a -- --b",
            "--",
            "-v",
        ]);
        let m = command().try_get_matches_from(&argv).unwrap();
        let (_, agent) = m.subcommand().unwrap();
        let (_, shim) = agent.subcommand().unwrap();
        let from_clap: Vec<String> = shim.get_many::<String>("args").unwrap().cloned().collect();
        assert_eq!(shim_args(&argv), Some(from_clap));
        assert_eq!(shim_args(&os(&["kubeboot", "agent", "status"])), None);
        assert_eq!(shim_args(&os(&["kubeboot", "shim", "agent"])), None);
        let bad = vec!["kubeboot".into(), "agent".into(), "shim".into(), {
            use std::os::unix::ffi::OsStringExt;
            std::ffi::OsString::from_vec(vec![0xff])
        }];
        assert_eq!(shim_args(&bad), None);
    }

    #[test]
    fn init_phase_commands_are_generated_from_the_tree() {
        let m = command()
            .try_get_matches_from([
                "kubeboot",
                "init",
                "phase",
                "certs",
                "all",
                "--cert-dir",
                "/tmp/x",
            ])
            .unwrap();
        let (_, init) = m.subcommand().unwrap();
        let (_, phase) = init.subcommand().unwrap();
        let (name, certs) = phase.subcommand().unwrap();
        assert_eq!(name, "certs");
        assert_eq!(certs.subcommand_name(), Some("all"));
        for sub in ["apiserver", "etcd-ca", "sa"] {
            assert!(
                command()
                    .try_get_matches_from(["kubeboot", "init", "phase", "certs", sub])
                    .is_ok(),
                "{sub}"
            );
        }
        assert!(
            command()
                .try_get_matches_from(["kubeboot", "init", "phase", "kubeconfig", "admin"])
                .is_ok()
        );
        assert!(
            command()
                .try_get_matches_from(["kubeboot", "init", "phase", "control-plane", "apiserver"])
                .is_ok()
        );
        assert!(
            command()
                .try_get_matches_from(["kubeboot", "init", "phase", "etcd", "local"])
                .is_ok()
        );
        assert!(
            command()
                .try_get_matches_from(["kubeboot", "init", "phase", "nope"])
                .is_err()
        );
    }

    #[test]
    fn phase_refuses_flags_it_does_not_inherit() {
        let cmd = command();
        let m = cmd
            .clone()
            .try_get_matches_from([
                "kubeboot",
                "init",
                "phase",
                "etcd",
                "local",
                "--pod-network-cidr",
                "10.0.0.0/16",
            ])
            .unwrap();
        let leaf_cmd = cmd
            .find_subcommand("init")
            .and_then(|c| c.find_subcommand("phase"))
            .and_then(|c| c.find_subcommand("etcd"))
            .and_then(|c| c.find_subcommand("local"))
            .unwrap();
        let leaf = m
            .subcommand_matches("init")
            .and_then(|m| m.subcommand_matches("phase"))
            .and_then(|m| m.subcommand_matches("etcd"))
            .and_then(|m| m.subcommand_matches("local"))
            .unwrap();
        let err = refuse_foreign_flags(leaf_cmd, leaf).unwrap_err();
        assert_eq!(err.to_string(), "unknown flag: --pod-network-cidr");
    }

    #[test]
    fn set_flags_lists_only_what_the_user_typed() {
        let cmd = command();
        let m = cmd
            .clone()
            .try_get_matches_from(["kubeboot", "init", "--node-name", "n1", "--dry-run"])
            .unwrap();
        let init_cmd = cmd.find_subcommand("init").unwrap();
        let mut set = set_flags(init_cmd, m.subcommand_matches("init").unwrap());
        set.sort();
        assert_eq!(set, vec!["dry-run".to_string(), "node-name".to_string()]);
    }
}
