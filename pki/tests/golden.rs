//! Golden tests (DESIGN.md tier 2): our certificates against the ones kubeadm v1.20.2 wrote
//! for the same configuration (golden/v1.20.2/, made by generate.sh), field by field; and
//! kubeadm v1.20.2 itself accepting a PKI kubeboot wrote.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use components::config::KeyAlgorithm;
use pki::{CERTS, CertInputs, Issuer, issue};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Every place where kubeboot's certificates knowingly differ from kubeadm v1.20.2's, with
/// the reason. The comparison below skips exactly these fields (plus keys, serials and
/// dates, which differ per run anyway).
const DELIBERATE_DIFFERENCES: &[(&str, &str)] = &[
    (
        "key and signature algorithm",
        "kubeboot defaults to ECDSA P-256 (kubeadm 1.20: RSA 2048 unless the PublicKeysECDSA \
         feature gate is on); RSA-2048 is available with encryptionAlgorithm",
    ),
    (
        "CA serial number",
        "kubeadm's CAs have serial 0 (client-go NewSelfSignedCACert); RFC 5280 wants a \
         positive serial, kubeboot uses a random one as kubeadm does for leaves",
    ),
    (
        "subject key identifier value",
        "Go derives it with SHA-1, rcgen with RFC 7093's truncated SHA-256; only the \
         presence of the extension matters, and leaves' authority key identifiers match \
         whichever their CA carries",
    ),
];

fn golden_dir() -> PathBuf {
    // Read at run time (cargo and nextest set it), not baked in at compile time: a test
    // binary that cargo reuses from another checkout sharing the target directory must read
    // this checkout's files.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            std::path::PathBuf::from,
        )
        .join("tests/golden/v1.20.2")
}

/// The inputs of golden/v1.20.2/kubeadm-config.yaml.
fn inputs(algorithm: KeyAlgorithm) -> CertInputs {
    CertInputs {
        node_name: "node1".to_string(),
        advertise_address: "10.123.0.2".parse().expect("ip"),
        service_subnet: "10.96.0.0/12".parse().expect("cidr"),
        dns_domain: "cluster.local".to_string(),
        control_plane_endpoint: None,
        apiserver_cert_sans: vec!["10.123.0.100".to_string(), "api.example.test".to_string()],
        etcd_server_sans: vec![],
        etcd_peer_sans: vec![],
        algorithm,
        validity: Default::default(),
    }
}

