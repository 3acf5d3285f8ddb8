//! `certs renew all|<name>`: re-issues certificates from the same CA on the node, keeping
//! their subject and SANs, with new keys, and writes them atomically (keys 0600) (kubeadm:
//! app/cmd/alpha/certs.go renewCert over renewal.Manager.RenewUsingLocalCA).

use agent::host::fs::Fs;
use anyhow::Context;
use pki::Issuer;
use pki::expiry::{RenewTarget, Source};

use super::CertsCtx;
use super::expiration::{read_target_cert, target_files};
use crate::shared::certs::cert_files;

/// What `certs renew` accepts: `all` or one name of [`pki::expiry::renew_targets`].
///
/// # Errors
/// An unknown name, listing the valid ones.
pub fn select(local_etcd: bool, name: &str) -> anyhow::Result<Vec<RenewTarget>> {
    let targets = pki::expiry::renew_targets(local_etcd);
    if name == "all" {
        return Ok(targets);
    }
    if let Some(t) = targets.iter().find(|t| t.name == name) {
        return Ok(vec![*t]);
    }
    let valid: Vec<&str> = std::iter::once("all")
        .chain(targets.iter().map(|t| t.name))
        .collect();
    anyhow::bail!(
        "unknown certificate {name:?}: kubeboot can renew {}; nothing was renewed",
        valid.join(", ")
    )
}

/// What happened to one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Renewed and written.
    Renewed,
    /// Its file is not there (kubeadm: `MISSING! <long name>`).
    Missing,
    /// Its CA key is not on the node (kubeadm: `Detected external <CA>, ... can't be renewed`).
    ExternalCa,
}

/// Renews `targets` on the node, writing through `write` (`Fs::under(scratch)` for
/// `--dry-run`), and says what it did in kubeadm's words. A kubeboot-own certificate that is
/// not there is skipped silently unless it was asked for by name (`explicit`).
///
/// # Errors
/// A file cannot be read or written, a certificate does not parse or was not signed by the
/// CA on the node. Certificates renewed before the error stay renewed (each is a complete
/// pair); running the command again finishes the rest.
pub fn renew(
    ctx: &CertsCtx,
    targets: &[RenewTarget],
    explicit: bool,
    write: &Fs,
) -> anyhow::Result<Vec<(RenewTarget, Renewal)>> {
    let mut done = Vec::new();
    for t in targets {
        let outcome = renew_one(ctx, t, write)?;
        match outcome {
            Renewal::Missing if t.kubeboot_own && !explicit => continue,
            Renewal::Missing => ctx.out.line(&format!("MISSING! {}", t.long_name)),
            Renewal::ExternalCa => ctx.out.line(&format!(
                "Detected external {}, {} can't be renewed",
                t.ca.base_name, t.long_name
            )),
            Renewal::Renewed => ctx.out.line(&format!("{} renewed", t.long_name)),
        }
        done.push((*t, outcome));
    }
    Ok(done)
}

/// Who restarts the components after a renewal on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restarts {
    /// The kubelet runs the static pods (`--static-pod-runner kubelet`): the user restarts
    /// them, as with kubeadm.
    ByUser,
    /// The kubeboot agent runs them and restarts these (their static pods' names), which use
    /// a renewed file ([`agent::reload`]); empty when none does.
    ByAgent(Vec<String>),
}

