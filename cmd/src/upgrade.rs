//! `kubeboot upgrade` (kubeadm 1.20: cmd/upgrade/upgrade.go, plan.go, diff.go, apply.go,
//! node.go): `plan`, `diff`, `apply` and `node`. A new version is new binaries on disk
//! (`--bin-dir`), never a download.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Args, Subcommand, ValueEnum};
use components::Layout;
use phases::out::Out;
use phases::upgrade::{self, Inputs, plan::Request};

/// `kubeboot upgrade`: upgrade your cluster smoothly to a newer version with this command.
#[derive(Args, Debug, Clone)]
pub struct UpgradeArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: UpgradeCommands,
}

/// `kubeboot upgrade` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum UpgradeCommands {
    /// Check which versions are available to upgrade to and validate whether your current cluster is upgradeable.
    ///
    /// The versions available are those of the binaries on disk (--bin-dir); pass [version]
    /// to plan for a specific one.
    Plan(PlanArgs),
    /// Show what differences would be applied to existing static pod manifests. See also: kubeboot upgrade apply --dry-run
    Diff(DiffArgs),
    /// Upgrade your Kubernetes cluster to the specified version.
    ///
    /// On the first control-plane node. Each component is waited for; if one does not become
    /// healthy in time, the node is rolled back to its previous version.
    Apply(ApplyArgs),
    /// Upgrade commands for a node in the cluster.
    ///
    /// On every other node (control-plane nodes first, then workers), to the version
    /// "kubeboot upgrade apply" uploaded.
    Node(NodeArgs),
}

/// Flags `apply` and `node` share.
#[derive(Args, Debug, Clone)]
pub struct ChangeArgs {
    /// Do not change any state, just output the actions that would be performed.
    #[arg(long)]
    pub dry_run: bool,
    /// Perform the upgrade of etcd.
    #[arg(long, value_name = "bool", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub etcd_upgrade: bool,
    /// Perform the renewal of certificates used by component changed during upgrades.
    #[arg(long, value_name = "bool", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub certificate_renewal: bool,
    /// How long each component may take to become healthy before the node is rolled back (kubeadm v1beta4: timeouts.upgradeManifests).
    #[arg(long, value_name = "duration", default_value = "5m", value_parser = duration_arg)]
    pub timeout: std::time::Duration,
}

/// `kubeboot upgrade apply [version]`.
#[derive(Args, Debug, Clone)]
pub struct ApplyArgs {
    /// The version to upgrade to.
    pub version: Option<String>,
    /// The flags both commands take.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The flags that change the node.
    #[command(flatten)]
    pub change: ChangeArgs,
    /// Show unstable versions of Kubernetes as an upgrade alternative and allow upgrading to an alpha/beta/release candidate versions of Kubernetes.
    #[arg(long)]
    pub allow_experimental_upgrades: bool,
    /// Show release candidate versions of Kubernetes as an upgrade alternative and allow upgrading to a release candidate versions of Kubernetes.
    #[arg(long)]
    pub allow_release_candidate_upgrades: bool,
    /// Perform the upgrade and do not prompt for confirmation (non-interactive mode).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Force upgrading although some requirements might not be met. This also implies non-interactive mode.
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `kubeboot upgrade node`.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// The flags both commands take.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The flags that change the node.
    #[command(flatten)]
    pub change: ChangeArgs,
    /// Cordon and drain the node before the upgrade, uncordon it after (what kubeadm's docs say to do by hand).
    #[arg(long)]
    pub drain: bool,
}

/// Flags `plan` and `diff` share.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// The kubeconfig file to use when talking to the cluster. If the flag is not set, a set of standard locations can be searched for an existing kubeconfig file.
    #[arg(
        long,
        value_name = "string",
        default_value = "/etc/kubernetes/admin.conf"
    )]
    pub kubeconfig: PathBuf,
    /// Path to a kubeadm configuration file.
    #[arg(long, value_name = "string")]
    pub config: Option<PathBuf>,
    /// A directory holding the binaries of the version to upgrade to (kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubelet; etcd optional); repeat it to search several, in order. Default: the directories init or join ran with.
    #[arg(long = "bin-dir", value_name = "dir")]
    pub bin_dirs: Vec<PathBuf>,
}

