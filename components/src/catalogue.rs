//! The system components per Kubernetes version: images, binaries, ports, health endpoints and
//! version-gated flags.
