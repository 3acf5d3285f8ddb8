//! `certs check-expiration` and `certs renew`: which certificates a node's PKI holds, as
//! kubeadm's renewal manager lists them (kubeadm: app/phases/certs/renewal/manager.go,
//! NewManager), plus kubeboot's own, and the expiry report kubeadm prints about them
//! (kubeadm: app/cmd/alpha/certs.go, newCmdCertsExpiration; its `-o json` form from later
//! kubeadm's `output.kubeadm.k8s.io/v1alpha2` CertificateExpirationInfo).

use std::time::SystemTime;

use components::names;
use serde::Serialize;
use time::OffsetDateTime;

use crate::PkiError;
use crate::certs::{CertSpec, KUBEBOOT_AGENT_WEBHOOK_CERT, cert_spec, certs_for};
use crate::kubeconfig::{KUBEBOOT_AGENT_KUBECONFIG, KubeconfigSpec, kubeconfig_spec};
use crate::verify::parse_cert;

/// Where a renewable certificate lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `<cert dir>/<base>.crt` and `.key`.
    CertDir(&'static CertSpec),
    /// kubeboot's agent webhook serving pair in the agent's own directory.
    AgentDir(&'static CertSpec),
    /// The client certificate embedded in a kubeconfig file in `/etc/kubernetes`.
    Kubeconfig(&'static KubeconfigSpec),
}

/// One certificate `certs renew <name>` renews and `check-expiration` lists (kubeadm:
/// renewal.CertificateRenewHandler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewTarget {
    /// The name users type: the phase name (`apiserver`) or the kubeconfig file name
    /// (`admin.conf`), as kubeadm names them.
    pub name: &'static str,
    /// kubeadm's long name, used in `<long name> renewed`.
    pub long_name: &'static str,
    /// The CA that signs it.
    pub ca: &'static CertSpec,
    /// Where it is.
    pub source: Source,
    /// kubeboot's own (no kubeadm equivalent): listed by `check-expiration` only when it
    /// exists, since a PKI made by kubeadm (or a node without the agent) has none.
    pub kubeboot_own: bool,
}

impl RenewTarget {
    /// The CERTIFICATE AUTHORITY column of kubeadm 1.20's table: the CA for PKI
    /// certificates, empty for kubeconfig certificates (kubeadm 1.20's manager sets no
    /// CAName for them; the JSON form names the CA anyway).
    pub fn table_ca(&self) -> &'static str {
        match self.source {
            Source::Kubeconfig(_) => "",
            _ => self.ca.name,
        }
    }
}

/// kubeadm's kubeconfig files whose client certificates it renews, with its long names;
/// kubelet.conf is not one (the kubelet rotates its own, manager.go says so).
const KUBEADM_KUBECONFIGS: &[(&str, &str)] = &[
    (
        "admin",
        "certificate embedded in the kubeconfig file for the admin to use and for kubeadm itself",
    ),
    (
        "controller-manager",
        "certificate embedded in the kubeconfig file for the controller manager to use",
    ),
    (
        "scheduler",
        "certificate embedded in the kubeconfig file for the scheduler manager to use",
    ),
];

/// Every certificate renewable on a control-plane node, sorted by name as kubeadm sorts
/// them: kubeadm's (the leaves of [`certs_for`] and admin, controller-manager and scheduler
/// kubeconfigs) and kubeboot's own (`kubeboot-agent-webhook`, `kubeboot-agent.conf`). CAs
/// are never renewed (kubeadm: "this would cause serious consequences").
pub fn renew_targets(local_etcd: bool) -> Vec<RenewTarget> {
    let ca = cert_spec("ca").expect("the table has the cluster CA");
    let mut out: Vec<RenewTarget> = certs_for(local_etcd)
        .filter(|s| !s.is_ca())
        .map(|s| RenewTarget {
            name: s.name,
            long_name: s.long_name,
            ca: s.ca_spec().expect("a leaf has a CA"),
            source: Source::CertDir(s),
            kubeboot_own: false,
        })
        .collect();
    for (phase, long_name) in KUBEADM_KUBECONFIGS {
        let spec = kubeconfig_spec(phase).expect("kubeadm's kubeconfigs are in the table");
        out.push(RenewTarget {
            name: spec.file_name,
            long_name,
            ca,
            source: Source::Kubeconfig(spec),
            kubeboot_own: false,
        });
    }
    out.push(RenewTarget {
        name: KUBEBOOT_AGENT_WEBHOOK_CERT.name,
        long_name: KUBEBOOT_AGENT_WEBHOOK_CERT.long_name,
        ca,
        source: Source::AgentDir(&KUBEBOOT_AGENT_WEBHOOK_CERT),
        kubeboot_own: true,
    });
    out.push(RenewTarget {
        name: names::KUBEBOOT_AGENT_KUBECONFIG,
        long_name: "certificate embedded in the kubeconfig file for the kubeboot agent to use",
        ca,
        source: Source::Kubeconfig(&KUBEBOOT_AGENT_KUBECONFIG),
        kubeboot_own: true,
    });
    out.sort_by_key(|t| t.name);
    out
}

