//! `certs renew` on a PKI that init's phases wrote in a temp dir: what it rewrites, what it
//! keeps, the modes, and the refusals (unknown name, external CA).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use phases::certs::CertsCtx;
use phases::certs::renew::{Renewal, renew, select};

fn node(root: &Path) -> CertsCtx {
    let mut d = common::data(root);
    let only: Vec<String> = ["certs", "kubeconfig"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    phases::init::run(&mut d, &only).expect("certs and kubeconfig phases");
    phases::shared::certs::agent_webhook_cert(&mut d).expect("agent webhook cert");
    let mut cluster = d.cfg.cluster.clone();
    cluster.certificate_validity = Duration::from_secs(600);
    CertsCtx {
        layout: components::Layout::under(root),
        fs: agent::host::fs::Fs::real(),
        out: phases::out::Out::capture(),
        cluster,
        cert_dir_flag: None,
        now: SystemTime::now() + Duration::from_secs(60),
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn renews_one_certificate_keeping_its_names_with_a_new_key() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = node(tmp.path());
    let pki = tmp.path().join("etc/kubernetes/pki");
    let (old_crt, old_key) = (
        read(&pki.join("apiserver.crt")),
        read(&pki.join("apiserver.key")),
    );
    let untouched = read(&pki.join("apiserver-kubelet-client.crt"));
    let done = renew(&ctx, &select(true, "apiserver").unwrap(), true, &ctx.fs).expect("renews");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].1, Renewal::Renewed);
    assert_eq!(
        ctx.out.captured(),
        "certificate for serving the Kubernetes API renewed\n"
    );
    let (new_crt, new_key) = (
        read(&pki.join("apiserver.crt")),
        read(&pki.join("apiserver.key")),
    );
    assert_ne!(new_crt, old_crt);
    assert_ne!(new_key, old_key, "a new key, as kubeadm's renewal");
    let (o, n) = (
        pki::cert_info(&old_crt).unwrap(),
        pki::cert_info(&new_crt).unwrap(),
    );
    assert_eq!(
        (n.common_name, n.dns_names, n.ips),
        (o.common_name, o.dns_names, o.ips)
    );
    let valid = n.not_after.duration_since(ctx.now).unwrap().as_secs();
    assert!((599..=600).contains(&valid), "{valid}");
    assert!(pki::is_signed_by(&new_crt, &read(&pki.join("ca.crt"))).unwrap());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&pki.join("apiserver.key")), 0o600);
    assert_eq!(mode(&pki.join("apiserver.crt")), 0o644);
    assert_eq!(read(&pki.join("apiserver-kubelet-client.crt")), untouched);
}

