//! A command refused: exit code 1, stderr naming the problem and the fix, and the node left
//! as it was (shared by the scenarios that feed `init` bad input or untrusted binaries).

use anyhow::{Result, ensure};

use crate::node::Node;
use crate::run::CmdOutput;

/// What a node that `init` has not touched holds: nothing under these (the agent's pid file
/// and state included). Run it with [`Node::sh_ok`] before and after.
pub const NODE_STATE: &str =
    "find /etc/kubernetes /var/lib/etcd /var/lib/kubeboot /run/kubeboot -mindepth 1 2>/dev/null";

/// Fails unless `out` exited with 1, its stderr holds every one of `wants`, and
/// [`NODE_STATE`] on `node` is still `state_before`.
pub fn assert_refused(
    node: &Node,
    what: &str,
    out: &CmdOutput,
    wants: &[&str],
    state_before: &str,
) -> Result<()> {
    ensure!(
        out.code == Some(1),
        "{what}: exit code {:?}, want 1:\n{out}",
        out.code
    );
    for want in wants {
        ensure!(
            out.stderr.contains(want),
            "{what}: stderr lacks {want:?}:\n{out}"
        );
    }
    let state = node.sh_ok(NODE_STATE)?;
    ensure!(
        state == state_before,
        "{what}: the node changed:\nbefore:\n{state_before}\nafter:\n{state}"
    );
    Ok(())
}
