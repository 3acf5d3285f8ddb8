//! End-to-end test harness for kubeboot.
//!
//! Test nodes are network + mount + UTS namespaces on this machine, created and destroyed by
//! `scripts/node.sh` (the same script the README quickstart uses). A [`Node`] runs commands
//! inside its namespaces with `nsenter`; every command and every wait is bounded.
//!
//! What the harness needs from the machine (all provided by `scripts/setup.sh`):
//! - root (network namespaces, mounts);
//! - `KUBEBOOT_BIN_DIR`: the directory with the v1.20.2 Kubernetes binaries and etcd;
//! - the kubeboot binary under test, see [`env::kubeboot_exe`].
//!
//! Network rule: tests only ever contact loopback and addresses inside the nodes they
//! created. Nodes hang off a bridge in the `kb-hub` namespace, which has no uplink.

pub mod cluster;
pub mod env;
pub mod kubeadm;
pub mod node;
pub mod refused;
pub mod run;
pub mod wait;

pub use env::{bin_dir, kubeboot_exe, next_bin_dirs, repo_root, require_bins, require_root};
pub use node::{Node, NodeProcess};
pub use refused::{
    NODE_STATE, assert_refused, assert_upgrade_refused, scratch_bin_dirs, upgrade_state,
};
pub use run::{CmdOutput, run_bounded};
pub use wait::{mark_failed, step, wait_until};