/// `kubeboot upgrade plan [version]`.
#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// The version to plan for (default: the version of the kube-apiserver binary in --bin-dir).
    pub version: Option<String>,
    /// The flags both commands take.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Show unstable versions of Kubernetes as an upgrade alternative and allow upgrading to an alpha/beta/release candidate versions of Kubernetes.
    #[arg(long)]
    pub allow_experimental_upgrades: bool,
    /// Show release candidate versions of Kubernetes as an upgrade alternative and allow upgrading to a release candidate versions of Kubernetes.
    #[arg(long)]
    pub allow_release_candidate_upgrades: bool,
    /// Output format: text or json.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = PlanFormat::Text)]
    pub output: PlanFormat,
}

/// `upgrade plan -o`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFormat {
    /// kubeadm's tables.
    Text,
    /// `{"observed": ..., "plan": ...}`.
    Json,
}

/// `kubeboot upgrade diff [version]`.
#[derive(Args, Debug, Clone)]
pub struct DiffArgs {
    /// The version to diff against (default: the version of the kube-apiserver binary in --bin-dir).
    pub version: Option<String>,
    /// The flags both commands take.
    #[command(flatten)]
    pub common: CommonArgs,
    /// How many lines of context in the diff
    #[arg(
        short = 'c',
        long = "context-lines",
        value_name = "int",
        default_value_t = 3
    )]
    pub context_lines: usize,
}

/// Runs `kubeboot upgrade ...`.
pub fn run(args: UpgradeArgs) -> anyhow::Result<()> {
    let out = Out::stdout();
    match args.command {
        UpgradeCommands::Plan(p) => run_plan(&out, p),
        UpgradeCommands::Diff(d) => run_diff(&out, d),
        UpgradeCommands::Apply(a) => run_apply(&out, a),
        UpgradeCommands::Node(n) => run_node(&out, n),
    }
}

fn version_arg(v: Option<&str>) -> anyhow::Result<Option<components::Version>> {
    v.map(|s| {
        s.parse().map_err(|e: components::version::InvalidVersion| {
            anyhow::anyhow!("{e}; give the version to upgrade to, such as v1.20.3")
        })
    })
    .transpose()
}

fn inputs(common: CommonArgs, request: Request) -> Inputs {
    Inputs {
        layout: Layout::host(),
        fs: agent::host::fs::Fs::real(),
        kubeconfig: common.kubeconfig,
        config: common.config,
        bin_dirs: common.bin_dirs,
        request,
        now: SystemTime::now(),
    }
}

fn run_plan(out: &Out, p: PlanArgs) -> anyhow::Result<()> {
    let request = Request {
        version: version_arg(p.version.as_deref())?,
        allow_experimental: p.allow_experimental_upgrades,
        allow_release_candidate: p.allow_release_candidate_upgrades,
    };
    let asked = request.version.is_some();
    let gave_bin_dir = !p.common.bin_dirs.is_empty();
    let inputs = inputs(p.common, request);
    // JSON goes alone on stdout: the progress lines are for people.
    let progress = match p.output {
        PlanFormat::Text => out.clone(),
        PlanFormat::Json => Out::capture(),
    };
    let (_view, observed, plan) = upgrade::plan(&inputs, &progress)?;
    match p.output {
        PlanFormat::Text => {
            for line in upgrade::plan::render(&plan).lines() {
                out.line(line);
            }
        }
        PlanFormat::Json => {
            let json = serde_json::json!({ "observed": observed, "plan": plan });
            out.line(&serde_json::to_string_pretty(&json)?);
        }
    }
    match upgrade::refusal(&plan, asked, gave_bin_dir) {
        Some(why) => Err(anyhow::anyhow!(why)),
        None => Ok(()),
    }
}

