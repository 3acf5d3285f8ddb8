//! `kubeboot join` and `kubeboot join phase ...`: builds the validated join configuration from
//! flags and `--config` (one pure merge), then runs the phase tree.

use clap::FromArgMatches;
use components::config::JoinFlags;

use crate::cli::{self, JoinArgs};

/// Runs `join`, or one phase of it when the user typed `join phase ...`.
pub fn run(args: JoinArgs, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let root = cli::command();
    let join_cmd = root.find_subcommand("join").expect("join exists");
    match matches.subcommand() {
        Some(("phase", phase_matches)) => {
            let (path, leaf_cmd, leaf) = crate::init::phase_path(
                join_cmd.find_subcommand("phase").expect("phase exists"),
                phase_matches,
            );
            cli::refuse_foreign_flags(leaf_cmd, leaf)?;
            let args = JoinArgs::from_arg_matches(leaf)?;
            let set = cli::set_flags(leaf_cmd, leaf);
            execute(args, set, &[path])
        }
        _ => {
            let set = cli::set_flags(join_cmd, matches);
            execute(args, set, &[])
        }
    }
}

fn execute(args: JoinArgs, set_flags: Vec<String>, only: &[String]) -> anyhow::Result<()> {
    let bin_dirs = phases::host::bin_dirs(&args.bin_dir)?;
    let config = crate::node::config_source(args.config.as_deref())?;
    anyhow::ensure!(
        args.endpoint.len() <= 1,
        "accepts at most 1 arg(s), received {}: give one API server endpoint (<host>:<port>)",
        args.endpoint.len()
    );
    let flags = JoinFlags {
        config,
        endpoint: args.endpoint.first().cloned(),
        node_name: args.node_name,
        cri_socket: args.cri_socket,
        apiserver_advertise_address: args.apiserver_advertise_address,
        apiserver_bind_port: args.apiserver_bind_port,
        control_plane: args.control_plane,
        certificate_key: args.certificate_key,
        discovery_file: args.discovery_file,
        discovery_token: args.discovery_token,
        discovery_token_ca_cert_hash: args.discovery_token_ca_cert_hash,
        discovery_token_unsafe_skip_ca_verification: args
            .discovery_token_unsafe_skip_ca_verification,
        tls_bootstrap_token: args.tls_bootstrap_token,
        token: args.token,
        skip_phases: args.skip_phases,
        experimental_patches: args.experimental_patches,
        ignore_preflight_errors: args.ignore_preflight_errors,
        set_flags,
    };
    let host = phases::host::node_facts();
    let cfg = components::config::resolve_join(&flags, &host)?;
    let layout = components::Layout::host();
    let static_pod_runner =
        phases::host::static_pod_runner(args.static_pod_runner.as_deref(), &layout)?;
    let static_pod_runner_chosen =
        args.static_pod_runner.is_some() || phases::host::node_static_pod_runner(&layout).is_some();
    let node = crate::node::node_ctx(
        layout,
        crate::node::NodeFlags {
            command: "join",
            dry_run: args.dry_run,
            bin_dirs,
            ignore_preflight_errors: cfg.node.ignore_preflight_errors.clone(),
            pod_network: args.pod_network.as_deref(),
            static_pod_runner,
        },
    )?;
    let mut data = phases::join::JoinData {
        node,
        cfg,
        discovered: None,
        init_cfg: None,
        bootstrap_api: None,
        api: None,
        node_ip: host.default_address,
        static_pod_runner_chosen,
    };
    phases::join::run(&mut data, only)
}
