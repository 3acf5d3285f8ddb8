//! Static pods: manifests read as pods, the container lifecycle, restart backoff, the
//! executor that performs the lifecycle's actions, and the network of pods without
//! hostNetwork.
pub mod backoff;
pub(crate) mod executor;
pub mod lifecycle;
pub mod network;
pub mod spec;