/// Which components restart because of `done` (the files of the certificates renewed):
/// under the agent runner, the static pods of the manifest directory whose containers name a
/// renewed file, as the agent finds them ([`agent::reload::users_of`]).
pub fn restarts(ctx: &CertsCtx, done: &[(RenewTarget, Renewal)]) -> anyhow::Result<Restarts> {
    // Observe: the runner this node was set up with, the renewed files, the manifests.
    let runner = crate::host::static_pod_runner(None, &ctx.layout)?;
    if runner == components::StaticPodRunner::Kubelet {
        return Ok(Restarts::ByUser);
    }
    let files: Vec<std::path::PathBuf> = done
        .iter()
        .filter(|(_, r)| *r == Renewal::Renewed)
        .flat_map(|(t, _)| {
            let (path, key) = target_files(ctx, t);
            std::iter::once(path).chain(key)
        })
        .collect();
    let manifests = ctx.layout.manifests_dir();
    let pods = static_pods(ctx, &manifests)?;
    // Decide.
    let mut names: Vec<String> =
        agent::reload::users_of(&pods, &files, &ctx.layout.kubernetes_dir(), &manifests)
            .into_iter()
            .map(|(pod, _, _)| pod)
            .collect();
    names.sort();
    names.dedup();
    Ok(Restarts::ByAgent(names))
}

/// The static pods of the manifest directory as the agent reads them; a manifest it cannot
/// read runs nothing, so it restarts nothing.
fn static_pods(
    ctx: &CertsCtx,
    dir: &std::path::Path,
) -> anyhow::Result<Vec<agent::pod::spec::StaticPod>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("could not list {:?}", dir.display().to_string()));
        }
    };
    let mut pods = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if !agent::pod::spec::is_manifest_file(&name.to_string_lossy()) {
            continue;
        }
        let Ok(Some(bytes)) = ctx
            .fs
            .read_regular_if_exists(&path, agent::watch::MAX_MANIFEST_SIZE)
        else {
            continue;
        };
        if let Ok(pod) = agent::pod::spec::parse_manifest(&path, &bytes, None) {
            pods.push(pod);
        }
    }
    Ok(pods)
}

fn renew_one(ctx: &CertsCtx, t: &RenewTarget, write: &Fs) -> anyhow::Result<Renewal> {
    // Observe.
    let Some(cert_pem) = read_target_cert(ctx, t)? else {
        return Ok(Renewal::Missing);
    };
    let (ca_crt, ca_key) = cert_files(&ctx.cert_dir(), t.ca.base_name);
    let shown = |p: &std::path::Path| p.display().to_string();
    let ca_cert_pem = ctx.fs.read_string_if_exists(&ca_crt)?.with_context(|| {
        format!(
            "the {} CA certificate {:?} is missing; kubeboot cannot renew {:?} without it",
            t.ca.name,
            shown(&ca_crt),
            t.name
        )
    })?;
    let Some(ca_key_pem) = ctx.fs.read_string_if_exists(&ca_key)? else {
        return Ok(Renewal::ExternalCa);
    };
    let ca = Issuer {
        cert_pem: ca_cert_pem,
        key_pem: ca_key_pem,
    };
    // Decide.
    let issued = pki::renew::renew(
        &cert_pem,
        t.name,
        &ca,
        t.ca.name,
        ctx.cluster.encryption_algorithm,
        ctx.cluster.certificate_validity,
        ctx.now,
    )
    .with_context(|| format!("failed to renew certificate {}", t.name))?;
    // Act.
    let (path, key_path) = target_files(ctx, t);
    match t.source {
        Source::Kubeconfig(spec) => {
            let yaml = ctx
                .fs
                .read_string_if_exists(&path)?
                .with_context(|| format!("{:?} disappeared", shown(&path)))?;
            let new = pki::kubeconfig::replace_client_cert(
                spec.file_name,
                &yaml,
                &issued.cert_pem,
                &issued.key_pem,
                &ca.cert_pem,
            )?;
            write.write_private(&path, new.as_bytes())?;
        }
        Source::CertDir(_) | Source::AgentDir(_) => {
            let key_path = key_path.expect("target_files gives a PKI pair its key file");
            // The key first, as init writes them: a run killed in between is finished by
            // running renew again (it reads only the certificate).
            write.write_private(&key_path, issued.key_pem.as_bytes())?;
            write.write_public(&path, issued.cert_pem.as_bytes())?;
        }
    }
    Ok(Renewal::Renewed)
}
