//! `phases::etcd_members` against real etcd processes on loopback only (127.0.0.2x, free
//! ports, a temp directory each, TLS with kubeadm's etcd flags and certificates from `pki`):
//! a 1-member cluster; node2 joins as a learner (checked while it is one), is started with the
//! `--initial-cluster` the plan produced and promoted; node3's first join fails after the add
//! and a second run resumes its learner; a re-run on a voter changes nothing; node2,
//! reinstalled (same name and address, empty data directory) while its old member is dead,
//! replaces its stale member (3 voters, one dead: removing it leaves 2 healthy of 2, a
//! quorum); with node3 dead, node4's join is refused naming node3 and the membership stays
//! as it was. Every etcd started is killed when the test ends, passed or not.

mod common;

use std::time::Duration;

use common::etcd::{Cluster, Node, eventually};
use phases::etcd_members::{
    EtcdClient, EtcdJoinRefused, JoinTimeouts, Member, initial_cluster_flag, join_member,
};
use phases::out::Out;

fn timeouts() -> JoinTimeouts {
    JoinTimeouts {
        healthy: Duration::from_secs(60),
        promote: Duration::from_secs(60),
    }
}

/// (name, is learner) of every member, sorted; unstarted members show as "".
fn shape(members: &[Member]) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = members
        .iter()
        .map(|m| (m.name.clone(), m.is_learner))
        .collect();
    v.sort();
    v
}

fn voters(names: &[&str]) -> Vec<(String, bool)> {
    names.iter().map(|n| (n.to_string(), false)).collect()
}

