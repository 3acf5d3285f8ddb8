//! `--dry-run` output: what would have been written, shown from the scratch directory.

use agent::host::fs::Fs;

use crate::out::Out;

/// Prints every file a dry run wrote: its node path and, unless it holds a secret, its content.
///
/// # Errors
/// A scratch file that cannot be read back.
pub fn print_written(out: &Out, fs: &Fs) -> anyhow::Result<()> {
    let Some(root) = fs.scratch_root() else {
        return Ok(());
    };
    out.say(
        "dryrun",
        &format!("Wrote certificates, kubeconfig files and control plane manifests to the {:?} directory", root.display().to_string()),
    );
    // A file written more than once (the node record grows as init goes) is shown once,
    // with its final content.
    let mut shown = std::collections::BTreeSet::new();
    for path in fs.written() {
        if !shown.insert(path.clone()) {
            continue;
        }
        let name = path.display().to_string();
        let content = fs.read_string_if_exists(&path)?.unwrap_or_default();
        if is_secret(&content) {
            out.say(
                "dryrun",
                &format!("Would write file {name:?} (private key material, not shown)"),
            );
            continue;
        }
        out.say(
            "dryrun",
            &format!("Would write file {name:?} with content:"),
        );
        for line in content.lines() {
            out.line(&format!("\t{line}"));
        }
    }
    Ok(())
}

/// Private keys and kubeconfigs that embed one are not printed.
fn is_secret(content: &str) -> bool {
    content.contains("PRIVATE KEY") || content.contains("client-key-data")
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_recognised_by_content() {
        assert!(super::is_secret("-----BEGIN EC PRIVATE KEY-----\n"));
        assert!(super::is_secret(
            "users:\n- user:\n    client-key-data: abc\n"
        ));
        assert!(!super::is_secret(
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
        ));
        assert!(!super::is_secret("-----BEGIN CERTIFICATE-----\n"));
    }
}