fn run_diff(out: &Out, d: DiffArgs) -> anyhow::Result<()> {
    let request = Request {
        version: version_arg(d.version.as_deref())?,
        // A diff shows what would change; the pre-release flags gate applying it.
        allow_experimental: true,
        allow_release_candidate: true,
    };
    let inputs = inputs(d.common, request);
    // Only the diff on stdout, as kubeadm's.
    let text = upgrade::diff(&inputs, d.context_lines, &Out::capture())?;
    for line in text.lines() {
        out.line(line);
    }
    Ok(())
}

fn duration_arg(text: &str) -> Result<std::time::Duration, String> {
    match components::config::duration::parse_go_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("it must be longer than 0s".into()),
        Err(e) => Err(format!("not a duration such as \"90s\" or \"5m\" ({e})")),
    }
}

/// kubeadm's `[upgrade/confirm]` prompt; refused without a terminal (CI, scripts: pass -y).
fn confirm(yes: bool) -> impl Fn(&str) -> anyhow::Result<bool> {
    move |question: &str| {
        use std::io::{BufRead, IsTerminal, Write};
        if yes {
            return Ok(true);
        }
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "kubeboot upgrade needs confirmation, but there is no terminal to ask on; pass -y (--yes) to upgrade without prompting"
            );
        }
        print!("[upgrade/confirm] {question} [y/N]: ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
    }
}

fn change_request(
    common: CommonArgs,
    change: ChangeArgs,
    request: Request,
    command: upgrade::apply::Command,
    (drain, force): (bool, bool),
) -> anyhow::Result<upgrade::apply::Request> {
    // A worker has no admin.conf: it upgrades with its kubelet's credentials, as kubeadm's.
    let mut common = common;
    if command == upgrade::apply::Command::Node
        && common.kubeconfig == std::path::Path::new("/etc/kubernetes/admin.conf")
        && !common.kubeconfig.exists()
    {
        common.kubeconfig = "/etc/kubernetes/kubelet.conf".into();
    }
    Ok(upgrade::apply::Request {
        inputs: inputs(common, request),
        command,
        dry_run: change.dry_run,
        etcd_upgrade: change.etcd_upgrade,
        certificate_renewal: change.certificate_renewal,
        force,
        drain,
        timeout: change.timeout,
        exe: std::env::current_exe()?,
    })
}

fn run_apply(out: &Out, a: ApplyArgs) -> anyhow::Result<()> {
    let request = Request {
        version: version_arg(a.version.as_deref())?,
        allow_experimental: a.allow_experimental_upgrades,
        allow_release_candidate: a.allow_release_candidate_upgrades,
    };
    anyhow::ensure!(
        request.version.is_some() || a.common.config.is_some(),
        "missing the version to upgrade to: kubeboot upgrade apply <version> (see kubeboot upgrade plan)"
    );
    let req = change_request(
        a.common,
        a.change,
        request,
        upgrade::apply::Command::Apply,
        (false, a.force),
    )?;
    upgrade::apply::run(&req, out, &confirm(a.yes || a.force))
}

