//! The phase runner and the command phase trees of kubeboot (`init`, `reset`; `join` and
//! `upgrade` later): the only place that sequences side effects on a node.
//!
//! A command is a tree of [`runner::Phase`]s over typed run data; each phase observes the node,
//! decides with the pure crates (`pki`, `manifests`, `components`), acts through
//! `agent::host` and says what it did through [`out::Out`] in kubeadm's `[phase] message`
//! style.
//!
//! Modules:
//! - [`runner`]: phases as data, pure selection (`plan`), execution.
//! - [`out`]: user output (`say!`).
//! - [`cluster`]: the Kubernetes API behind blocking calls, and the dry-run recorder.
//! - [`preflight`]: checks with kubeadm's names and `--ignore-preflight-errors`.
//! - [`health`]: static pod health from their probes, bounded waits.
//! - [`init`]: the `init` tree; [`shared`]: phases `join --control-plane` will share.
//! - [`reset`]: `kubeboot reset`; [`node_record`]: what init created, the list reset
//!   deletes from.
//! - [`token`]: bootstrap tokens on the cluster (`init`'s and `kubeboot token`'s).
//! - [`discovery`]: `join`'s discovery of the cluster (token or file), before any trust.
//! - [`dryrun`]: what `--dry-run` prints.
//! - [`agent_view`]: the agent's status, as phases quote it.
//! - [`dns_image`]: the kubeboot-dns image, built from the running executable.
//! - [`upgrade`]: `upgrade plan` and `upgrade diff` (observe, the pure plan, rollback rules).
//! - [`certs`]: `certs check-expiration`, `certs renew`, `kubeconfig user`.
//! - [`etcd_members`]: an etcd client (JSON gateway) and member join; [`etcd_local`]: this
//!   node's etcd from its manifest; [`etcd_snapshot`]: snapshot save and restore.

pub mod agent_view;
pub mod certs;
pub mod cluster;
pub mod discovery;
pub mod dns_image;
pub mod dryrun;
pub mod etcd_local;
pub mod etcd_members;
pub mod etcd_snapshot;
pub mod health;
pub mod host;
pub mod images;
pub mod init;
pub mod join;
pub mod node_record;
pub mod out;
pub mod preflight;
pub mod reset;
pub mod runner;
pub mod shared;
pub mod token;
pub mod upgrade;
