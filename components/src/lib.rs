//! Facts about Kubernetes and kubeadm that every other kubeboot crate shares: versions, the
//! component catalogue (images, binaries, ports, health endpoints, version-gated flags), the
//! kubeadm configuration API (`v1beta2`, `v1beta3`) and its internal form, the node's file
//! [`Layout`] and the well-known names kubeadm uses.
//!
//! This crate is pure: it never touches the filesystem, the network, processes, the
//! environment or the clock. Everything here is a table or a function of its inputs.
//!
//! Modules:
//! - [`version`]: Kubernetes and etcd versions, parsing and ordering.
//! - [`names`]: file names, labels, annotations and object names, each naming the kubeadm
//!   constant it mirrors.
//! - [`layout`]: where every file of a node lives, derived from one root.
//! - [`catalogue`]: the system components per Kubernetes version.
//! - [`image`]: image reference parsing and the image -> host binary mapping the agent uses.
//! - [`config`]: the kubeadm configuration API and kubeboot's internal configuration.
//! - [`runner`]: who runs a node's static pods (`--static-pod-runner`).
//! - [`pod_cidr`]: the podCIDRs kube-controller-manager's range allocator gives a new Node, and
//!   whether its node IPAM runs at all.
//! - [`upgrade`]: the upgrade version skew policy and the etcd an upgrade moves to.
#![warn(missing_docs)]

pub mod catalogue;
pub mod config;
pub mod image;
pub mod layout;
pub mod names;
pub mod pod_cidr;
pub mod runner;
pub mod upgrade;
pub mod version;

pub use layout::Layout;
pub use runner::StaticPodRunner;
pub use version::Version;
