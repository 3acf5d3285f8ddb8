//! `init phase upload-config` (kubeadm: app/cmd/phases/init/). Being written; a group with no
//! sub-phases runs nothing.

use crate::init::data::InitData;
use crate::runner::Phase;

/// The `upload-config` phase.
pub fn phase() -> Phase<InitData> {
    Phase::group(
        "upload-config",
        "Upload the kubeadm and kubelet configuration to a ConfigMap",
        vec![],
    )
}
