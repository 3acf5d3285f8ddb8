//! `init phase etcd local`: the static pod manifest of a local etcd member (kubeadm:
//! app/cmd/phases/init/etcd.go).

use crate::init::control_plane::{pods, write_manifest};
use crate::init::data::InitData;
use crate::runner::Phase;
use crate::say;

/// The `etcd` phase.
pub fn phase() -> Phase<InitData> {
    Phase::group(
        "etcd",
        "Generate static Pod manifest file for local etcd",
        vec![
            Phase::new("local", "Generate the static Pod manifest file for a local, single-node local etcd instance", run)
                .flags(&["cert-dir", "config", "dry-run"]),
        ],
    )
}

fn run(d: &mut InitData) -> anyhow::Result<()> {
    let components::config::Etcd::Local(local) = &d.cfg.cluster.etcd else {
        say!(
            d.out,
            "etcd",
            "External etcd mode: Skipping the creation of a manifest for local etcd"
        );
        return Ok(());
    };
    let data_dir = d.layout.node_path(&local.data_dir);
    // The directory etcd will really use (extraArgs override the manifest's flag, both
    // validated): the one reset may clear, and only as long as it holds etcd's member/.
    let used = local.extra_args.get("data-dir").unwrap_or(&local.data_dir);
    let used = crate::node_record::node_view(&d.layout, &d.layout.node_path(used))?;
    crate::node_record::update(
        &d.fs,
        &d.layout,
        crate::node_record::NodeRecord {
            etcd_data_dirs: [used].into(),
            ..Default::default()
        },
    )?;
    // kubeadm: phases/etcd/local.go CreateLocalEtcdStaticPodManifestFile creates the data dir 0700.
    crate::node_record::create_dir(&d.fs, &d.layout, &data_dir, 0o700)?;
    let pod = pods(d)
        .into_iter()
        .find(|(name, _)| name == components::names::ETCD)
        .map(|(_, pod)| pod)
        .ok_or_else(|| anyhow::anyhow!("no etcd static pod in the component catalogue"))?;
    say!(
        d.out,
        "etcd",
        "Creating static Pod manifest for local etcd in {:?}",
        d.layout.manifests_dir().display().to_string()
    );
    write_manifest(d, components::names::ETCD, &pod)
}