fn run_node(out: &Out, n: NodeArgs) -> anyhow::Result<()> {
    let req = change_request(
        n.common,
        n.change,
        Request::default(),
        upgrade::apply::Command::Node,
        (n.drain, false),
    )?;
    upgrade::apply::run(&req, out, &confirm(true))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Commands};

    fn parse(args: &[&str]) -> UpgradeCommands {
        match Cli::try_parse_from(args).expect("parses").command {
            Commands::Upgrade(u) => u.command,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plan_flags_are_kubeadms_plus_bin_dir() {
        let UpgradeCommands::Plan(p) = parse(&[
            "kubeboot",
            "upgrade",
            "plan",
            "v1.20.3-test.0",
            "--bin-dir",
            "/a",
            "--bin-dir",
            "/b",
            "--allow-experimental-upgrades",
            "-o",
            "json",
        ]) else {
            panic!("not plan");
        };
        assert_eq!(p.version.as_deref(), Some("v1.20.3-test.0"));
        assert_eq!(
            p.common.bin_dirs,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert!(p.allow_experimental_upgrades && !p.allow_release_candidate_upgrades);
        assert_eq!(p.output, PlanFormat::Json);
        assert_eq!(
            p.common.kubeconfig,
            PathBuf::from("/etc/kubernetes/admin.conf")
        );
    }

    #[test]
    fn apply_and_node_take_kubeadms_flags_and_the_timeout() {
        let UpgradeCommands::Apply(a) = parse(&[
            "kubeboot",
            "upgrade",
            "apply",
            "v1.20.3-test.0",
            "-y",
            "--etcd-upgrade=false",
            "--certificate-renewal",
            "false",
            "--timeout",
            "90s",
            "--dry-run",
        ]) else {
            panic!("not apply");
        };
        assert!(a.yes && a.change.dry_run);
        assert!(!a.change.etcd_upgrade && !a.change.certificate_renewal);
        assert_eq!(a.change.timeout, std::time::Duration::from_secs(90));
        let UpgradeCommands::Node(n) = parse(&["kubeboot", "upgrade", "node", "--drain"]) else {
            panic!("not node");
        };
        assert!(n.drain && n.change.etcd_upgrade && n.change.certificate_renewal);
        assert_eq!(n.change.timeout, std::time::Duration::from_secs(300));
        let bad = Cli::try_parse_from(["kubeboot", "upgrade", "node", "--timeout", "soon"])
            .expect_err("refused");
        assert!(bad.to_string().contains("not a duration"), "{bad}");
    }

    #[test]
    fn apply_without_a_version_names_the_fix_and_reads_nothing() {
        let out = Out::capture();
        let err = run_apply(
            &out,
            ApplyArgs {
                version: None,
                common: CommonArgs {
                    kubeconfig: "/nonexistent/admin.conf".into(),
                    config: None,
                    bin_dirs: vec![],
                },
                change: ChangeArgs {
                    dry_run: false,
                    etcd_upgrade: true,
                    certificate_renewal: true,
                    timeout: std::time::Duration::from_secs(300),
                },
                allow_experimental_upgrades: false,
                allow_release_candidate_upgrades: false,
                yes: true,
                force: false,
            },
        )
        .expect_err("refused");
        assert!(
            err.to_string().contains("kubeboot upgrade apply <version>"),
            "{err}"
        );
        assert!(out.captured().is_empty());
    }

    #[test]
    fn diff_takes_context_lines() {
        let UpgradeCommands::Diff(d) =
            parse(&["kubeboot", "upgrade", "diff", "v1.21.0", "-c", "1"])
        else {
            panic!("not diff");
        };
        assert_eq!(
            (d.version.as_deref(), d.context_lines),
            (Some("v1.21.0"), 1)
        );
        let UpgradeCommands::Diff(d) = parse(&["kubeboot", "upgrade", "diff"]) else {
            panic!("not diff");
        };
        assert_eq!(d.context_lines, 3);
    }

    #[test]
    fn a_version_that_is_not_one_is_refused_before_anything_is_read() {
        let out = Out::capture();
        let err = run_plan(
            &out,
            PlanArgs {
                version: Some("latest".into()),
                common: CommonArgs {
                    kubeconfig: "/nonexistent/admin.conf".into(),
                    config: None,
                    bin_dirs: vec![],
                },
                allow_experimental_upgrades: false,
                allow_release_candidate_upgrades: false,
                output: PlanFormat::Text,
            },
        )
        .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "\"latest\" is not a valid version: expected vMAJOR.MINOR.PATCH, e.g. v1.20.2; give the version to upgrade to, such as v1.20.3"
        );
        assert!(out.captured().is_empty());
    }
}
