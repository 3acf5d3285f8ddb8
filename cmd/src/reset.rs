//! `kubeboot reset` and `kubeboot reset phase ...` (kubeadm: cmd/reset.go): asks for
//! confirmation on a terminal when the preflight phase runs (as kubeadm's preflight does),
//! requires `-f` without one, then runs the reset phases.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use clap::FromArgMatches;

use crate::cli::{self, ResetArgs};

/// Runs `reset`, or one phase of it when the user typed `reset phase ...`.
pub fn run(args: ResetArgs, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let root = cli::command();
    let reset_cmd = root.find_subcommand("reset").expect("reset exists");
    match matches.subcommand() {
        Some(("phase", phase_matches)) => {
            let (path, leaf_cmd, leaf) = crate::init::phase_path(
                reset_cmd.find_subcommand("phase").expect("phase exists"),
                phase_matches,
            );
            cli::refuse_foreign_flags(leaf_cmd, leaf)?;
            let args = ResetArgs::from_arg_matches(leaf)?;
            execute(args, &[path])
        }
        _ => execute(args, &[]),
    }
}

fn execute(args: ResetArgs, only: &[String]) -> anyhow::Result<()> {
    let out = phases::out::Out::stdout();
    let prompts = only.is_empty() || only.iter().any(|p| p == "preflight");
    if prompts && !args.force && !args.dry_run {
        out.say("reset", "WARNING: Changes made to this host by 'kubeboot init' or 'kubeboot join' will be reverted.");
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "kubeboot reset needs confirmation, but there is no terminal to ask on; run \"kubeboot reset -f\" to reset without prompting"
            );
        }
        print!("[reset] Are you sure you want to proceed? [y/N]: ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim().to_lowercase().as_str(), "y" | "yes") {
            anyhow::bail!("aborted reset operation");
        }
    }
    let mut data = phases::reset::ResetData {
        layout: components::Layout::host(),
        fs: agent::host::fs::Fs::real(),
        out,
        dry_run: args.dry_run,
        cert_dir: args.cert_dir,
        grace: Duration::from_secs(30),
        leave: phases::reset::LeaveFlags {
            delete_node: args.delete_node,
            kubeconfig: args.kubeconfig,
            force_remove_last_etcd_member: args.force_remove_last_etcd_member,
        },
        state: Default::default(),
    };
    phases::reset::run_phases(&mut data, only, &args.skip_phases)
}

#[cfg(test)]
mod tests {
    use crate::cli;

    #[test]
    fn reset_phases_are_kubeadms_in_order_with_their_flags() {
        let root = cli::command();
        let phase = root
            .find_subcommand("reset")
            .and_then(|r| r.find_subcommand("phase"))
            .expect("reset phase");
        let names: Vec<&str> = phase.get_subcommands().map(|c| c.get_name()).collect();
        assert_eq!(
            names,
            [
                "preflight",
                "update-cluster-status",
                "remove-etcd-member",
                "cleanup-node"
            ]
        );
        let m = cli::command()
            .try_get_matches_from([
                "kubeboot",
                "reset",
                "phase",
                "remove-etcd-member",
                "--force-remove-last-etcd-member",
            ])
            .expect("remove-etcd-member takes the flag");
        let (_, reset) = m.subcommand().expect("reset");
        let (_, phase) = reset.subcommand().expect("phase");
        let (name, leaf) = phase.subcommand().expect("leaf");
        assert_eq!(name, "remove-etcd-member");
        let leaf_cmd = cli::command();
        let leaf_cmd = leaf_cmd
            .find_subcommand("reset")
            .and_then(|r| r.find_subcommand("phase"))
            .and_then(|p| p.find_subcommand("remove-etcd-member"))
            .expect("leaf command");
        assert!(cli::refuse_foreign_flags(leaf_cmd, leaf).is_ok());
        // A flag of another phase is refused, as cobra does.
        let m = cli::command()
            .try_get_matches_from([
                "kubeboot",
                "reset",
                "phase",
                "update-cluster-status",
                "--cert-dir",
                "/x",
            ])
            .expect("parses (hidden)");
        let (_, reset) = m.subcommand().expect("reset");
        let (_, phase) = reset.subcommand().expect("phase");
        let (_, leaf) = phase.subcommand().expect("leaf");
        let root = cli::command();
        let leaf_cmd = root
            .find_subcommand("reset")
            .and_then(|r| r.find_subcommand("phase"))
            .and_then(|p| p.find_subcommand("update-cluster-status"))
            .expect("leaf command");
        let err = cli::refuse_foreign_flags(leaf_cmd, leaf).unwrap_err();
        assert_eq!(err.to_string(), "unknown flag: --cert-dir");
    }
}
