//! Phases shared by `init` and `join --control-plane`, generic over small data traits.

pub mod admin;
pub mod certs;
pub mod node;
