//! Temporary: runs the agent (and the shim) from one binary to measure idle RSS.
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("shim") {
        return agent::shim_main(args[2..].to_vec());
    }
    let layout = components::Layout::under(&args[1]);
    let mut cfg = agent::AgentConfig::from_layout(&layout, vec![std::path::PathBuf::from(&args[2])]);
    cfg.shim_args_prefix = vec!["shim".into()];
    agent::run(cfg).map(|_| std::process::ExitCode::SUCCESS).unwrap_or(std::process::ExitCode::FAILURE)
}
