//! Scenario: `kubeboot init` runs only binaries that no one but root can replace (issue 8 §2).
//! A `--bin-dir` whose kube-apiserver belongs to another user, or that others can write, is
//! refused by the preflight with the fix, before anything runs it (not even `--version`), and
//! the node is left as it was: no manifests, no agent. A relative `--bin-dir` is reported as
//! the absolute directory it was resolved to. A `--bin-dir` others can write is refused
//! whatever it holds, by the preflight and by `kubeboot agent`; the advice never touches a
//! shared directory like /tmp.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use tests::{NODE_STATE, Node, assert_refused, bin_dir, kubeboot_exe, require_root, step};

/// A `--bin-dir` built from the real one: kube-apiserver a canary script that notes every
/// run in `ran` and then runs the real one (so it can be given away without touching the
/// real file, and a `--version` run would be seen), the other binaries symlinks into the
/// real directory. It lives in the build's temp directory, whose ancestors only root can
/// write.
struct Untrusted {
    dir: PathBuf,
    apiserver: PathBuf,
    ran: PathBuf,
}

impl Untrusted {
    fn new(node: &Node, real: &Path) -> Result<Untrusted> {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("trust-{}", node.name()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {dir:?}"))?;
        }
        std::fs::create_dir_all(&dir)?;
        // As kubeboot names it: the build directory may be reached through a symlink.
        let dir = dir.canonicalize()?;
        set_mode(&dir, 0o755)?;
        for entry in std::fs::read_dir(real)? {
            let entry = entry?;
            if entry.file_name() != "kube-apiserver" {
                std::os::unix::fs::symlink(entry.path(), dir.join(entry.file_name()))?;
            }
        }
        let apiserver = dir.join("kube-apiserver");
        let ran = dir.join(".ran");
        std::fs::write(
            &apiserver,
            format!(
                "#!/bin/sh\necho \"$@\" >> {}\nexec {} \"$@\"\n",
                ran.display(),
                real.join("kube-apiserver").display()
            ),
        )?;
        set_mode(&apiserver, 0o755)?;
        // Owned by nobody: whoever that user is could replace what init would run as root.
        std::os::unix::fs::chown(&apiserver, Some(65534), Some(65534))?;
        Ok(Untrusted {
            dir,
            apiserver,
            ran,
        })
    }
}

