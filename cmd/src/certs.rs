//! `kubeboot certs` (kubeadm 1.20: `kubeadm certs`, cmd/alpha/certs.go): commands related to
//! the cluster's certificates. Today `certificate-key`; `check-expiration` and `renew` belong
//! here too.

use clap::{Args, Subcommand};
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
}
