//! `init phase bootstrap-token` (kubeadm: app/cmd/phases/init/). Being written; a group with no
//! sub-phases runs nothing.

use crate::init::data::InitData;
use crate::runner::Phase;

/// The `bootstrap-token` phase.
pub fn phase() -> Phase<InitData> {
    Phase::group(
        "bootstrap-token",
        "Generates bootstrap tokens used to join a node to a cluster",
        vec![],
    )
}
