//! Scenario: `kubeboot init` on one node (owned by the lead; placeholder until written).
//!
//! The harness offers what it needs: `Node::allocate`, `node.kubeboot(&["init", ...])`,
//! `node.kubectl(&["get", "--raw", "/livez"])`, `wait_until`, `node.pids_named(..)` +
//! `node.kill9(pid)`, `node.agent_status_json()`, `node.kubeboot(&["reset", "-f"])`.
