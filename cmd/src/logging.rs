//! Logs (stderr) as `tracing` events: `-v/--v N` picks the level (0 warn, 1-2 info, 3-4 debug,
//! 5+ trace); `KUBEBOOT_LOG` takes filter directives and wins over `--v`.

use tracing_subscriber::EnvFilter;

/// The filter directive for a kubeadm-style verbosity.
pub fn level_for(verbosity: u8) -> &'static str {
    match verbosity {
        0 => "warn",
        1 | 2 => "info",
        3 | 4 => "debug",
        _ => "trace",
    }
}

/// Installs the stderr subscriber.
pub fn init(verbosity: u8) {
    // kube's client logs every failed connection attempt at error level; the waits that
    // retry them say what they wait for, so below debug its own lines are noise.
    let directives = match verbosity {
        0..=2 => format!("{},kube_client=off", level_for(verbosity)),
        _ => level_for(verbosity).to_string(),
    };
    let filter =
        EnvFilter::try_from_env("KUBEBOOT_LOG").unwrap_or_else(|_| EnvFilter::new(directives));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn verbosity_levels() {
        assert_eq!(super::level_for(0), "warn");
        assert_eq!(super::level_for(2), "info");
        assert_eq!(super::level_for(4), "debug");
        assert_eq!(super::level_for(9), "trace");
    }
}
