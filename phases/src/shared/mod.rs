//! Phases shared by `init` and `join --control-plane`, generic over small data traits, and
//! the pieces of them `join` calls (`download_certs`).

pub mod admin;
pub mod certs;
pub mod download_certs;
pub mod kubelet_store;
pub mod node;