/// Issues every certificate, CAs first.
fn issue_all(inputs: &CertInputs, now: SystemTime) -> Vec<(&'static pki::CertSpec, pki::Issued)> {
    let mut out: Vec<(&'static pki::CertSpec, pki::Issued)> = Vec::new();
    for spec in CERTS {
        let issuer: Option<Issuer> = spec.ca.map(|ca| {
            let (_, issued) = out
                .iter()
                .find(|(s, _)| s.name == ca)
                .expect("CA comes first");
            issued.clone().into()
        });
        let issued = issue(spec, inputs, issuer.as_ref(), now).expect("issues");
        out.push((spec, issued));
    }
    out
}

/// The fields compared, normalized (see DELIBERATE_DIFFERENCES).
#[derive(Debug, PartialEq, Eq)]
struct Fields {
    version: u32,
    /// Subject as (attribute OID, ASN.1 string tag, value), in order.
    subject: Vec<(String, u32, String)>,
    issuer: Vec<(String, u32, String)>,
    dns_names: BTreeSet<String>,
    ips: BTreeSet<IpAddr>,
    key_usage: Option<(bool, u16)>,
    ext_key_usage: Option<(bool, BTreeSet<&'static str>)>,
    /// (critical, CA, path length).
    basic_constraints: Option<(bool, bool, Option<u32>)>,
    /// Extension OIDs present.
    extensions: BTreeSet<String>,
    validity_days: i64,
}

fn name(n: &x509_parser::x509::X509Name) -> Vec<(String, u32, String)> {
    n.iter_attributes()
        .map(|a| {
            (
                a.attr_type().to_id_string(),
                a.attr_value().header.tag().0,
                a.as_str().expect("string attribute").to_string(),
            )
        })
        .collect()
}

fn fields(pem: &str) -> Fields {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
    let (_, c) = X509Certificate::from_der(&pem.contents).expect("der");
    let mut f = Fields {
        version: c.version().0,
        subject: name(c.subject()),
        issuer: name(c.issuer()),
        dns_names: BTreeSet::new(),
        ips: BTreeSet::new(),
        key_usage: None,
        ext_key_usage: None,
        basic_constraints: None,
        extensions: BTreeSet::new(),
        validity_days: (c.validity().not_after.timestamp() - c.validity().not_before.timestamp())
            / 86_400,
    };
    for ext in c.extensions() {
        f.extensions.insert(ext.oid.to_id_string());
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for n in &san.general_names {
                    match n {
                        GeneralName::DNSName(d) => {
                            f.dns_names.insert(d.to_string());
                        }
                        GeneralName::IPAddress(b) if b.len() == 4 => {
                            f.ips
                                .insert(IpAddr::from(<[u8; 4]>::try_from(*b).expect("4")));
                        }
                        GeneralName::IPAddress(b) => {
                            f.ips
                                .insert(IpAddr::from(<[u8; 16]>::try_from(*b).expect("16")));
                        }
                        other => panic!("unexpected SAN {other:?}"),
                    }
                }
            }
            ParsedExtension::KeyUsage(ku) => f.key_usage = Some((ext.critical, ku.flags)),
            ParsedExtension::ExtendedKeyUsage(eku) => {
                let mut set = BTreeSet::new();
                if eku.server_auth {
                    set.insert("serverAuth");
                }
                if eku.client_auth {
                    set.insert("clientAuth");
                }
                assert!(eku.other.is_empty() && !eku.any, "unexpected EKUs");
                f.ext_key_usage = Some((ext.critical, set));
            }
            ParsedExtension::BasicConstraints(bc) => {
                f.basic_constraints = Some((ext.critical, bc.ca, bc.path_len_constraint));
            }
            _ => {}
        }
    }
    f
}

#[test]
fn certificates_match_kubeadm_field_by_field() {
    assert_eq!(
        DELIBERATE_DIFFERENCES.len(),
        3,
        "update the report when this list changes"
    );
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let ours = issue_all(&inputs(KeyAlgorithm::EcdsaP256), now);
    for (spec, issued) in &ours {
        let path = golden_dir()
            .join("certs")
            .join(format!("{}.crt", spec.base_name));
        let golden = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run generate.sh", path.display()));
        let (theirs, mine) = (fields(&golden), fields(&issued.cert_pem));
        // Guard against comparing two empty parses.
        assert!(
            theirs.extensions.len() >= 3 && theirs.key_usage.is_some(),
            "{theirs:?}"
        );
        assert_eq!(theirs.dns_names.is_empty(), spec.sans == pki::SanRule::None);
        assert_eq!(
            mine,
            theirs,
            "certificate {:?} differs from kubeadm's {}",
            spec.name,
            path.display()
        );
    }
    let goldens = std::fs::read_dir(golden_dir().join("certs"))
        .expect("certs dir")
        .chain(std::fs::read_dir(golden_dir().join("certs/etcd")).expect("etcd dir"))
        .filter(|e| {
            e.as_ref()
                .expect("entry")
                .path()
                .extension()
                .is_some_and(|x| x == "crt")
        })
        .count();
    assert_eq!(
        goldens,
        CERTS.len(),
        "kubeadm wrote certificates kubeboot does not know"
    );
}

