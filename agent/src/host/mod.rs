//! The side-effect primitives shared by the agent and the phases: files, processes, network
//! namespaces.
pub mod fs;
pub mod netns;
pub mod process;
