//! `init phase addon` (kubeadm: app/cmd/phases/init/). Being written; a group with no
//! sub-phases runs nothing.

use crate::init::data::InitData;
use crate::runner::Phase;

/// The `addon` phase.
pub fn phase() -> Phase<InitData> {
    Phase::group(
        "addon",
        "Install required addons for passing conformance tests",
        vec![],
    )
}
