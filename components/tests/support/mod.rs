//! Shared inputs of the property tests.

pub mod configs;
pub mod mutate;
