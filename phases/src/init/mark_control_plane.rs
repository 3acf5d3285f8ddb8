//! `init phase mark-control-plane` (kubeadm: app/cmd/phases/init/). Being written; a group with no
//! sub-phases runs nothing.

use crate::init::data::InitData;
use crate::runner::Phase;

/// The `mark-control-plane` phase.
pub fn phase() -> Phase<InitData> {
    Phase::group(
        "mark-control-plane",
        "Mark a node as a control-plane",
        vec![],
    )
}