impl Drop for Untrusted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {p:?}"))
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn binary_trust() -> Result<()> {
    step("running as root", require_root)?;
    let real = step("real binaries present", bin_dir)?;
    let node = step("create node", || Node::allocate("bin-trust"))?;
    let empty = node.sh_ok(NODE_STATE)?;
    let bad = step("a --bin-dir whose kube-apiserver belongs to nobody", || {
        Untrusted::new(&node, &real)
    })?;
    let dir = bad.dir.to_string_lossy().to_string();
    let apiserver = bad.apiserver.display().to_string();
    let fix = format!("chown root:root {apiserver} && chmod go-w {apiserver}");
    let init = [
        "init",
        "--bin-dir",
        dir.as_str(),
        "--bin-dir",
        "/usr/bin",
        "--kubernetes-version",
        "v1.20.2",
    ];

    step("preflight refuses it with the fix", || {
        let out = node.kubeboot(&init)?;
        assert_refused(
            &node,
            "untrusted kube-apiserver",
            &out,
            &[
                "[ERROR ComponentBinary-kube-apiserver]",
                &format!("refusing to run \"{apiserver}\" as root"),
                "owned by uid 65534",
                &fix,
                "--ignore-preflight-errors",
            ],
            &empty,
        )?;
        // The other components come through symlinks into the real, trusted directory.
        ensure!(
            !out.stderr
                .contains("[ERROR ComponentBinary-kube-scheduler]"),
            "a trusted symlink was refused:\n{out}"
        );
        ensure!(
            !bad.ran.exists(),
            "the untrusted kube-apiserver ran:\n{out}"
        );
        Ok(())
    })?;

    step("it is not even run to detect the version", || {
        let out = node.kubeboot(&init[..5])?;
        assert_refused(
            &node,
            "version detection",
            &out,
            &[
                "kube-apiserver was not asked for its version: refusing to run",
                "owned by uid 65534",
                &fix,
            ],
            &empty,
        )?;
        ensure!(
            !bad.ran.exists(),
            "the untrusted kube-apiserver was run: {:?}",
            std::fs::read_to_string(&bad.ran)
        );
        Ok(())
    })?;

    step(
        "a relative --bin-dir is resolved once, to an absolute path",
        || {
            let exe = kubeboot_exe()?;
            let parent = bad.dir.parent().context("the bin dir has a parent")?;
            let name = bad.dir.file_name().context("the bin dir has a name")?;
            let out = node.sh(&format!(
                "cd {} && {} init --bin-dir ./{} --bin-dir /usr/bin --kubernetes-version v1.20.2",
                parent.display(),
                exe.display(),
                name.to_string_lossy()
            ))?;
            assert_refused(
                &node,
                "relative --bin-dir",
                &out,
                &[
                    "[ERROR ComponentBinary-kube-apiserver]",
                    &format!("refusing to run \"{apiserver}\" as root"),
                ],
                &empty,
            )
        },
    )?;

    step(
        "a --bin-dir (and a $PATH entry) others can write is refused",
        || {
            std::os::unix::fs::chown(&bad.apiserver, Some(0), Some(0))?;
            set_mode(&bad.dir, 0o777)?;
            // nsenter found first on $PATH through a symlink in that directory.
            let nsenter = node.sh_ok("command -v nsenter")?;
            std::os::unix::fs::symlink(nsenter.trim(), bad.dir.join("nsenter"))?;
            // And kubeboot itself run from there: the agent would run from it, and its shim.
            let exe = bad.dir.join("kubeboot");
            std::fs::copy(kubeboot_exe()?, &exe)?;
            let exe = exe.to_string_lossy();
            let path =
                format!("PATH={dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
            let mut argv = vec!["env", path.as_str(), exe.as_ref()];
            argv.extend(init);
            let out = node.exec(&argv)?;
            assert_refused(
                &node,
                "world-writable --bin-dir",
                &out,
                &[
                    &format!(
                        "[ERROR FileExisting-nsenter]: refusing to run \"{dir}/nsenter\" as root"
                    ),
                    &format!("[ERROR KubebootBinary]: refusing to run \"{exe}\" as root"),
                    "[ERROR ComponentBinary-kube-apiserver]",
                    &format!(
                        "\"{dir}\", on the way to it, is writable by group or others (owner uid 0, mode 0777)"
                    ),
                    &format!("chmod go-w {dir}"),
                    &format!(
                        "[ERROR BinDir-{}]: refusing --bin-dir \"{dir}\"",
                        dir.replace('/', "-")
                    ),
                ],
                &empty,
            )
        },
    )?;

    step(
        "kubeboot agent refuses that --bin-dir, whatever it holds",
        || {
            for entry in std::fs::read_dir(&bad.dir)? {
                std::fs::remove_file(entry?.path())?;
            }
            let out = node.exec_timeout(
                &[
                    kubeboot_exe()?.to_string_lossy().as_ref(),
                    "agent",
                    "--bin-dir",
                    &dir,
                ],
                std::time::Duration::from_secs(30),
            )?;
            assert_refused(
                &node,
                "empty world-writable --bin-dir for the agent",
                &out,
                &[&format!(
                    "refusing --bin-dir \"{dir}\", which goes first on the PATH of every component kubeboot runs as root: it is writable by group or others"
                )],
                &empty,
            )
        },
    )?;

    step("the advice never touches /tmp", || {
        let shared = tempfile::Builder::new().tempdir_in("/tmp")?;
        let shared_dir = shared.path().canonicalize()?;
        let shared_dir = shared_dir.to_string_lossy();
        let out = node.kubeboot(&[
            "init",
            "--bin-dir",
            &shared_dir,
            "--bin-dir",
            "/usr/bin",
            "--kubernetes-version",
            "v1.20.2",
        ])?;
        assert_refused(
            &node,
            "--bin-dir under /tmp",
            &out,
            &[
                &format!("[ERROR BinDir-{}]", shared_dir.replace('/', "-")),
                "fix: move the binaries to a root-owned directory no one else can write (e.g. /opt/kubeboot/bin) and pass --bin-dir",
            ],
            &empty,
        )?;
        ensure!(!out.stderr.contains("chmod go-w /tmp"), "{out}");
        Ok(())
    })?;
    Ok(())
}
