//! What a node may take with it when it leaves the cluster, decided purely: whether its etcd
//! member may be removed (never the last healthy members of a multi-member cluster, unless
//! `--force-remove-last-etcd-member`), and which credential may delete its Node object
//! (`--delete-node`). reset's preflight decides both before anything changes, so a refusal
//! leaves the node as it was.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::etcd_members::Member;

/// The flag that lets reset go on when this node's etcd member is needed for quorum.
pub const FORCE_LAST_MEMBER_FLAG: &str = "--force-remove-last-etcd-member";

/// What happens to this node's etcd member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdLeave {
    /// No member of this node's name in the list: removed already (or never joined).
    NotMember,
    /// The cluster's only voting member: it stays (the node's cleanup deletes its data, as
    /// kubeadm's reset does on a single control-plane node).
    OnlyMember {
        /// The member, described.
        member: String,
    },
    /// Remove it: the other voters keep a healthy quorum.
    Remove {
        /// Its ID.
        id: u64,
        /// The member, described.
        member: String,
    },
    /// Needed for quorum, and `--force-remove-last-etcd-member` was given: it is not removed
    /// (etcd would refuse a removal the remaining members cannot commit), the node is reset
    /// anyway and its data goes with it.
    KeepForced {
        /// Its ID.
        id: u64,
        /// The member, described.
        member: String,
    },
}

/// Removing this node's member (and resetting it) would leave the others without a quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastHealthyMember {
    /// This node's member, described.
    pub member: String,
    /// Every member with its health: `"node1" (id .., https://..): unhealthy (why)`.
    pub members: Vec<String>,
    /// Voting members after the removal.
    pub voters_after: usize,
    /// Healthy voting members after the removal.
    pub healthy_after: usize,
    /// This node's member is healthy itself.
    pub healthy_self: bool,
}

impl fmt::Display for LastHealthyMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.healthy_after == 0 && self.healthy_self {
            "the last healthy member of a multi-member etcd cluster".to_string()
        } else {
            "needed for the etcd cluster's quorum".to_string()
        };
        write!(
            f,
            "this node's etcd member {} is {what}: without it {} of {} voting member(s) would be healthy, less than a quorum, and reset deletes its data, so the cluster would lose its quorum and could lose its data. Members: {}. Bring the other members back first (their etcd must answer), or save a snapshot (\"kubeboot etcd snapshot save <file>\") and reset with {FORCE_LAST_MEMBER_FLAG}; -f only skips the confirmation prompt",
            self.member,
            self.healthy_after,
            self.voters_after,
            self.members.join("; ")
        )
    }
}

impl std::error::Error for LastHealthyMember {}

/// Decides what happens to the member named `my_name`, given every member and the health of
/// each (`Err(why)` when unhealthy; a member missing from `health` is unhealthy). A learner
/// leaves freely (it does not vote). A voter leaves when the remaining voters keep a healthy
/// quorum, as etcd's own check demands (etcd 3.4 membership/cluster.go
/// IsReadyToRemoveVotingMember); otherwise it is refused unless `force`. Pure.
///
/// # Errors
/// [`LastHealthyMember`], naming every member's health and the fix.
pub fn etcd_leave(
    members: &[Member],
    health: &[(u64, Result<(), String>)],
    my_name: &str,
    force: bool,
) -> Result<EtcdLeave, LastHealthyMember> {
    let health_of = |m: &Member| -> Result<(), String> {
        health
            .iter()
            .find(|(id, _)| *id == m.id)
            .map(|(_, h)| h.clone())
            .unwrap_or_else(|| Err("not checked".into()))
    };
    let Some(me) = members.iter().find(|m| m.name == my_name) else {
        return Ok(EtcdLeave::NotMember);
    };
    let voters: Vec<&Member> = members.iter().filter(|m| !m.is_learner).collect();
    if me.is_learner {
        return Ok(EtcdLeave::Remove {
            id: me.id,
            member: me.describe(),
        });
    }
    if voters.len() <= 1 {
        return Ok(EtcdLeave::OnlyMember {
            member: me.describe(),
        });
    }
    let after: Vec<&&Member> = voters.iter().filter(|m| m.id != me.id).collect();
    let healthy_after = after.iter().filter(|m| health_of(m).is_ok()).count();
    let voters_after = after.len();
    if healthy_after > voters_after / 2 {
        return Ok(EtcdLeave::Remove {
            id: me.id,
            member: me.describe(),
        });
    }
    if force {
        return Ok(EtcdLeave::KeepForced {
            id: me.id,
            member: me.describe(),
        });
    }
    Err(LastHealthyMember {
        member: me.describe(),
        members: members
            .iter()
            .map(|m| {
                let role = if m.is_learner { "learner, " } else { "" };
                let this = if m.id == me.id { ", this node" } else { "" };
                match health_of(m) {
                    Ok(()) => format!("{}: {role}healthy{this}", m.describe()),
                    Err(why) => format!("{}: {role}unhealthy ({why}){this}", m.describe()),
                }
            })
            .collect(),
        voters_after,
        healthy_after,
        healthy_self: health_of(me).is_ok(),
    })
}

/// No credential on this node may delete its Node object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoDeleteCredential {
    /// The admin kubeconfig looked for.
    pub admin: PathBuf,
}

impl fmt::Display for NoDeleteCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--delete-node: this node has no credential that may delete its Node object ({:?} is missing, as on a worker; the kubelet's own credential cannot: the system:node role may not delete Nodes, kubernetes/kubeadm#1300): reset without --delete-node and run \"kubectl delete node <name>\" from a control-plane node, or pass --kubeconfig with a credential that may delete Nodes",
            self.admin.display().to_string()
        )
    }
}

