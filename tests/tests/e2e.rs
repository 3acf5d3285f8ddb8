//! End-to-end scenarios: real nodes (network + mount + UTS namespaces, see
//! `scripts/node.sh`) running kubeboot and the real Kubernetes v1.20.2 binaries.
//!
//! Every scenario is `#[ignore]`d (it needs root and `scripts/setup.sh`); run them with
//! `scripts/test.sh`, or after setup:
//!
//! ```text
//! set -a; . /var/lib/kubeboot-dev/env; set +a
//! cargo build -p kubeboot && cargo test -p tests --test e2e -- --include-ignored
//! ```
//!
//! One module per scenario; scenarios use `tests::step` for named steps and
//! `tests::Node::allocate` for nodes that never collide with parallel tests.

#[path = "e2e/addons.rs"]
mod addons;
#[path = "e2e/agent_privilege.rs"]
mod agent_privilege;
#[path = "e2e/binary_trust.rs"]
mod binary_trust;
#[path = "e2e/cluster_objects.rs"]
mod cluster_objects;
#[path = "e2e/cluster_workloads.rs"]
mod cluster_workloads;
#[path = "e2e/crash_safety.rs"]
mod crash_safety;
#[path = "e2e/harness_node_isolation.rs"]
mod harness_node_isolation;
#[path = "e2e/init_bad_input.rs"]
mod init_bad_input;
#[path = "e2e/init_single_node.rs"]
mod init_single_node;
#[path = "e2e/join_cluster.rs"]
mod join_cluster;
#[path = "e2e/join_interop.rs"]
mod join_interop;
#[path = "e2e/mirror_pods.rs"]
mod mirror_pods;
#[path = "e2e/reset_safety.rs"]
mod reset_safety;
#[path = "e2e/route_safety.rs"]
mod route_safety;
#[path = "e2e/upgrade_multi.rs"]
mod upgrade_multi;
#[path = "e2e/upgrade_single_node.rs"]
mod upgrade_single_node;
