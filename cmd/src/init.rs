//! `kubeboot init` and `kubeboot init phase ...`: builds the validated config from flags and
//! `--config` (one pure merge), then runs the phase tree.

use clap::FromArgMatches;
use components::config::InitFlags;

use crate::cli::{self, InitArgs};

/// Runs `init`, or one phase of it when the user typed `init phase ...`.
pub fn run(args: InitArgs, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let root = cli::command();
    let init_cmd = root.find_subcommand("init").expect("init exists");
    match matches.subcommand() {
        Some(("phase", phase_matches)) => {
            let (path, leaf_cmd, leaf) = phase_path(
                init_cmd.find_subcommand("phase").expect("phase exists"),
                phase_matches,
            );
            cli::refuse_foreign_flags(leaf_cmd, leaf)?;
            let args = InitArgs::from_arg_matches(leaf)?;
            let set = cli::set_flags(leaf_cmd, leaf);
            execute(args, set, &[path])
        }
        _ => {
            let set = cli::set_flags(init_cmd, matches);
            execute(args, set, &[])
        }
    }
}

/// Follows `phase certs all` down to its leaf: the phase path (`certs/all` becomes `certs`),
/// the leaf's command and matches.
pub(crate) fn phase_path<'a>(
    mut cmd: &'a clap::Command,
    mut m: &'a clap::ArgMatches,
) -> (String, &'a clap::Command, &'a clap::ArgMatches) {
    let mut parts = Vec::new();
    while let Some((name, sub)) = m.subcommand() {
        cmd = cmd
            .find_subcommand(name)
            .expect("clap matched a defined subcommand");
        m = sub;
        if name != "all" {
            parts.push(name.to_string());
        }
    }
    (parts.join("/"), cmd, m)
}

fn execute(args: InitArgs, set_flags: Vec<String>, only: &[String]) -> anyhow::Result<()> {
    let bin_dirs = phases::host::bin_dirs(&args.bin_dir)?;
    let config = crate::node::config_source(args.config.as_deref())?;
    let flags = InitFlags {
        config,
        apiserver_advertise_address: args.apiserver_advertise_address,
        apiserver_bind_port: args.apiserver_bind_port,
        apiserver_cert_extra_sans: args.apiserver_cert_extra_sans,
        cert_dir: args.cert_dir,
        control_plane_endpoint: args.control_plane_endpoint,
        kubernetes_version: args.kubernetes_version,
        node_name: args.node_name,
        pod_network_cidr: args.pod_network_cidr,
        service_cidr: args.service_cidr,
        service_dns_domain: args.service_dns_domain,
        image_repository: args.image_repository,
        cri_socket: args.cri_socket,
        token: args.token,
        token_ttl: args.token_ttl,
        certificate_key: args.certificate_key,
        upload_certs: args.upload_certs,
        skip_phases: args.skip_phases,
        ignore_preflight_errors: args.ignore_preflight_errors,
        feature_gates: args.feature_gates,
        set_flags,
    };
    let mut host = phases::host::facts(&bin_dirs);
    if !only.is_empty() {
        // A single phase may prepare files for another node (certificates, manifests): only a
        // full init needs the advertise address to be this node's.
        host.local_addresses.clear();
    }
    let cfg = components::config::resolve_init(&flags, &host).map_err(|e| {
        // Why no version was detected: the kube-apiserver found is not trusted, so it was
        // not run for `--version` (the preflight says the same once a version is given).
        match phases::host::find_binary(components::names::KUBE_APISERVER, &bin_dirs) {
            Err(untrusted) if host.detected_version.is_none() => anyhow::Error::new(untrusted)
                .context(format!("{e}: kube-apiserver was not asked for its version")),
            _ => e.into(),
        }
    })?;
    let layout = components::Layout::host();
    // Without the flag, the runner this node was set up with (a phase run alone, e.g.
    // `init phase agent-start`, must not start the agent on the kubelet's manifests).
    let static_pod_runner =
        phases::host::static_pod_runner(args.static_pod_runner.as_deref(), &layout)?;
    let host_paths = phases::host::host_paths(&layout);
    let node = crate::node::node_ctx(
        layout,
        crate::node::NodeFlags {
            command: "init",
            dry_run: args.dry_run,
            bin_dirs,
            ignore_preflight_errors: cfg.node.ignore_preflight_errors.clone(),
            pod_network: args.pod_network.as_deref(),
            static_pod_runner,
        },
    )?;
    let mut data = phases::init::InitData {
        node,
        cfg,
        host_paths,
        api: None,
        skip_token_print: args.skip_token_print,
        skip_certificate_key_print: args.skip_certificate_key_print,
        upload_certs: args.upload_certs,
        resumed: None,
    };
    phases::init::run(&mut data, only)
}
