//! Static pods: manifests read as pods, the container lifecycle, restart backoff, and the
//! executor that performs the lifecycle's actions.
pub mod backoff;
pub(crate) mod executor;
pub mod lifecycle;
pub mod spec;