/// The member list once it shows `want` (a member answers the list from its own state, which
/// may trail the leader's for a moment under load), or the last list seen after 10 s.
fn settled(client: &EtcdClient, want: &[(String, bool)]) -> Vec<Member> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let members = client.list().unwrap();
        if shape(&members) == want || std::time::Instant::now() >= deadline {
            return members;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn id_of(members: &[Member], name: &str) -> u64 {
    members
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no member {name} in {members:?}"))
        .id
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn etcd_members_learner_join_resume_stale_replacement_and_refusal() {
    let mut c = Cluster::new();
    let n1 = Node::new("node1", 21);
    let n2 = Node::new("node2", 22);
    let n3 = Node::new("node3", 23);
    let n4 = Node::new("node4", 24);
    // node2's endpoint first: refused while it is down, "not supported" while it is a
    // learner; the client goes on to node1.
    let client = c.client(&[n2.client_url(), n1.client_url()]);
    c.start(&n1, &format!("node1={}", n1.peer_url()), false);
    eventually("node1 healthy", 30, || client.healthy(&n1.client_url()));

    // node2 joins: added as a learner (seen from inside the start), started with the plan's
    // --initial-cluster, promoted.
    let out = Out::capture();
    let mut seen = None;
    let joined = join_member(
        &client,
        "node2",
        &n2.peer_url(),
        |ic| {
            let flag = initial_cluster_flag(ic);
            seen = Some((flag.clone(), shape(&client.list()?)));
            c.start(&n2, &flag, true);
            Ok(())
        },
        timeouts(),
        &out,
    );
    assert!(joined.is_ok(), "{joined:?}\n{}{}", out.captured(), c.logs());
    let (flag, during) = seen.expect("start called");
    // In etcd's member order (by ID), which etcd does not care about.
    let mut pairs: Vec<&str> = flag.split(',').collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            format!("node1={}", n1.peer_url()),
            format!("node2={}", n2.peer_url())
        ]
    );
    assert_eq!(
        during,
        vec![(String::new(), true), ("node1".into(), false)],
        "node2 is an unstarted learner while it starts"
    );
    let said = out.captured();
    assert!(
        said.contains(
            "[etcd] Announced new etcd member joining to the existing etcd cluster as a learner"
        ),
        "{said}"
    );
    assert!(
        said.contains("[etcd] Promoted etcd member \"node2\""),
        "{said}"
    );
    assert_eq!(shape(&client.list().unwrap()), voters(&["node1", "node2"]));

    // node3's first join fails after the add (its manifest could not be written): its
    // learner stays, unstarted, and the error says a re-run continues.
    let out = Out::capture();
    let err = join_member(
        &client,
        "node3",
        &n3.peer_url(),
        |_| anyhow::bail!("disk full"),
        timeouts(),
        &out,
    )
    .expect_err("start failed");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("running the join again continues") && msg.contains("disk full"),
        "{msg}"
    );
    let members = client.list().unwrap();
    assert_eq!(
        shape(&members),
        vec![
            (String::new(), true),
            ("node1".into(), false),
            ("node2".into(), false)
        ]
    );
    let learner_id = members.iter().find(|m| m.is_learner).unwrap().id;
    // The re-run resumes that learner instead of adding another.
    let out = Out::capture();
    let joined = join_member(
        &client,
        "node3",
        &n3.peer_url(),
        |ic| {
            c.start(&n3, &initial_cluster_flag(ic), true);
            Ok(())
        },
        timeouts(),
        &out,
    );
    assert!(joined.is_ok(), "{joined:?}\n{}{}", out.captured(), c.logs());
    assert!(
        out.captured().contains(&format!(
            "Found this node's etcd member (id {learner_id:x})"
        )),
        "{}",
        out.captured()
    );
    let members = settled(&client, &voters(&["node1", "node2", "node3"]));
    assert_eq!(shape(&members), voters(&["node1", "node2", "node3"]));
    assert_eq!(id_of(&members, "node3"), learner_id);

    // A re-run on node2, a healthy voter: nothing changes.
    let out = Out::capture();
    let mut started = false;
    join_member(
        &client,
        "node2",
        &n2.peer_url(),
        |_| {
            started = true;
            Ok(())
        },
        timeouts(),
        &out,
    )
    .expect("re-run on a voter");
    assert!(started, "the manifest is written again (idempotently)");
    let said = out.captured();
    assert!(said.contains("already a voting etcd member"), "{said}");
    assert!(!said.contains("Waiting for the new etcd member"), "{said}");
    assert_eq!(client.list().unwrap(), members);

    // node2 is reinstalled: its etcd is gone, its member stale. 3 voters with one dead keep a
    // quorum of 2; removing the dead one leaves 2 healthy of 2 voters (quorum 2).
    let old_id = id_of(&members, "node2");
    c.kill(&n2, &client);
    let out = Out::capture();
    let joined = join_member(
        &client,
        "node2",
        &n2.peer_url(),
        |ic| {
            c.start(&n2, &initial_cluster_flag(ic), true);
            Ok(())
        },
        timeouts(),
        &out,
    );
    assert!(joined.is_ok(), "{joined:?}\n{}{}", out.captured(), c.logs());
    let said = out.captured();
    assert!(
        said.contains(&format!(
            "[etcd] Removed stale member \"node2\" (id {old_id:x}) at {}: unreachable, re-added as this node",
            n2.peer_url()
        )),
        "{said}"
    );
    let members = settled(&client, &voters(&["node1", "node2", "node3"]));
    assert_eq!(shape(&members), voters(&["node1", "node2", "node3"]));
    assert_ne!(id_of(&members, "node2"), old_id);

    // node3 dies; node4 may not join a degraded cluster: refused naming node3, nothing added.
    c.kill(&n3, &client);
    let out = Out::capture();
    let mut started = false;
    let err = join_member(
        &client,
        "node4",
        &n4.peer_url(),
        |_| {
            started = true;
            Ok(())
        },
        timeouts(),
        &out,
    )
    .expect_err("refused");
    assert!(!started);
    match err.downcast_ref::<EtcdJoinRefused>() {
        Some(EtcdJoinRefused::Unhealthy { members }) => {
            assert_eq!(members.len(), 1, "{members:?}");
            assert!(members[0].contains("\"node3\""), "{members:?}");
        }
        other => panic!("expected an unhealthy-members refusal, got {other:?}: {err:#}"),
    }
    assert_eq!(client.list().unwrap(), members);
}
