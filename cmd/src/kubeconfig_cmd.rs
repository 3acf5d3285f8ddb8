//! `kubeboot kubeconfig user` (kubeadm 1.20: `kubeadm alpha kubeconfig user`,
//! cmd/alpha/kubeconfig.go): prints a kubeconfig file for an additional user.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use phases::certs::CertsCtx;
use phases::certs::user::UserRequest;
use phases::out::Out;

/// `kubeboot kubeconfig`: kubeconfig file utilities.
#[derive(Args, Debug, Clone)]
pub struct KubeconfigArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: KubeconfigCommands,
}

/// `kubeboot kubeconfig` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum KubeconfigCommands {
    /// Output a kubeconfig file for an additional user
    ///
    /// The user gets a client certificate signed by the cluster CA of this node, with the
    /// given name (CN) and groups (O). Example:
    ///   kubeboot kubeconfig user --client-name=alice --org=team --validity-period=24h
    User(UserArgs),
}

/// `kubeboot kubeconfig user`.
#[derive(Args, Debug, Clone)]
pub struct UserArgs {
    /// The name of user. It will be used as the CN if client certificates are created
    // Checked in `user`, not by clap: kubeadm's message and exit code 1 (cobra's required
    // flag), where clap's usage error exits 2.
    #[arg(long, value_name = "string")]
    pub client_name: Option<String>,
    /// The organizations of the client certificate. It will be used as the O if client certificates are created
    #[arg(long = "org", value_name = "strings", value_delimiter = ',')]
    pub orgs: Vec<String>,
    /// The validity period of the client certificate, a duration such as 24h or 8760h0m0s (default: the cluster's certificateValidityPeriod, one year)
    #[arg(long, value_name = "duration")]
    pub validity_period: Option<String>,
    /// Path to a kubeadm configuration file (the server and cluster name come from it; without it, from admin.conf).
    #[arg(long, value_name = "string")]
    pub config: Option<PathBuf>,
    /// The path where the certificates are stored (default "/etc/kubernetes/pki")
    #[arg(long, value_name = "string")]
    pub cert_dir: Option<String>,
}

/// Runs `kubeboot kubeconfig ...`.
pub fn run(args: KubeconfigArgs) -> anyhow::Result<()> {
    match args.command {
        KubeconfigCommands::User(a) => user(&Out::stdout(), &a),
    }
}

fn user(out: &Out, a: &UserArgs) -> anyhow::Result<()> {
    let client_name = match a.client_name.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => anyhow::bail!(
            "required flag(s) \"client-name\" not set: pass --client-name <name>, the user's name (the certificate's CN), e.g. kubeboot kubeconfig user --client-name alice --org team"
        ),
    };
    let layout = components::Layout::host();
    let fs = agent::host::fs::Fs::real();
    let (cluster, server, cluster_name) = match &a.config {
        Some(path) => {
            let cfg = phases::certs::init_config_from_file(&fs, path)?;
            let ep = cfg.local_api_endpoint;
            let server = pki::server_url(
                cfg.cluster.control_plane_endpoint.as_deref(),
                ep.advertise_address,
                ep.bind_port,
            )?;
            let name = cfg.cluster.cluster_name.clone();
            (cfg.cluster, server, name)
        }
        None => {
            let admin = layout.kubeconfig(components::names::ADMIN_KUBECONFIG);
            let shown = admin.display().to_string();
            let yaml = fs.read_string_if_exists(&admin)?.with_context(|| {
                format!("no --config was given and {shown:?} does not exist to take the API server from; pass --config")
            })?;
            let kc = pki::Kubeconfig::from_yaml(&yaml)
                .with_context(|| format!("could not read {shown:?}"))?;
            let cluster = kc
                .current_cluster()
                .with_context(|| format!("{shown:?} has no current cluster"))?;
            let (server, name) = (cluster.cluster.server.clone(), cluster.name.clone());
            (phases::certs::default_init_config()?.cluster, server, name)
        }
    };
    let validity = match &a.validity_period {
        None => cluster.certificate_validity,
        Some(text) => match components::config::duration::parse_go_duration(text) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => anyhow::bail!("--validity-period {text:?} must be longer than 0s"),
            Err(e) => anyhow::bail!(
                "--validity-period {text:?} is not a duration such as \"24h\" or \"8760h0m0s\" ({e})"
            ),
        },
    };
    let ctx = CertsCtx {
        layout,
        fs,
        out: out.clone(),
        cluster,
        cert_dir_flag: a.cert_dir.clone(),
        now: std::time::SystemTime::now(),
    };
    let kubeconfig = phases::certs::user::user_kubeconfig(
        &ctx,
        &UserRequest {
            client_name,
            organizations: a.orgs.clone(),
            validity,
            server,
            cluster_name,
        },
    )?;
    for line in kubeconfig.to_yaml().lines() {
        out.line(line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Commands};

    #[test]
    fn client_name_is_required_before_anything_is_read() {
        for given in [None, Some(""), Some("  ")] {
            let a = UserArgs {
                client_name: given.map(str::to_string),
                orgs: vec!["team".into()],
                validity_period: None,
                config: Some("/nonexistent/kubeboot.yaml".into()),
                cert_dir: Some("/nonexistent/pki".into()),
            };
            let out = Out::capture();
            let err = user(&out, &a).expect_err("no --client-name");
            assert!(
                err.to_string().starts_with(
                    "required flag(s) \"client-name\" not set: pass --client-name <name>"
                ),
                "{err}"
            );
            assert!(out.captured().is_empty());
        }
        let ok = Cli::try_parse_from([
            "kubeboot",
            "kubeconfig",
            "user",
            "--client-name",
            "alice",
            "--org",
            "team",
            "--validity-period",
            "24h",
        ])
        .expect("parses");
        assert!(matches!(ok.command, Commands::Kubeconfig(_)));
    }
}
