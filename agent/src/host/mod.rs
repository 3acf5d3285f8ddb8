//! The side-effect primitives shared by the agent and the phases: files, processes, network
//! namespaces, and which executables may run as root.
pub mod fs;
pub mod netns;
pub mod process;
pub mod trust;
