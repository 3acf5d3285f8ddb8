//! The side-effect primitives shared by the agent and the phases: files, processes, network
//! namespaces, which executables may run as root, and the agent's timers.
pub mod fs;
pub mod netns;
pub mod process;
pub mod timer;
pub mod trust;