impl std::error::Error for NoDeleteCredential {}

/// The kubeconfig `--delete-node` deletes the Node with: `--kubeconfig` if given, else the
/// admin kubeconfig if this node has one (a control-plane node). Pure over what exists.
///
/// # Errors
/// [`NoDeleteCredential`] on a node with neither.
pub fn delete_node_credential(
    kubeconfig_flag: Option<&Path>,
    admin: &Path,
    admin_exists: bool,
) -> Result<PathBuf, NoDeleteCredential> {
    match kubeconfig_flag {
        Some(k) => Ok(k.to_path_buf()),
        None if admin_exists => Ok(admin.to_path_buf()),
        None => Err(NoDeleteCredential {
            admin: admin.to_path_buf(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, name: &str) -> Member {
        Member {
            id,
            name: name.into(),
            peer_urls: vec![format!("https://10.0.0.{id}:2380")],
            client_urls: vec![format!("https://10.0.0.{id}:2379")],
            is_learner: false,
        }
    }

    fn ok(ids: &[u64]) -> Vec<(u64, Result<(), String>)> {
        ids.iter().map(|&i| (i, Ok(()))).collect()
    }

    fn with_down(mut h: Vec<(u64, Result<(), String>)>, id: u64) -> Vec<(u64, Result<(), String>)> {
        h.push((id, Err("connection refused".into())));
        h
    }

    #[test]
    fn a_member_of_a_healthy_cluster_is_removed() {
        let ms = [m(1, "node1"), m(2, "node2"), m(3, "node3")];
        assert!(matches!(
            etcd_leave(&ms, &ok(&[1, 2, 3]), "node3", false),
            Ok(EtcdLeave::Remove { id: 3, .. })
        ));
        // 5 voters with one down: the other four keep 3 healthy, a quorum of 4.
        let five = [m(1, "n1"), m(2, "n2"), m(3, "n3"), m(4, "n4"), m(5, "n5")];
        assert!(matches!(
            etcd_leave(&five, &with_down(ok(&[2, 3, 4, 5]), 1), "n5", false),
            Ok(EtcdLeave::Remove { id: 5, .. })
        ));
    }

    #[test]
    fn the_last_healthy_member_is_refused_naming_every_member_and_the_fix() {
        let ms = [m(1, "node1"), m(2, "node2")];
        let err = etcd_leave(&ms, &with_down(ok(&[2]), 1), "node2", false).unwrap_err();
        assert_eq!((err.voters_after, err.healthy_after), (1, 0));
        let text = err.to_string();
        for want in [
            "the last healthy member of a multi-member etcd cluster",
            "\"node1\" (id 1, https://10.0.0.1:2380): unhealthy (connection refused)",
            "\"node2\" (id 2, https://10.0.0.2:2380): healthy, this node",
            FORCE_LAST_MEMBER_FLAG,
            "kubeboot etcd snapshot save",
            "-f only skips the confirmation prompt",
        ] {
            assert!(text.contains(want), "{want:?} not in {text}");
        }
    }

    #[test]
    fn a_member_needed_for_quorum_is_refused_too() {
        // node3 leaving leaves node1 (healthy) and node2 (down): 1 of 2, no quorum.
        let ms = [m(1, "node1"), m(2, "node2"), m(3, "node3")];
        let err = etcd_leave(&ms, &with_down(ok(&[1, 3]), 2), "node3", false).unwrap_err();
        assert_eq!((err.voters_after, err.healthy_after), (2, 1));
        assert!(
            err.to_string()
                .contains("needed for the etcd cluster's quorum")
        );
    }

    #[test]
    fn the_dedicated_flag_resets_anyway_keeping_the_member() {
        let ms = [m(1, "node1"), m(2, "node2")];
        assert!(matches!(
            etcd_leave(&ms, &with_down(ok(&[2]), 1), "node2", true),
            Ok(EtcdLeave::KeepForced { id: 2, .. })
        ));
    }

    #[test]
    fn only_members_learners_and_strangers() {
        assert!(matches!(
            etcd_leave(&[m(1, "node1")], &ok(&[1]), "node1", false),
            Ok(EtcdLeave::OnlyMember { .. })
        ));
        let mut learner = m(2, "node2");
        learner.is_learner = true;
        // A learner never votes: it leaves even with the only voter down.
        assert!(matches!(
            etcd_leave(
                &[m(1, "node1"), learner],
                &with_down(vec![], 1),
                "node2",
                false
            ),
            Ok(EtcdLeave::Remove { id: 2, .. })
        ));
        assert_eq!(
            etcd_leave(&[m(1, "node1")], &ok(&[1]), "node9", false),
            Ok(EtcdLeave::NotMember)
        );
    }

    #[test]
    fn delete_node_needs_an_admin_credential() {
        let admin = Path::new("/etc/kubernetes/admin.conf");
        assert_eq!(
            delete_node_credential(None, admin, true),
            Ok(admin.to_path_buf())
        );
        assert_eq!(
            delete_node_credential(Some(Path::new("/root/admin.conf")), admin, false),
            Ok(PathBuf::from("/root/admin.conf"))
        );
        let err = delete_node_credential(None, admin, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kubectl delete node <name>\" from a control-plane node"),
            "{err}"
        );
        assert!(
            err.contains("\"/etc/kubernetes/admin.conf\" is missing"),
            "{err}"
        );
    }
}