/// The CAs of the cluster, sorted by name (kubeadm: Manager.CAs).
pub fn ca_specs(local_etcd: bool) -> Vec<&'static CertSpec> {
    let mut cas: Vec<_> = certs_for(local_etcd).filter(|s| s.is_ca()).collect();
    cas.sort_by_key(|s| s.name);
    cas
}

/// What is on the node about one CA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaPresence {
    /// The CA certificate file exists.
    pub cert: bool,
    /// The CA key file exists.
    pub key: bool,
}

/// Whether a CA is externally managed: its certificate without its key (kubeadm:
/// Manager.IsExternallyManaged; kubeadm 1.20 never calls the etcd CA external).
pub fn externally_managed(ca: &CertSpec, presence: CaPresence) -> bool {
    ca.name != "etcd-ca" && presence.cert && !presence.key
}

/// `output.kubeadm.k8s.io/v1alpha2` `CertificateExpirationInfo`: what `check-expiration
/// -o json|yaml` prints, with kubeadm's field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpirationInfo {
    /// `CertificateExpirationInfo`.
    pub kind: String,
    /// `output.kubeadm.k8s.io/v1alpha2`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// The certificates, sorted by name.
    pub certificates: Vec<CertExpiry>,
    /// The CAs, sorted by name.
    #[serde(rename = "certificateAuthorities")]
    pub certificate_authorities: Vec<CertExpiry>,
}

/// One row (kubeadm: output v1alpha2 Certificate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertExpiry {
    /// The name (`apiserver`, `admin.conf`, `ca`).
    pub name: String,
    /// NotAfter, RFC 3339 in UTC; `null` when missing.
    #[serde(rename = "expirationDate")]
    pub expiration_date: Option<String>,
    /// Seconds until NotAfter (negative once expired); 0 when missing.
    #[serde(rename = "residualTime")]
    pub residual_time: i64,
    /// The signing CA; absent for CAs.
    #[serde(rename = "caName", skip_serializing_if = "Option::is_none")]
    pub ca_name: Option<String>,
    /// The CA key is not on the node: kubeboot cannot renew it.
    #[serde(rename = "externallyManaged")]
    pub externally_managed: bool,
    /// The file is not there.
    pub missing: bool,
    /// The table's CERTIFICATE AUTHORITY column (see [`RenewTarget::table_ca`]).
    #[serde(skip)]
    pub table_ca: String,
    /// NotAfter as kubeadm's table prints it, `Jan 02, 2006 15:04 UTC`.
    #[serde(skip)]
    pub expires: String,
    /// The RESIDUAL TIME column ([`short_human_duration`]).
    #[serde(skip)]
    pub residual: String,
}

/// One certificate as observed: its target and, when present, the PEM of the certificate
/// (for kubeconfigs, the embedded client certificate, see
/// [`crate::Kubeconfig::client_certificate_pem`]).
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a, T> {
    /// What it is.
    pub what: T,
    /// The certificate PEM, `None` when the file does not exist.
    pub cert_pem: Option<&'a str>,
}

