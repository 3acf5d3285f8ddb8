//! `kubeboot certs` (kubeadm 1.20: `kubeadm certs`, cmd/alpha/certs.go): commands related to
//! the cluster's certificates: `certificate-key`, `check-expiration` and `renew`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use phases::certs::CertsCtx;
use phases::out::Out;

/// `kubeboot certs`: commands related to handling kubernetes certificates.
#[derive(Args, Debug, Clone)]
pub struct CertsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CertsCommands,
}

/// `kubeboot certs` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum CertsCommands {
    /// Generate certificate keys
    ///
    /// This command will print out a secure randomly-generated certificate key that can be
    /// used with the "init" command.
    ///
    /// You can also use "kubeboot init --upload-certs" without specifying a certificate key
    /// and it will generate and print one for you.
    CertificateKey,
    /// Check certificates expiration for a Kubernetes cluster
    ///
    /// Checks expiration for the certificates in the local PKI managed by kubeboot (and
    /// kubeadm): the certificates, the client certificates embedded in the kubeconfig files,
    /// and the certificate authorities.
    CheckExpiration(ExpirationArgs),
    /// Renew certificates for a Kubernetes cluster
    ///
    /// Renew "all" or one certificate: apiserver, apiserver-kubelet-client,
    /// apiserver-etcd-client, front-proxy-client, etcd-server, etcd-peer,
    /// etcd-healthcheck-client, admin.conf, controller-manager.conf, scheduler.conf, and
    /// kubeboot's own kubeboot-agent-webhook and kubeboot-agent.conf.
    ///
    /// Renewals run unconditionally, regardless of certificate expiration date; extra
    /// attributes such as SANs will be based on the existing file/certificates, there is no
    /// need to resupply them. Each renewed certificate gets a new private key, as kubeadm's.
    /// Renewal uses the certificate authority in the local PKI; with an external CA (no CA
    /// key on the node) nothing can be renewed.
    Renew(RenewArgs),
}

/// `kubeboot certs renew`.
#[derive(Args, Debug, Clone)]
pub struct RenewArgs {
    /// "all" or the name of one certificate.
    #[arg(value_name = "all|NAME")]
    pub name: String,
    /// Files and configuration.
    #[command(flatten)]
    pub pki: PkiFlags,
    /// Don't write anything; renew into a scratch directory and say where it is.
    #[arg(long)]
    pub dry_run: bool,
}

/// Where the certificates and the cluster's settings come from (kubeadm: addExpirationFlags,
/// addRenewFlags).
#[derive(Args, Debug, Clone, Default)]
pub struct PkiFlags {
    /// The path where to save the certificates (default: the configuration's certificatesDir, "/etc/kubernetes/pki")
    #[arg(long, value_name = "string")]
    pub cert_dir: Option<String>,
    /// Path to a kubeadm configuration file.
    #[arg(long, value_name = "string")]
    pub config: Option<PathBuf>,
    /// The kubeconfig file to use when talking to the cluster (to read its kubeadm-config when no --config is given). (default "/etc/kubernetes/admin.conf")
    #[arg(long, value_name = "string")]
    pub kubeconfig: Option<PathBuf>,
}

/// How `check-expiration` prints its report.
#[derive(ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// kubeadm's tables.
    #[default]
    Text,
    /// `output.kubeadm.k8s.io/v1alpha2` CertificateExpirationInfo as JSON.
    Json,
    /// The same as YAML.
    Yaml,
}