#[test]
fn kubeadm_names_match_the_table() {
    let out = std::fs::read_to_string(golden_dir().join("kubeadm-output.txt")).expect("output");
    for spec in CERTS {
        // kubeadm prints the base name (`etcd/ca`), not the phase name (`etcd-ca`).
        let line = format!(
            "[certs] Generating {:?} certificate and key",
            spec.base_name
        );
        assert!(out.contains(&line), "kubeadm did not print {line:?}");
    }
    assert!(out.contains(r#"[certs] Generating "sa" key and public key"#));
    assert!(out.contains(
        "apiserver serving cert is signed for DNS names [api.example.test kubernetes \
         kubernetes.default kubernetes.default.svc kubernetes.default.svc.cluster.local node1] \
         and IPs [10.96.0.1 10.123.0.2 10.123.0.100]"
    ));
    // Our SAN order is kubeadm's: DNS sorted, IPs in kubeadm's order.
    let alt = pki::alt_names(
        pki::cert_spec("apiserver").expect("spec"),
        &inputs(KeyAlgorithm::EcdsaP256),
    )
    .expect("sans");
    let ips: Vec<String> = alt.ips.iter().map(ToString::to_string).collect();
    assert_eq!(ips, ["10.96.0.1", "10.123.0.2", "10.123.0.100"]);
}

#[test]
fn sa_public_key_has_kubeadm_format() {
    let golden = std::fs::read_to_string(golden_dir().join("certs/sa.pub")).expect("sa.pub");
    let ours = pki::sa_key_pair(KeyAlgorithm::EcdsaP256).expect("sa");
    let label = |s: &str| s.lines().next().map(str::to_string);
    assert_eq!(label(&ours.public_pem), label(&golden));
    assert_eq!(
        label(&golden).as_deref(),
        Some("-----BEGIN PUBLIC KEY-----")
    );
}

fn kubeadm() -> PathBuf {
    let dir = std::env::var("KUBEBOOT_BIN_DIR").unwrap_or_else(|_| {
        panic!("KUBEBOOT_BIN_DIR is not set; run scripts/setup.sh to build kubeadm v1.20.2 and export it")
    });
    let path = Path::new(&dir).join("kubeadm");
    assert!(
        path.is_file(),
        "{} is missing; run scripts/setup.sh",
        path.display()
    );
    path
}

/// Writes our whole PKI for `algorithm` and has kubeadm v1.20.2 run `init phase certs all`
/// over it: it must use every file as it is.
fn kubeadm_accepts(algorithm: KeyAlgorithm) {
    let kubeadm = kubeadm();
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki_dir = tmp.path().join("pki");
    std::fs::create_dir_all(pki_dir.join("etcd")).expect("mkdir");
    let ours = issue_all(&inputs(algorithm), SystemTime::now());
    for (spec, issued) in &ours {
        std::fs::write(
            pki_dir.join(format!("{}.crt", spec.base_name)),
            &issued.cert_pem,
        )
        .expect("crt");
        std::fs::write(
            pki_dir.join(format!("{}.key", spec.base_name)),
            &issued.key_pem,
        )
        .expect("key");
    }
    let sa = pki::sa_key_pair(algorithm).expect("sa");
    std::fs::write(pki_dir.join("sa.key"), &sa.private_pem).expect("sa.key");
    std::fs::write(pki_dir.join("sa.pub"), &sa.public_pem).expect("sa.pub");
    let config = tmp.path().join("config.yaml");
    let mut text =
        std::fs::read_to_string(golden_dir().join("kubeadm-config.yaml")).expect("config");
    text.push_str(&format!("certificatesDir: {}\n", pki_dir.display()));
    std::fs::write(&config, text).expect("config");

    let out = std::process::Command::new(&kubeadm)
        .args(["init", "phase", "certs", "all", "--config"])
        .arg(&config)
        .output()
        .expect("runs kubeadm");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kubeadm failed ({algorithm:?}):\n{stdout}\n{stderr}"
    );
    assert!(
        !stdout.contains("Generating"),
        "kubeadm regenerated files ({algorithm:?}):\n{stdout}"
    );
    for (spec, issued) in &ours {
        // kubeadm: app/cmd/phases/init/certs.go, runCAPhase / runCertPhase.
        let line = if spec.is_ca() {
            format!(
                "[certs] Using existing {} certificate authority",
                spec.base_name
            )
        } else {
            format!(
                "[certs] Using existing {} certificate and key on disk",
                spec.base_name
            )
        };
        assert!(
            stdout.contains(&line),
            "missing {line:?} ({algorithm:?}):\n{stdout}\n{stderr}"
        );
        let after =
            std::fs::read_to_string(pki_dir.join(format!("{}.crt", spec.base_name))).expect("crt");
        assert_eq!(
            &after, &issued.cert_pem,
            "kubeadm rewrote {}",
            spec.base_name
        );
    }
    assert!(
        stdout.contains(r#"[certs] Using the existing "sa" key"#),
        "{stdout}"
    );
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn kubeadm_v1_20_2_accepts_our_ecdsa_pki() {
    kubeadm_accepts(KeyAlgorithm::EcdsaP256);
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn kubeadm_v1_20_2_accepts_our_rsa_pki() {
    kubeadm_accepts(KeyAlgorithm::Rsa2048);
}

/// The other direction: a PKI kubeadm v1.20.2 wrote (RSA, PKCS#1 keys) is reused by
/// `decide` as it is, and kubeboot issues from kubeadm's CA certificates that chain to it.
#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn kubeboot_reuses_and_extends_a_kubeadm_pki() {
    let kubeadm = kubeadm();
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki_dir = tmp.path().join("pki");
    let config = tmp.path().join("config.yaml");
    let mut text =
        std::fs::read_to_string(golden_dir().join("kubeadm-config.yaml")).expect("config");
    text.push_str(&format!("certificatesDir: {}\n", pki_dir.display()));
    std::fs::write(&config, text).expect("config");
    let out = std::process::Command::new(&kubeadm)
        .args(["init", "phase", "certs", "all", "--config"])
        .arg(&config)
        .output()
        .expect("runs kubeadm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let read = |base: &str, ext: &str| {
        std::fs::read_to_string(pki_dir.join(format!("{base}.{ext}"))).expect("file")
    };
    let inputs = inputs(KeyAlgorithm::EcdsaP256);
    let now = SystemTime::now();
    for spec in CERTS {
        let ca_pem = spec.ca_spec().map(|ca| read(ca.base_name, "crt"));
        let decision = pki::decide(
            spec,
            &inputs,
            Some(&read(spec.base_name, "crt")),
            Some(&read(spec.base_name, "key")),
            ca_pem.as_deref(),
            now,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", spec.name));
        assert_eq!(decision, pki::Decision::Reuse, "{}", spec.name);
    }
    assert_eq!(
        pki::decide_sa(Some(&read("sa", "key")), Some(&read("sa", "pub"))).expect("sa"),
        pki::Decision::Reuse
    );

    // A user-provided (here kubeadm-made) CA is used to sign kubeboot's certificates.
    let spec = pki::cert_spec("apiserver").expect("spec");
    let ca = Issuer {
        cert_pem: read("ca", "crt"),
        key_pem: read("ca", "key"),
    };
    let ours = issue(spec, &inputs, Some(&ca), now).expect("issues from kubeadm's CA");
    let decision = pki::decide(
        spec,
        &inputs,
        Some(&ours.cert_pem),
        Some(&ours.key_pem),
        Some(&ca.cert_pem),
        now,
    )
    .expect("fits");
    assert_eq!(decision, pki::Decision::Reuse);
    let (_, ca_pem) = x509_parser::pem::parse_x509_pem(ca.cert_pem.as_bytes()).expect("pem");
    let (_, ca_cert) = X509Certificate::from_der(&ca_pem.contents).expect("ca");
    let (_, leaf_pem) = x509_parser::pem::parse_x509_pem(ours.cert_pem.as_bytes()).expect("pem");
    let (_, leaf) = X509Certificate::from_der(&leaf_pem.contents).expect("leaf");
    assert_eq!(
        leaf.issuer().as_raw(),
        ca_cert.subject().as_raw(),
        "issuer DN bytes as kubeadm's CA"
    );
    assert_eq!(leaf.validity().not_before, ca_cert.validity().not_before);
    // And kubeadm accepts the certificate kubeboot put beside its CA.
    std::fs::write(pki_dir.join("apiserver.crt"), &ours.cert_pem).expect("crt");
    std::fs::write(pki_dir.join("apiserver.key"), &ours.key_pem).expect("key");
    let out = std::process::Command::new(&kubeadm)
        .args(["init", "phase", "certs", "apiserver", "--config"])
        .arg(&config)
        .output()
        .expect("runs kubeadm");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("[certs] Using existing apiserver certificate and key on disk"),
        "{stdout}"
    );
}
