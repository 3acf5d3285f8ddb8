//! The API client of a control-plane node's admin.conf and, from Kubernetes 1.29, the
//! `kubeadm:cluster-admins` ClusterRoleBinding its rights rest on (kubeadm 1.29:
//! phases/kubeconfig/kubeconfig.go, EnsureAdminClusterRoleBinding and
//! EnsureAdminClusterRoleBindingImpl, called where init first builds its client).
//!
//! From 1.29 admin.conf is in the group `kubeadm:cluster-admins` instead of `system:masters`,
//! so it has no rights until the binding exists; admin.conf tries to create it first (it
//! succeeds, or finds it there, once the binding exists), and only on "forbidden" does the
//! break-glass super-admin.conf create it.

use std::path::Path;

use anyhow::Context;
use components::{Version, catalogue, names};

use crate::cluster::Cluster;

/// What admin.conf's attempt to create the binding says about the next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminBinding {
    /// Created, or there already: admin.conf has its rights.
    InPlace,
    /// Forbidden: admin.conf has no rights yet; super-admin.conf must create the binding.
    NeedsSuperAdmin,
}

/// Reads the result of admin.conf's create (`Ok(created)`, "already exists" being
/// `Ok(false)`) as kubeadm does: forbidden means the API server was reached but the binding
/// is missing.
///
/// # Errors
/// Any other failure, unchanged.
pub fn after_admin_attempt(result: anyhow::Result<bool>) -> anyhow::Result<AdminBinding> {
    match result {
        Ok(_) => Ok(AdminBinding::InPlace),
        Err(e) if is_forbidden(&e) => Ok(AdminBinding::NeedsSuperAdmin),
        Err(e) => Err(e),
    }
}

fn is_forbidden(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<kube::Error>(), Some(kube::Error::Api(s)) if s.code == 403)
}

/// Makes sure the `kubeadm:cluster-admins` ClusterRoleBinding exists: created with `admin`
/// when it may, else with the cluster `super_admin` gives (None when there is no
/// super-admin.conf).
///
/// # Errors
/// The binding is missing and there is no super-admin.conf, or a create failed.
pub fn ensure_cluster_admins_binding(
    admin: &Cluster,
    super_admin: impl FnOnce() -> anyhow::Result<Option<Cluster>>,
) -> anyhow::Result<()> {
    let binding = manifests::cluster::rbac::cluster_admins_binding();
    tracing::info!(
        "ensuring that the ClusterRoleBinding for the {} Group exists",
        names::CLUSTER_ADMINS_GROUP
    );
    match after_admin_attempt(admin.create_or_retain(&binding))? {
        AdminBinding::InPlace => Ok(()),
        AdminBinding::NeedsSuperAdmin => {
            let sa = super_admin()?.with_context(|| {
                format!(
                    "the ClusterRoleBinding {:?} that gives {} its rights is missing, and there is no {} to create it with; create the binding with a credential in system:masters, or run \"kubeboot reset\" and init again",
                    names::CLUSTER_ADMINS_GROUP,
                    names::ADMIN_KUBECONFIG,
                    names::SUPER_ADMIN_KUBECONFIG
                )
            })?;
            tracing::info!(
                "creating the ClusterRoleBinding for the {} Group by using {}",
                names::CLUSTER_ADMINS_GROUP,
                names::SUPER_ADMIN_KUBECONFIG
            );
            sa.create_or_retain(&binding).with_context(|| {
                format!(
                    "unable to create the {} ClusterRoleBinding by using {}",
                    names::CLUSTER_ADMINS_GROUP,
                    names::SUPER_ADMIN_KUBECONFIG
                )
            })?;
            Ok(())
        }
    }
}

/// The cluster behind `admin_conf`, with its rights in place: from Kubernetes 1.29 the
/// `kubeadm:cluster-admins` binding is ensured first, with `super_admin_conf` if need be
/// (kubeadm: EnsureAdminClusterRoleBinding). Up to 1.28 admin.conf is in `system:masters`
/// and nothing is created.
///
/// # Errors
/// A kubeconfig is unusable, or [`ensure_cluster_admins_binding`] fails.
pub fn admin_cluster(
    admin_conf: &Path,
    super_admin_conf: &Path,
    version: &Version,
) -> anyhow::Result<Cluster> {
    let admin = Cluster::from_kubeconfig(admin_conf)?;
    if catalogue::has_super_admin(version) {
        ensure_cluster_admins_binding(&admin, || {
            if !super_admin_conf.exists() {
                return Ok(None);
            }
            Cluster::from_kubeconfig(super_admin_conf).map(Some)
        })?;
    }
    Ok(admin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::out::Out;

    fn api_error(code: u16) -> anyhow::Error {
        anyhow::Error::new(kube::Error::Api(
            kube::core::Status::failure("m", "r")
                .with_code(code)
                .boxed(),
        ))
        .context("unable to create ClusterRoleBinding \"kubeadm:cluster-admins\"")
    }

    #[test]
    fn only_forbidden_turns_to_super_admin() {
        assert_eq!(
            after_admin_attempt(Ok(true)).unwrap(),
            AdminBinding::InPlace
        );
        assert_eq!(
            after_admin_attempt(Ok(false)).unwrap(),
            AdminBinding::InPlace
        );
        assert_eq!(
            after_admin_attempt(Err(api_error(403))).unwrap(),
            AdminBinding::NeedsSuperAdmin
        );
        for code in [401, 500, 503] {
            let e = after_admin_attempt(Err(api_error(code))).unwrap_err();
            assert!(e.to_string().contains("kubeadm:cluster-admins"), "{e}");
        }
        assert!(after_admin_attempt(Err(anyhow::anyhow!("connection refused"))).is_err());
    }

    #[test]
    fn admin_conf_creates_the_binding_when_it_may_without_super_admin() {
        let admin = Cluster::recording(Out::capture());
        ensure_cluster_admins_binding(&admin, || panic!("super-admin.conf is not needed"))
            .expect("ensured");
        let sent = admin.recorded();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (
                sent[0].verb.as_str(),
                sent[0].resource.as_str(),
                sent[0].name.as_deref()
            ),
            ("CREATE", "clusterrolebindings", None)
        );
        assert_eq!(
            sent[0].body.as_ref().expect("body")["subjects"][0]["name"],
            "kubeadm:cluster-admins"
        );
    }
}
