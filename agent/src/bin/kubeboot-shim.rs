//! The shim entry alone, for the agent's integration tests (the real binary reaches it as
//! `kubeboot agent shim`).
fn main() -> std::process::ExitCode {
    agent::shim_main(std::env::args().skip(1).collect())
}
