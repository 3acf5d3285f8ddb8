//! The kubelet's client certificate store (`/var/lib/kubelet/pki`), as the kubelet's own
//! rotation keeps it (client-go certificate_store.go): `join` fills it with the certificate its
//! TLS bootstrap got, `init` with kubelet.conf's own pair.

use anyhow::Context;

use crate::shared::node::NodeCtx;

/// The kubelet's client certificate and key, one PEM file (the kubelet's certificate store).
pub const KUBELET_CLIENT_CURRENT: &str = "pki/kubelet-client-current.pem";

/// Puts `cert_pem` and `key_pem` into the kubelet's client certificate store as its
/// certificate store keeps them (client-go certificate_store.go): the pair in
/// `/var/lib/kubelet/pki/kubelet-client-<time>.pem`, and `kubelet-client-current.pem` a
/// symlink to it, which the kubelet's rotation repoints. Returns the symlink's path.
///
/// # Errors
/// A file cannot be written.
pub fn write_client_store(
    node: &NodeCtx,
    cert_pem: &str,
    key_pem: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let pem_path = node.layout.kubelet_dir().join(KUBELET_CLIENT_CURRENT);
    let Some(dir) = pem_path.parent() else {
        anyhow::bail!("{:?} has no directory", pem_path.display().to_string());
    };
    crate::node_record::create_dir(&node.fs, &node.layout, dir, 0o755)?;
    let stamped = format!("kubelet-client-{}.pem", store_timestamp(node.now));
    let cert = cert_pem.trim_end();
    node.fs
        .write_private(&dir.join(&stamped), format!("{cert}\n{key_pem}").as_bytes())
        .context("could not write the kubelet's client certificate")?;
    node.fs.symlink(std::path::Path::new(&stamped), &pem_path)?;
    Ok(pem_path)
}

/// `2006-01-02-15-04-05` in UTC, the kubelet certificate store's file name stamp.
fn store_timestamp(now: std::time::SystemTime) -> String {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}-{:02}-{:02}-{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_store_stamp_is_the_kubelets_utc_layout() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_764_763_445);
        assert_eq!(store_timestamp(t), "2025-12-03-12-04-05");
        assert_eq!(
            store_timestamp(std::time::UNIX_EPOCH),
            "1970-01-01-00-00-00"
        );
        let leap = std::time::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(store_timestamp(leap), "2000-02-29-00-00-00");
    }
}