/// Builds the report from what the node holds.
///
/// Missing kubeboot-own certificates are left out; missing kubeadm ones are listed as
/// missing, as kubeadm's `!MISSING!` rows.
///
/// # Errors
/// [`PkiError::ParseCert`] naming the certificate that does not parse.
pub fn expiration_info(
    certs: &[Observed<'_, RenewTarget>],
    cas: &[(Observed<'_, &'static CertSpec>, CaPresence)],
    now: SystemTime,
) -> Result<ExpirationInfo, PkiError> {
    let ca_presence = |ca: &CertSpec| {
        cas.iter()
            .find(|(o, _)| o.what.name == ca.name)
            .map(|(_, p)| *p)
            .unwrap_or_default()
    };
    let mut certificates = Vec::new();
    for o in certs {
        let t = o.what;
        if o.cert_pem.is_none() && t.kubeboot_own {
            continue;
        }
        certificates.push(row(
            t.name,
            o.cert_pem,
            Some(t.ca.name),
            t.table_ca(),
            externally_managed(t.ca, ca_presence(t.ca)),
            now,
        )?);
    }
    let mut certificate_authorities = Vec::new();
    for (o, presence) in cas {
        certificate_authorities.push(row(
            o.what.name,
            o.cert_pem,
            None,
            "",
            externally_managed(o.what, *presence),
            now,
        )?);
    }
    Ok(ExpirationInfo {
        kind: "CertificateExpirationInfo".to_string(),
        api_version: "output.kubeadm.k8s.io/v1alpha2".to_string(),
        certificates,
        certificate_authorities,
    })
}

fn row(
    name: &str,
    cert_pem: Option<&str>,
    ca_name: Option<&str>,
    table_ca: &str,
    externally_managed: bool,
    now: SystemTime,
) -> Result<CertExpiry, PkiError> {
    let mut r = CertExpiry {
        name: name.to_string(),
        expiration_date: None,
        residual_time: 0,
        ca_name: ca_name.map(str::to_string),
        externally_managed,
        missing: cert_pem.is_none(),
        table_ca: table_ca.to_string(),
        expires: String::new(),
        residual: String::new(),
    };
    if let Some(pem) = cert_pem {
        let cert = parse_cert(pem, &format!("certificate {name:?}"))?;
        let not_after = cert.not_after;
        let residual = not_after - OffsetDateTime::from(now);
        r.expiration_date = Some(
            not_after
                .format(&time::format_description::well_known::Rfc3339)
                .expect("a certificate's time formats as RFC 3339"),
        );
        r.residual_time = residual.whole_seconds();
        r.expires = table_date(not_after);
        r.residual = short_human_duration(residual.whole_seconds());
    }
    Ok(r)
}

/// Go's `Jan 02, 2006 15:04 MST` for a UTC time, as kubeadm prints NotAfter.
fn table_date(t: OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[month repr:short] [day], [year] [hour]:[minute] UTC");
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .expect("a certificate's time formats")
}

/// A duration in seconds the way apimachinery's `duration.ShortHumanDuration` prints it:
/// `<invalid>` below -1 s, then `0s`, `59s`, `59m`, `23h`, `364d`, `9y`, each truncated.
pub fn short_human_duration(seconds: i64) -> String {
    match seconds {
        s if s < -1 => "<invalid>".to_string(),
        s if s < 0 => "0s".to_string(),
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s if s / 3600 < 24 * 365 => format!("{}d", s / 3600 / 24),
        s => format!("{}y", s / (3600 * 24 * 365)),
    }
}

/// kubeadm 1.20's two tables (certs.go: a text/tabwriter with minwidth 10, padding 3),
/// each aligned on its own (the blank line between them ends Go's column block).
pub fn table(info: &ExpirationInfo) -> String {
    let certs = rows(
        &[
            "CERTIFICATE",
            "EXPIRES",
            "RESIDUAL TIME",
            "CERTIFICATE AUTHORITY",
            "EXTERNALLY MANAGED",
        ],
        &info.certificates,
        true,
    );
    let cas = rows(
        &[
            "CERTIFICATE AUTHORITY",
            "EXPIRES",
            "RESIDUAL TIME",
            "EXTERNALLY MANAGED",
        ],
        &info.certificate_authorities,
        false,
    );
    format!("{}\n{}", tabulate(&certs), tabulate(&cas))
}

/// One table's cells: a present row is name, expiry, residual time, (CA,) `%-8v` yes/no; a
/// missing one `!MISSING! <name>` and empty cells.
fn rows(header: &[&str], entries: &[CertExpiry], with_ca: bool) -> Vec<Vec<String>> {
    let mut out = vec![header.iter().map(|c| c.to_string()).collect::<Vec<_>>()];
    for c in entries {
        let mut row = if c.missing {
            vec![format!("!MISSING! {}", c.name)]
        } else {
            vec![c.name.clone(), c.expires.clone(), c.residual.clone()]
        };
        if c.missing {
            row.resize(header.len(), String::new());
        } else {
            if with_ca {
                row.push(c.table_ca.clone());
            }
            let yes_no = if c.externally_managed { "yes" } else { "no" };
            row.push(format!("{yes_no:<8}"));
        }
        out.push(row);
    }
    out
}

/// Go's text/tabwriter (minwidth 10, tabwidth 4, padding 3, padchar ' ', no flags) for rows
/// that all have the same number of cells: every cell but the last of a row is a column,
/// padded to the widest cell of its column plus 3 (at least 10); the last is written as is.
fn tabulate(rows: &[Vec<String>]) -> String {
    let columns = rows
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .saturating_sub(1);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count() + 3)
                .max()
                .unwrap_or(0)
                .max(10)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            if i < columns {
                out.push_str(&format!("{cell:<width$}", width = widths[i]));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::certs::tests::inputs;
    use crate::issue::issue;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn short_human_duration_follows_apimachinery() {
        let cases: &[(i64, &str)] = &[
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (3599, "59m"),
            (3600, "1h"),
            (86_399, "23h"),
            (86_400, "1d"),
            (365 * 86_400 - 1, "364d"),
            (365 * 86_400, "1y"),
            (3650 * 86_400 - 60, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(short_human_duration(*secs), *want, "{secs}");
        }
    }

    #[test]
    fn targets_are_kubeadms_sorted_plus_kubeboots_own() {
        let names: Vec<&str> = renew_targets(true).iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            [
                "admin.conf",
                "apiserver",
                "apiserver-etcd-client",
                "apiserver-kubelet-client",
                "controller-manager.conf",
                "etcd-healthcheck-client",
                "etcd-peer",
                "etcd-server",
                "front-proxy-client",
                "kubeboot-agent-webhook",
                "kubeboot-agent.conf",
                "scheduler.conf",
            ]
        );
        let external: Vec<&str> = renew_targets(false).iter().map(|t| t.name).collect();
        assert!(
            !external
                .iter()
                .any(|n| n.starts_with("etcd") || n.contains("etcd-client"))
        );
        let cas: Vec<&str> = ca_specs(true).iter().map(|s| s.name).collect();
        assert_eq!(cas, ["ca", "etcd-ca", "front-proxy-ca"]);
        assert_eq!(ca_specs(false).len(), 2);
    }

    #[test]
    fn report_and_table_as_kubeadm_prints_them() {
        let ca = issue(cert_spec("ca").expect("ca"), &inputs(), None, now()).expect("ca");
        let fp = issue(
            cert_spec("front-proxy-ca").expect("fp"),
            &inputs(),
            None,
            now(),
        )
        .expect("fp");
        let leaf = issue(
            cert_spec("apiserver").expect("s"),
            &inputs(),
            Some(&ca.clone().into()),
            now(),
        )
        .expect("leaf");
        let targets = renew_targets(false);
        let observed: Vec<Observed<'_, RenewTarget>> = targets
            .iter()
            .map(|t| Observed {
                what: *t,
                cert_pem: match t.name {
                    "apiserver" | "admin.conf" | "front-proxy-client" => {
                        Some(leaf.cert_pem.as_str())
                    }
                    _ => None,
                },
            })
            .collect();
        let cas: Vec<_> = ca_specs(false)
            .into_iter()
            .map(|s| {
                let pem = if s.name == "ca" {
                    &ca.cert_pem
                } else {
                    &fp.cert_pem
                };
                let presence = CaPresence {
                    cert: true,
                    key: s.name == "ca",
                };
                (
                    Observed {
                        what: s,
                        cert_pem: Some(pem.as_str()),
                    },
                    presence,
                )
            })
            .collect();
        // An hour later: 365 days minus an hour left.
        let info =
            expiration_info(&observed, &cas, now() + Duration::from_secs(3600)).expect("report");
        let names: Vec<&str> = info.certificates.iter().map(|c| c.name.as_str()).collect();
        // kubeboot's own are left out when missing; kubeadm's are listed as missing.
        assert_eq!(
            names,
            [
                "admin.conf",
                "apiserver",
                "apiserver-kubelet-client",
                "controller-manager.conf",
                "front-proxy-client",
                "scheduler.conf"
            ]
        );
        let api = &info.certificates[1];
        assert_eq!(api.residual_time, 365 * 86_400 - 3600);
        assert_eq!(api.expiration_date.as_deref(), Some("2024-11-13T22:13:20Z"));
        let text = table(&info);
        let expected = "\
CERTIFICATE                          EXPIRES                  RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY MANAGED
admin.conf                           Nov 13, 2024 22:13 UTC   364d                                    no      
apiserver                            Nov 13, 2024 22:13 UTC   364d            ca                      no      
!MISSING! apiserver-kubelet-client                                                                    
!MISSING! controller-manager.conf                                                                     
front-proxy-client                   Nov 13, 2024 22:13 UTC   364d            front-proxy-ca          yes     
!MISSING! scheduler.conf                                                                              

CERTIFICATE AUTHORITY   EXPIRES                  RESIDUAL TIME   EXTERNALLY MANAGED
ca                      Nov 11, 2033 22:13 UTC   9y              no      
front-proxy-ca          Nov 11, 2033 22:13 UTC   9y              yes     
";
        assert_eq!(text, expected, "\n{text}");
        // kubeadm's field names (through the YAML serializer pki already has).
        let yaml = yaml_serde::to_string(&info).expect("serializes");
        for field in [
            "kind: CertificateExpirationInfo",
            "apiVersion: output.kubeadm.k8s.io/v1alpha2",
            "certificateAuthorities:",
            "expirationDate: null",
            "residualTime:",
            "externallyManaged:",
            "missing: true",
        ] {
            assert!(yaml.contains(field), "{field} in\n{yaml}");
        }
        assert!(yaml.contains("caName: front-proxy-ca"), "{yaml}");
        assert!(
            !yaml.contains("table_ca") && !yaml.contains("expires:"),
            "{yaml}"
        );
    }
}
