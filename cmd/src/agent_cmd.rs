//! `kubeboot agent`: runs the node agent in the foreground, or asks the running one for its
//! status.

use std::time::Duration;

use crate::cli::{AgentArgs, AgentCommands, StatusFormat};

/// Runs `agent` or `agent status`.
pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let layout = components::Layout::host();
    match args.command {
        Some(AgentCommands::Status { output }) => {
            let status = agent::status::query(&layout.agent_socket(), Duration::from_secs(5))?;
            match output {
                StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&status)?),
                StatusFormat::Text => print!("{}", status.render_text()),
            }
            Ok(())
        }
        Some(AgentCommands::Shim { .. }) => {
            unreachable!("main runs the shim before logging starts")
        }
        None => {
            // Refused whatever they hold: they go first on every component's PATH.
            let bin_dirs = phases::host::trusted_bin_dirs(&args.bin_dir)?;
            let mut config = agent::AgentConfig::from_layout(&layout, bin_dirs);
            let node_name = args.node_name.unwrap_or_else(phases::host::hostname);
            config.node_name = Some(node_name.clone());
            let network: agent::cni::PodNetwork = match args.pod_network.as_deref() {
                Some(v) => v.parse()?,
                None => agent::cni::PodNetwork::None,
            };
            if network == agent::cni::PodNetwork::Bridge {
                config = config.with_bridge_network(&layout, &node_name);
            }
            let runner =
                phases::host::static_pod_runner(args.static_pod_runner.as_deref(), &layout)?;
            // The agent renews the node's certificates inside the cluster's window
            // (agent::cert_renewal); where the kubelet runs the control plane, the restarts
            // that follow would be the user's, so it renews nothing there.
            config.cert_renewer = Some(agent::cert_renewal::RenewerHandle(std::sync::Arc::new(
                phases::certs::auto::NodeRenewer::new(layout.clone(), &node_name),
            )));
            if runner == components::StaticPodRunner::Kubelet {
                // The kubelet runs the manifest directory and publishes its mirror pods.
                config.manifest_dir = layout.agent_manifests_dir();
                config.kubeconfig = None;
                // The control plane's restarts after a renewal are the user's, as with kubeadm.
                config.credentials_dirs = Vec::new();
                config.cert_renewer = None;
            }
            agent::run(config)
        }
    }
}
