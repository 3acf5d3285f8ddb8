//! phases