/// `kubeboot certs check-expiration`.
#[derive(Args, Debug, Clone)]
pub struct ExpirationArgs {
    /// Files and configuration.
    #[command(flatten)]
    pub pki: PkiFlags,
    /// Output format. One of: text|json|yaml.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// The node's PKI and the cluster's settings, for `log_prefix` (`check-expiration`, `renew`).
pub fn certs_ctx(out: Out, flags: &PkiFlags, log_prefix: &str) -> anyhow::Result<CertsCtx> {
    let layout = components::Layout::host();
    let fs = agent::host::fs::Fs::real();
    let kubeconfig = flags
        .kubeconfig
        .clone()
        .unwrap_or_else(|| layout.kubeconfig(components::names::ADMIN_KUBECONFIG));
    let cluster =
        phases::certs::cluster_config(&fs, flags.config.as_deref(), &kubeconfig, &out, log_prefix)?;
    Ok(CertsCtx {
        layout,
        fs,
        out,
        cluster,
        cert_dir_flag: flags.cert_dir.clone(),
        now: std::time::SystemTime::now(),
    })
}

/// `certs renew all|<name>`: checks the name before reading anything.
fn renew(out: &Out, args: &RenewArgs) -> anyhow::Result<()> {
    // Unknown names fail before the cluster is asked anything (with either etcd mode's list).
    phases::certs::renew::select(true, &args.name)?;
    let ctx = certs_ctx(out.clone(), &args.pki, "renew")?;
    let targets = phases::certs::renew::select(ctx.local_etcd(), &args.name)?;
    let scratch = if args.dry_run {
        Some(
            tempfile::Builder::new()
                .prefix("kubeboot-renew-")
                .tempdir()?
                .keep(),
        )
    } else {
        None
    };
    let write = match &scratch {
        Some(dir) => agent::host::fs::Fs::under(dir),
        None => ctx.fs.clone(),
    };
    let done = phases::certs::renew::renew(&ctx, &targets, args.name != "all", &write)?;
    if let Some(dir) = scratch {
        out.line(&format!(
            "[dryrun] Nothing on the node changed; the renewed files were written under {:?}",
            dir.display().to_string()
        ));
        return Ok(());
    }
    let restarts = phases::certs::renew::restarts(&ctx, &done)?;
    let agent_running = agent::is_running(&ctx.layout).is_some();
    for line in restart_message(args.name == "all", &restarts, agent_running) {
        out.line(&line);
    }
    Ok(())
}

/// What `certs renew` says about restarting the components: kubeadm's instruction after
/// `renew all` when the kubelet runs them, else which ones the agent restarts (now, or when
/// it starts: it restarts an adopted container whose files changed while it was stopped).
fn restart_message(
    all: bool,
    restarts: &phases::certs::renew::Restarts,
    agent_running: bool,
) -> Vec<String> {
    use phases::certs::renew::Restarts;
    match restarts {
        Restarts::ByUser if all => vec![
            String::new(),
            "Done renewing certificates. You must restart the kube-apiserver, kube-controller-manager, kube-scheduler and etcd, so that they can use the new certificates.".into(),
        ],
        Restarts::ByUser => Vec::new(),
        Restarts::ByAgent(names) => {
            let done = if all { "Done renewing certificates. " } else { "" };
            let what = if names.is_empty() {
                "No static Pod uses the renewed files: nothing needs a restart.".to_string()
            } else {
                let verb = if names.len() == 1 { "uses" } else { "use" };
                let when = if agent_running {
                    "within seconds"
                } else {
                    "once it runs again (it is not running now)"
                };
                format!(
                    "The kubeboot agent restarts {}, which {verb} the renewed files, {when}.",
                    names.join(", ")
                )
            };
            vec![String::new(), format!("{done}{what}")]
        }
    }
}

/// Prints the expiry report in `format`.
pub fn print_expiration(
    out: &Out,
    info: &pki::expiry::ExpirationInfo,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let text = match format {
        OutputFormat::Text => pki::expiry::table(info),
        OutputFormat::Json => serde_json::to_string_pretty(info)? + "\n",
        OutputFormat::Yaml => yaml_serde::to_string(info)?,
    };
    for line in text.lines() {
        out.line(line);
    }
    Ok(())
}

/// Runs `kubeboot certs ...`.
pub fn run(args: CertsArgs) -> anyhow::Result<()> {
    run_to(&Out::stdout(), args)
}

fn run_to(out: &Out, args: CertsArgs) -> anyhow::Result<()> {
    match args.command {
        CertsCommands::CertificateKey => {
            out.line(&phases::init::upload_certs::new_certificate_key())
        }
        CertsCommands::CheckExpiration(args) => {
            let ctx = certs_ctx(out.clone(), &args.pki, "check-expiration")?;
            let info = phases::certs::expiration::check_expiration(&ctx)?;
            print_expiration(out, &info, args.output)?;
        }
        CertsCommands::Renew(args) => renew(out, &args)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Commands};

    #[test]
    fn certificate_key_prints_a_fresh_key_that_init_accepts() {
        let parse = || match Cli::try_parse_from(["kubeboot", "certs", "certificate-key"])
            .expect("parses")
            .command
        {
            Commands::Certs(c) => c,
            other => panic!("{other:?}"),
        };
        let out = Out::capture();
        run_to(&out, parse()).expect("prints");
        run_to(&out, parse()).expect("prints");
        let printed = out.captured();
        let keys: Vec<&str> = printed.lines().collect();
        assert_eq!(keys.len(), 2, "{printed}");
        assert_ne!(keys[0], keys[1], "a new key each time");
        for k in keys {
            phases::init::upload_certs::check_certificate_key(k).expect("a valid certificate key");
        }
        assert!(Cli::try_parse_from(["kubeboot", "certs", "certificate-key", "x"]).is_err());
    }

    #[test]
    fn renew_says_who_restarts_the_components() {
        use phases::certs::renew::Restarts;
        let by_user = restart_message(true, &Restarts::ByUser, false);
        assert_eq!(
            by_user[1],
            "Done renewing certificates. You must restart the kube-apiserver, kube-controller-manager, kube-scheduler and etcd, so that they can use the new certificates."
        );
        assert!(restart_message(false, &Restarts::ByUser, true).is_empty());
        let stopped = restart_message(
            false,
            &Restarts::ByAgent(vec!["etcd".into(), "kube-apiserver".into()]),
            false,
        );
        assert_eq!(
            stopped[1],
            "The kubeboot agent restarts etcd, kube-apiserver, which use the renewed files, once it runs again (it is not running now)."
        );
        let agent = restart_message(
            false,
            &Restarts::ByAgent(vec!["kube-apiserver".into()]),
            true,
        );
        assert_eq!(
            agent[1],
            "The kubeboot agent restarts kube-apiserver, which uses the renewed files, within seconds."
        );
        let none = restart_message(true, &Restarts::ByAgent(vec![]), true);
        assert_eq!(
            none[1],
            "Done renewing certificates. No static Pod uses the renewed files: nothing needs a restart."
        );
    }

    #[test]
    fn check_expiration_flags_parse_as_kubeadms() {
        let parse = |args: &[&str]| {
            let mut all = vec!["kubeboot", "certs", "check-expiration"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|c| match c.command {
                Commands::Certs(CertsArgs {
                    command: CertsCommands::CheckExpiration(a),
                }) => a,
                other => panic!("{other:?}"),
            })
        };
        let a =
            parse(&["--cert-dir", "/x/pki", "--config", "c.yaml", "-o", "json"]).expect("parses");
        assert_eq!(a.pki.cert_dir.as_deref(), Some("/x/pki"));
        assert_eq!(a.output, OutputFormat::Json);
        assert_eq!(parse(&[]).expect("parses").output, OutputFormat::Text);
        assert!(parse(&["-o", "xml"]).is_err());
    }
}
