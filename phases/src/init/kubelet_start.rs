//! `init phase kubelet-start` (kubeadm: app/cmd/phases/init/). Being written; a group with no
//! sub-phases runs nothing.

use crate::init::data::InitData;
use crate::runner::Phase;

/// The `kubelet-start` phase.
pub fn phase() -> Phase<InitData> {
    Phase::group(
        "kubelet-start",
        "Write kubelet settings and (re)start the kubelet",
        vec![],
    )
}
