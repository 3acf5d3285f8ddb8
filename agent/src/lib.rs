//! kubeboot's node agent.
pub mod host;
