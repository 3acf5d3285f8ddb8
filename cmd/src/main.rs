//! `kubeboot`: turns plain Linux machines into a Kubernetes cluster, the way kubeadm does,
//! with its own node agent. This crate is thin: clap definitions, building each command's
//! data, printing and exit codes. The work happens in `phases` and `agent`.

mod agent_cmd;
mod certs;
mod cli;
mod config_cmd;
mod dns;
mod etcd;
mod init;
mod join;
mod kubeconfig_cmd;
mod logging;
mod node;
mod reset;
mod token;
mod upgrade;
mod version;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::FromArgMatches;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // The shim runs under every pod container for as long as it runs: it starts without
    // building the command line (whose allocations and code would stay in each shim's
    // memory), and keeps stderr for itself.
    if let Some(shim_args) = cli::shim_args(&args) {
        return agent::shim_main(shim_args);
    }
    let matches = cli::command_for(&args).get_matches_from(&args);
    let verbosity = matches.get_one::<u8>("v").copied().unwrap_or(0);
    // A shim whose arguments are not all UTF-8 is refused by ShimArgs::parse, as before.
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
        cli::Commands::Dns(args) => dns::run(args),
        cli::Commands::Upgrade(args) => upgrade::run(args),
        cli::Commands::Kubeconfig(args) => kubeconfig_cmd::run(args),
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
