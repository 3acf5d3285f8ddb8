//! `kubeboot version [-o short|json|yaml]` (kubeadm: cmd/version.go).

use serde::Serialize;

use crate::cli::VersionArgs;

/// kubeboot's version, in the shape of kubeadm's `version.Info`.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    major: String,
    minor: String,
    git_version: String,
    compiler: String,
    platform: String,
}

/// The output of `version -o json|yaml`.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    client_version: Info,
}

/// This binary's version info.
pub fn info() -> Info {
    Info {
        major: env!("CARGO_PKG_VERSION_MAJOR").into(),
        minor: env!("CARGO_PKG_VERSION_MINOR").into(),
        git_version: format!("v{}", env!("CARGO_PKG_VERSION")),
        compiler: "rustc".into(),
        platform: format!("{}/{}", std::env::consts::OS, goarch()),
    }
}

fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Renders `version` in the requested format.
///
/// # Errors
/// An unknown `-o` value.
pub fn render(output: Option<&str>) -> anyhow::Result<String> {
    let i = info();
    Ok(match output {
        None | Some("") => format!(
            "kubeboot version: &version.Info{{Major:{:?}, Minor:{:?}, GitVersion:{:?}, Compiler:{:?}, Platform:{:?}}}\n",
            i.major, i.minor, i.git_version, i.compiler, i.platform
        ),
        Some("short") => format!("{}\n", i.git_version),
        Some("json") => format!(
            "{}\n",
            serde_json::to_string_pretty(&Output { client_version: i })?
        ),
        Some("yaml") => yaml_serde::to_string(&Output { client_version: i })?,
        Some(other) => {
            anyhow::bail!("invalid output format: {other}; use one of 'yaml', 'json' or 'short'")
        }
    })
}

/// Runs `version`.
pub fn run(args: VersionArgs) -> anyhow::Result<()> {
    print!("{}", render(args.output.as_deref())?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(
            render(Some("short")).unwrap(),
            format!("v{}\n", env!("CARGO_PKG_VERSION"))
        );
        let json: serde_json::Value = serde_json::from_str(&render(Some("json")).unwrap()).unwrap();
        assert_eq!(
            json["clientVersion"]["gitVersion"],
            format!("v{}", env!("CARGO_PKG_VERSION"))
        );
        let yaml: serde_json::Value = yaml_serde::from_str(&render(Some("yaml")).unwrap()).unwrap();
        assert_eq!(
            yaml["clientVersion"]["platform"],
            json["clientVersion"]["platform"]
        );
        assert!(
            render(None)
                .unwrap()
                .starts_with("kubeboot version: &version.Info{Major:")
        );
        assert!(
            render(Some("xml"))
                .unwrap_err()
                .to_string()
                .contains("invalid output format: xml")
        );
    }
}
