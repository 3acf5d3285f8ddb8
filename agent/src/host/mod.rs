//! The side-effect primitives shared by the agent and the phases: files, processes.
pub mod fs;
pub mod process;
