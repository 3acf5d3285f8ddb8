//! `kubeboot config print init-defaults` (kubeadm: cmd/config.go).

use crate::cli::{ConfigArgs, ConfigCommands, PrintCommands};

/// Runs `config ...`.
pub fn run(args: ConfigArgs) -> anyhow::Result<()> {
    match args.command {
        ConfigCommands::Print {
            what:
                PrintCommands::InitDefaults {
                    api_version,
                    kubernetes_version,
                    bin_dir,
                },
        } => {
            let version = match kubernetes_version {
                Some(v) => v.parse()?,
                None => {
                    let dirs = phases::host::bin_dirs(&bin_dir)?;
                    phases::host::binary_version(components::names::KUBE_APISERVER, &dirs)?.ok_or_else(|| {
                        anyhow::anyhow!(
                            "could not find kube-apiserver to take the Kubernetes version from; pass --kubernetes-version or --bin-dir"
                        )
                    })?
                }
            };
            let api = components::config::ApiVersion::parse(&api_version).ok_or_else(|| {
                anyhow::anyhow!("unsupported --api-version {api_version:?}; use v1beta2 or v1beta3")
            })?;
            print!("{}", components::config::init_defaults_yaml(&version, api));
            Ok(())
        }
        ConfigCommands::Print {
            what: PrintCommands::JoinDefaults { api_version },
        } => {
            let api = components::config::ApiVersion::parse(&api_version).ok_or_else(|| {
                anyhow::anyhow!("unsupported --api-version {api_version:?}; use v1beta2 or v1beta3")
            })?;
            print!("{}", components::config::join_defaults_yaml(api));
            Ok(())
        }
    }
}
