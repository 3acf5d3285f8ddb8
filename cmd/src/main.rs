//! `kubeboot`: turns plain Linux machines into a Kubernetes cluster, the way kubeadm does,
//! with its own node agent. This crate is thin: clap definitions, building each command's
//! data, printing and exit codes. The work happens in `phases` and `agent`.

mod agent_cmd;
mod certs;
mod cli;
mod config_cmd;
mod etcd;
mod init;
mod join;
mod logging;
mod node;
mod reset;
mod token;
mod version;

use std::process::ExitCode;

use clap::FromArgMatches;

fn main() -> ExitCode {
    let matches = cli::command().get_matches();
    let verbosity = matches.get_one::<u8>("v").copied().unwrap_or(0);
    // The shim runs under every pod container: it keeps stderr for itself.
    if let Some(("agent", sub)) = matches.subcommand()
        && let Some(("shim", shim)) = sub.subcommand()
    {
        let args: Vec<String> = shim
            .get_many::<String>("args")
            .map(|v| v.cloned().collect())
            .unwrap_or_default();
        return agent::shim_main(args);
    }
    logging::init(verbosity);
    match run(&matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            print_error(&err, verbosity);
            ExitCode::from(1)
        }
    }
}

fn run(matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let cli = cli::Cli::from_arg_matches(matches)
        .map_err(|e| e.exit())
        .unwrap_or_else(|never| never);
    match cli.command {
        cli::Commands::Init(args) => {
            let init_matches = matches
                .subcommand_matches("init")
                .expect("clap matched init");
            init::run(args, init_matches)
        }
        cli::Commands::Join(args) => {
            let join_matches = matches
                .subcommand_matches("join")
                .expect("clap matched join");
            join::run(args, join_matches)
        }
        cli::Commands::Reset(args) => {
            let reset_matches = matches
                .subcommand_matches("reset")
                .expect("clap matched reset");
            reset::run(args, reset_matches)
        }
        cli::Commands::Agent(args) => agent_cmd::run(args),
        cli::Commands::Version(args) => version::run(args),
        cli::Commands::Config(args) => config_cmd::run(args),
        cli::Commands::Token(args) => token::run(args),
        cli::Commands::Certs(args) => certs::run(args),
        cli::Commands::Etcd(args) => etcd::run(args),
        cli::Commands::Completion(args) => {
            let mut cmd = cli::command();
            clap_complete::generate(args.shell, &mut cmd, "kubeboot", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Prints an error as kubeadm does: the chain on one line, or each cause on its own line at
/// `--v=5` and higher.
fn print_error(err: &anyhow::Error, verbosity: u8) {
    let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
    if verbosity >= 5 {
        eprintln!("{}", chain[0]);
        for cause in &chain[1..] {
            eprintln!("  caused by: {cause}");
        }
    } else {
        eprintln!("{}", chain.join(": "));
        eprintln!("To see the stack trace of this error execute with --v=5 or higher");
    }
}