#[test]
fn renews_kubeconfigs_and_kubeboots_own_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = node(tmp.path());
    let k8s = tmp.path().join("etc/kubernetes");
    let old_admin = read(&k8s.join("admin.conf"));
    let done = renew(&ctx, &select(true, "all").unwrap(), false, &ctx.fs).expect("renews");
    let names: Vec<&str> = done.iter().map(|(t, _)| t.name).collect();
    assert!(names.contains(&"kubeboot-agent-webhook") && names.contains(&"kubeboot-agent.conf"));
    assert!(done.iter().all(|(_, r)| *r == Renewal::Renewed), "{done:?}");
    let new_admin = read(&k8s.join("admin.conf"));
    assert_ne!(new_admin, old_admin);
    let (old, new) = (
        pki::Kubeconfig::from_yaml(&old_admin).unwrap(),
        pki::Kubeconfig::from_yaml(&new_admin).unwrap(),
    );
    assert_eq!(
        new.client_identity().unwrap(),
        old.client_identity().unwrap()
    );
    assert_eq!(new.current_cluster(), old.current_cluster());
    let valid = pki::cert_info(&new.client_certificate_pem().unwrap())
        .unwrap()
        .not_after
        .duration_since(ctx.now)
        .unwrap()
        .as_secs();
    assert!((599..=600).contains(&valid), "{valid}");
    let out = ctx.out.captured();
    assert!(
        out.contains("certificate embedded in the kubeconfig file for the admin to use and for kubeadm itself renewed"),
        "{out}"
    );
    let mode = std::fs::metadata(k8s.join("admin.conf"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn unknown_names_and_external_cas_are_refused_and_nothing_changes() {
    let err = select(true, "apiserver-typo").expect_err("unknown");
    let msg = err.to_string();
    assert!(msg.contains("\"apiserver-typo\""), "{msg}");
    assert!(
        msg.contains("all, admin.conf, apiserver,") && msg.contains("scheduler.conf"),
        "{msg}"
    );
    assert!(msg.contains("nothing was renewed"), "{msg}");
    assert!(
        select(false, "etcd-server").is_err(),
        "no etcd certificates with an external etcd"
    );

    let tmp = tempfile::tempdir().unwrap();
    let ctx = node(tmp.path());
    let pki = tmp.path().join("etc/kubernetes/pki");
    std::fs::remove_file(pki.join("front-proxy-ca.key")).unwrap();
    let before = read(&pki.join("front-proxy-client.crt"));
    let done = renew(
        &ctx,
        &select(true, "front-proxy-client").unwrap(),
        true,
        &ctx.fs,
    )
    .unwrap();
    assert_eq!(done[0].1, Renewal::ExternalCa);
    assert_eq!(
        ctx.out.captured(),
        "Detected external front-proxy-ca, certificate for the front proxy client can't be renewed\n"
    );
    assert_eq!(read(&pki.join("front-proxy-client.crt")), before);
}

#[test]
fn dry_run_writes_only_into_the_scratch_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let ctx = node(tmp.path());
    let crt = tmp.path().join("etc/kubernetes/pki/apiserver.crt");
    let before = read(&crt);
    let write = agent::host::fs::Fs::under(scratch.path());
    renew(&ctx, &select(true, "apiserver").unwrap(), true, &write).unwrap();
    assert_eq!(read(&crt), before);
    assert!(write.resolve(&crt).is_file());
}

#[test]
fn user_kubeconfig_has_the_asked_identity_and_validity_and_chains_to_the_ca() {
    use phases::certs::user::{UserRequest, user_kubeconfig};
    let tmp = tempfile::tempdir().unwrap();
    let ctx = node(tmp.path());
    let req = UserRequest {
        client_name: "alice".into(),
        organizations: vec!["team".into()],
        validity: Duration::from_secs(24 * 3600),
        server: "https://10.123.0.2:6443".into(),
        cluster_name: "kubernetes".into(),
    };
    let kc = user_kubeconfig(&ctx, &req).expect("kubeconfig");
    assert_eq!(
        kc.client_identity().unwrap(),
        ("alice".to_string(), vec!["team".to_string()])
    );
    assert_eq!(kc.current_context, "alice@kubernetes");
    assert_eq!(
        kc.current_cluster().unwrap().cluster.server,
        "https://10.123.0.2:6443"
    );
    let pem = kc.client_certificate_pem().unwrap();
    let info = pki::cert_info(&pem).unwrap();
    let valid = info.not_after.duration_since(ctx.now).unwrap().as_secs();
    assert!((24 * 3600 - 1..=24 * 3600).contains(&valid), "{valid}");
    let ca = read(&tmp.path().join("etc/kubernetes/pki/ca.crt"));
    assert!(pki::is_signed_by(&pem, &ca).unwrap());
    let empty = UserRequest {
        client_name: " ".into(),
        ..req
    };
    assert!(
        user_kubeconfig(&ctx, &empty)
            .unwrap_err()
            .to_string()
            .contains("--client-name")
    );
}

/// Under the agent runner, `certs renew` names the static pods the agent restarts: those
/// whose containers name a renewed file, as the agent reads the manifests init wrote.
#[test]
fn renewal_names_the_components_the_agent_restarts() {
    use phases::certs::renew::{Restarts, restarts};
    let tmp = tempfile::tempdir().unwrap();
    let mut d = common::data(tmp.path());
    let only: Vec<String> = ["certs", "kubeconfig", "control-plane", "etcd"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    phases::init::run(&mut d, &only).expect("certs, kubeconfig, manifests");
    let ctx = node_ctx(tmp.path(), &d);
    let users = |name: &str| {
        let done = renew(&ctx, &select(true, name).unwrap(), true, &ctx.fs).expect("renews");
        restarts(&ctx, &done).expect("reads the manifests")
    };
    assert_eq!(
        users("apiserver"),
        Restarts::ByAgent(vec!["kube-apiserver".into()])
    );
    assert_eq!(
        users("apiserver-etcd-client"),
        Restarts::ByAgent(vec!["kube-apiserver".into()])
    );
    assert_eq!(users("etcd-server"), Restarts::ByAgent(vec!["etcd".into()]));
    assert_eq!(
        users("scheduler.conf"),
        Restarts::ByAgent(vec!["kube-scheduler".into()])
    );
    assert_eq!(users("admin.conf"), Restarts::ByAgent(vec![]));
    let Restarts::ByAgent(all) = users("all") else {
        panic!("the agent runs the static pods here")
    };
    assert_eq!(
        all,
        [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler"
        ]
    );
    // The kubelet runs the manifests: restarts are the user's, as with kubeadm.
    let kubelet = tmp.path().join("var/lib/kubelet");
    std::fs::create_dir_all(&kubelet).unwrap();
    std::fs::write(
        kubelet.join("config.yaml"),
        "staticPodPath: /etc/kubernetes/manifests\n",
    )
    .unwrap();
    assert_eq!(users("apiserver"), Restarts::ByUser);
}

fn node_ctx(root: &Path, d: &phases::init::InitData) -> CertsCtx {
    CertsCtx {
        layout: components::Layout::under(root),
        fs: agent::host::fs::Fs::real(),
        out: phases::out::Out::capture(),
        cluster: d.cfg.cluster.clone(),
        cert_dir_flag: None,
        now: SystemTime::now(),
    }
}

/// The agent's renewer (`phases::certs::auto`): what it reports, what it renews, with the
/// cluster's validity and window; a node without the cluster's settings renews nothing; a
/// worker (no CA key) has nothing to renew.
#[test]
fn the_agents_renewer_reports_and_renews_with_the_clusters_settings() {
    use agent::cert_renewal::{Renewer, plan};
    use phases::certs::auto::NodeRenewer;
    let tmp = tempfile::tempdir().unwrap();
    let ctx = node(tmp.path());
    // No API here (and nothing may be sent off the machine): no admin.conf to reach one.
    std::fs::remove_file(tmp.path().join("etc/kubernetes/admin.conf")).unwrap();
    let layout = components::Layout::under(tmp.path());
    let unknown = NodeRenewer::new(layout.clone(), "node1");
    let e = unknown.inspect().unwrap_err();
    assert!(
        format!("{e:#}").contains("kubeadm-config) cannot be read yet"),
        "{e:#}"
    );

    let mut cluster = ctx.cluster.clone();
    cluster.certificate_validity = Duration::from_secs(600);
    cluster.certificate_renewal_window = Duration::from_secs(300);
    let r = NodeRenewer::with_cluster_config(layout.clone(), "node1", cluster);
    let before = r.inspect().expect("inspects");
    assert_eq!(before.window, Duration::from_secs(300));
    let names: Vec<&str> = before.certs.iter().map(|c| c.name.as_str()).collect();
    for n in [
        "apiserver",
        "etcd-server",
        "scheduler.conf",
        "kubeboot-agent-webhook",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    assert!(before.certs.iter().all(|c| c.renewable));
    // init's certificates last a year: nothing is due.
    assert!(plan(&before, SystemTime::now(), &[]).due.is_empty());
    assert_eq!(r.renew(&["apiserver".into()]).unwrap(), ["apiserver"]);
    let after = r.inspect().unwrap();
    let api = after.certs.iter().find(|c| c.name == "apiserver").unwrap();
    let left = api
        .not_after
        .duration_since(SystemTime::now())
        .unwrap()
        .as_secs();
    assert!(
        (590..=600).contains(&left),
        "renewed for the cluster's 600 s: {left}"
    );
    // Due 300 s before that: not now, and the next check is then.
    let p = plan(&after, SystemTime::now(), &[]);
    assert!(p.due.is_empty());
    assert_eq!(
        p.next_due.as_ref().map(|(n, _)| n.as_str()),
        Some("apiserver")
    );
    assert!((280..=300).contains(&p.sleep.as_secs()), "{:?}", p.sleep);

    // kube-proxy's credential on this control-plane node: renewed from the CA here.
    write_kube_proxy_kubeconfig(&ctx, tmp.path(), &layout, Duration::from_secs(60));
    let i = r.inspect().unwrap();
    let kp = i
        .certs
        .iter()
        .find(|c| c.name == "kube-proxy")
        .expect("listed");
    assert!(kp.renewable);
    assert!(
        plan(&i, SystemTime::now(), &[])
            .due
            .contains(&"kube-proxy".to_string())
    );
    assert_eq!(r.renew(&["kube-proxy".into()]).unwrap(), ["kube-proxy"]);
    let kp = r
        .inspect()
        .unwrap()
        .certs
        .into_iter()
        .find(|c| c.name == "kube-proxy")
        .unwrap();
    let left = kp
        .not_after
        .duration_since(SystemTime::now())
        .unwrap()
        .as_secs();
    assert!((590..=600).contains(&left), "{left}");
    let kc = read(&layout.kube_proxy_dir().join("kubeconfig.conf"));
    let cert = pki::Kubeconfig::from_yaml(&kc)
        .unwrap()
        .client_certificate_pem()
        .unwrap();
    assert_eq!(
        pki::cert_info(&cert).unwrap().common_name,
        "system:kube-proxy"
    );

    // A worker: no CA key, nothing to renew, no error.
    let worker = tempfile::tempdir().unwrap();
    let w = NodeRenewer::new(components::Layout::under(worker.path()), "node2");
    assert!(w.inspect().unwrap().certs.is_empty());
}

/// A worker's kube-proxy credential (made at join through a CSR): reported with a window of a
/// quarter of its own lifetime, renewable with the node's kubelet identity; nothing else is
/// renewed there.
#[test]
fn a_workers_kube_proxy_credential_is_reported_with_its_own_window() {
    use agent::cert_renewal::Renewer;
    use phases::certs::auto::{KUBE_PROXY_CREDENTIAL, NodeRenewer};
    // A CA elsewhere (the control plane's), a kube-proxy kubeconfig on the worker.
    let cp = tempfile::tempdir().unwrap();
    let ctx = node(cp.path());
    let worker = tempfile::tempdir().unwrap();
    let layout = components::Layout::under(worker.path());
    write_kube_proxy_kubeconfig(&ctx, cp.path(), &layout, Duration::from_secs(400));
    let w = NodeRenewer::new(layout.clone(), "node2");
    let i = w.inspect().expect("inspects");
    // A quarter of 400 s (NotBefore is backdated a little, as kubeadm's).
    assert!((100..=101).contains(&i.window.as_secs()), "{:?}", i.window);
    assert_eq!(i.certs.len(), 1);
    assert_eq!(i.certs[0].name, KUBE_PROXY_CREDENTIAL);
    assert!(!i.certs[0].renewable, "no kubelet identity to ask with");
    std::fs::create_dir_all(layout.kubernetes_dir()).unwrap();
    std::fs::write(layout.kubeconfig("kubelet.conf"), "placeholder").unwrap();
    assert!(w.inspect().unwrap().certs[0].renewable);
    let e = w.renew(&["apiserver".into()]).unwrap_err();
    assert!(
        format!("{e:#}").contains("renews only kube-proxy's credential"),
        "{e:#}"
    );
}

/// Writes a kube-proxy kubeconfig into `layout` with a certificate for `system:kube-proxy`
/// from the CA of the control-plane node at `cp`, valid for `validity`.
fn write_kube_proxy_kubeconfig(
    ctx: &CertsCtx,
    cp: &Path,
    layout: &components::Layout,
    validity: Duration,
) {
    let ca = read(&cp.join("etc/kubernetes/pki/ca.crt"));
    let ca_key = read(&cp.join("etc/kubernetes/pki/ca.key"));
    let issuer = pki::Issuer {
        cert_pem: ca.clone(),
        key_pem: ca_key,
    };
    let issued = pki::renew::client_or_server(
        "kube-proxy",
        "system:kube-proxy",
        &[],
        Default::default(),
        &[pki::ExtKeyUsage::ClientAuth],
        &issuer,
        ctx.cluster.encryption_algorithm,
        validity,
        SystemTime::now(),
    )
    .unwrap();
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let kc = pki::kubeconfig::basic_kubeconfig(
        "kubernetes",
        "https://127.0.0.1:6443",
        &ca,
        "system:kube-proxy",
        pki::kubeconfig::User {
            client_certificate_data: Some(b64(&issued.cert_pem)),
            client_key_data: Some(b64(&issued.key_pem)),
            ..Default::default()
        },
    );
    std::fs::create_dir_all(layout.kube_proxy_dir()).unwrap();
    std::fs::write(
        layout.kube_proxy_dir().join("kubeconfig.conf"),
        kc.to_yaml(),
    )
    .unwrap();
}
