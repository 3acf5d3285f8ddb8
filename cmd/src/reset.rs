//! `kubeboot reset` (kubeadm: cmd/reset.go): asks for confirmation on a terminal, requires
//! `-f` without one, then runs the reset phases.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use crate::cli::ResetArgs;

/// Runs `reset`.
pub fn run(args: ResetArgs) -> anyhow::Result<()> {
    let out = phases::out::Out::stdout();
    if !args.force && !args.dry_run {
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
    };
    phases::reset::run(&mut data, &args.skip_phases)
}
