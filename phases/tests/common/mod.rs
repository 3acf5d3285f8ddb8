//! What the phases' integration tests share: init run data for a node rooted in a temporary
//! directory, etcd with a kube-apiserver on loopback (`apiserver`), and etcd clusters on
//! loopback (`etcd`).
#![allow(dead_code)]

pub mod apiserver;
pub mod etcd;

use std::path::Path;
use std::time::SystemTime;

use components::config::{HostFacts, InitFlags, resolve_init};
use phases::init::InitData;

/// Init run data for node1 at 10.123.0.2 (v1.20.2), its layout rooted in `root`.
pub fn data(root: &Path) -> InitData {
    let mut d = data_from(
        root,
        InitFlags {
            apiserver_advertise_address: Some("10.123.0.2".into()),
            kubernetes_version: Some("v1.20.2".into()),
            node_name: Some("node1".into()),
            pod_network_cidr: Some("10.244.0.0/16".into()),
            ..Default::default()
        },
    );
    d.cfg.cluster.certificates_dir = "/etc/kubernetes/pki".into();
    d
}

/// Init run data for `flags` on a host named node1, its layout rooted in `root`.
pub fn data_from(root: &Path, flags: InitFlags) -> InitData {
    let host = HostFacts {
        hostname: "node1".into(),
        default_address: None,
        local_addresses: vec![],
        detected_version: None,
    };
    let cfg = resolve_init(&flags, &host).expect("valid config");
    let node = phases::shared::node::NodeCtx::under(root, SystemTime::now());
    InitData {
        cfg,
        host_paths: manifests::HostPaths::detect(&node.layout, |_| false),
        node,
        api: None,
        skip_token_print: false,
        upload_certs: false,
        skip_certificate_key_print: false,
        resumed: None,
    }
}
