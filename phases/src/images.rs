//! Images for nodes without a registry: the archives of `/var/lib/kubeboot/images` (`*.tar`,
//! docker-archive as `docker save` writes it, or OCI image layout) are imported into the
//! node's containerd (namespace `k8s.io`, the CRI plugin's) with containerd's own `ctr`, and
//! the images a node needs are checked to be present (kubeadm's counterpart is the preflight
//! `ImagePull` check, which pulls from a registry).
//!
//! An archive whose images are all present already is not imported again, so a re-run costs
//! one listing.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

/// containerd's namespace for the CRI plugin's images (what the kubelet sees).
pub const CRI_NAMESPACE: &str = "k8s.io";

/// containerd's command-line client, talking to one socket.
#[derive(Debug, Clone)]
pub struct Ctr {
    exe: PathBuf,
    socket: String,
}

impl Ctr {
    /// The `ctr` found in `bin_dirs` for the containerd at `socket` (a node path).
    ///
    /// # Errors
    /// No `ctr` binary: names the directories searched and the package; an untrusted one
    /// (it runs as root).
    pub fn find(bin_dirs: &[PathBuf], socket: &str) -> anyhow::Result<Ctr> {
        let exe = crate::host::find_binary("ctr", bin_dirs)?.with_context(|| {
                let searched: Vec<String> =
                    bin_dirs.iter().map(|p| p.display().to_string()).collect();
                format!(
                    "containerd's client \"ctr\" is not installed (looked in {}); install containerd (Debian: containerd), which ships it",
                    searched.join(", ")
                )
            })?;
        Ok(Ctr {
            exe,
            socket: socket.to_string(),
        })
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args(["--address", &self.socket, "--namespace", CRI_NAMESPACE]);
        cmd
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command()
            .args(args)
            .output()
            .with_context(|| format!("could not run {}", self.exe.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "ctr {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The image references containerd holds in the CRI namespace.
    ///
    /// # Errors
    /// `ctr` fails (containerd not answering).
    pub fn images(&self) -> anyhow::Result<BTreeSet<String>> {
        Ok(self
            .run(&["images", "list", "--quiet"])?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("sha256:"))
            .map(str::to_string)
            .collect())
    }

    /// Imports one archive (unpacked for the default snapshotter, as the CRI plugin needs).
    ///
    /// # Errors
    /// `ctr` fails: the archive is not an image archive, or containerd does not answer.
    pub fn import(&self, archive: &Path) -> anyhow::Result<()> {
        self.run(&["images", "import", &archive.display().to_string()])
            .map(drop)
    }

    /// Waits up to `timeout` until containerd answers, calling `progress` every 10 s.
    ///
    /// # Errors
    /// containerd did not answer in time: with the last error.
    pub fn wait_ready(
        &self,
        timeout: Duration,
        mut progress: impl FnMut(Duration),
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut next_report = Duration::from_secs(10);
        loop {
            let err = match self.run(&["version"]) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            let elapsed = start.elapsed();
            if elapsed >= timeout {
                return Err(err.context(format!(
                    "containerd did not answer on {:?} within {}",
                    self.socket,
                    crate::health::human(timeout)
                )));
            }
            if elapsed >= next_report {
                progress(elapsed);
                next_report += Duration::from_secs(10);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The archives of `dir` (`*.tar`, by name); none when the directory does not exist.
///
/// # Errors
/// The directory exists but cannot be read.
pub fn archives(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", dir.display())),
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tar") && p.is_file())
        .collect();
    found.sort();
    Ok(found)
}

/// The most kubeboot reads of an archive's `manifest.json` or `index.json`: both list a few
/// images in a few kilobytes, and a size above this in a tar header is a damaged archive,
/// not something to allocate.
pub const MAX_INDEX_BYTES: u64 = 16 << 20;

/// The image references an archive names: `RepoTags` of a docker-archive's `manifest.json`,
/// or the `io.containerd.image.name` / `org.opencontainers.image.ref.name` annotations of an
/// OCI layout's `index.json`. Empty when it names none (or is not a tar).
///
/// # Errors
/// The file cannot be read, or its tar headers are damaged (see [`images_in_archive`]):
/// names the archive and the fix.
pub fn archive_images(path: &Path) -> anyhow::Result<Vec<String>> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    images_in_archive(&mut file).with_context(|| {
        format!(
            "could not read the image archive {:?}; remove it or replace it with a docker-archive or OCI archive",
            path.display().to_string()
        )
    })
}

/// [`archive_images`] of an archive's bytes: only tar headers and the two index members are
/// read, each bounded by [`MAX_INDEX_BYTES`].
///
/// # Errors
/// A read fails, an index member claims more than [`MAX_INDEX_BYTES`] or more than the
/// archive holds, or a header's size cannot be skipped.
pub fn images_in_archive<R: Read + Seek>(r: &mut R) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    for name in ["manifest.json", "index.json"] {
        if let Some(bytes) = tar_member(r, name)? {
            found.extend(image_names(name, &bytes));
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// The contents of the member `wanted` (at the archive's top level, `./` allowed) of an
/// uncompressed tar, reading only headers and that member.
fn tar_member<R: Read + Seek>(r: &mut R, wanted: &str) -> anyhow::Result<Option<Vec<u8>>> {
    const BLOCK: u64 = 512;
    r.seek(SeekFrom::Start(0))?;
    let mut header = [0u8; 512];
    loop {
        if r.read_exact(&mut header).is_err() || header.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        let name_end = header[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&header[..name_end]);
        let Some(size) = tar_size(&header[124..136]) else {
            return Ok(None); // not a tar
        };
        if name.trim_start_matches("./") == wanted && (header[156] == b'0' || header[156] == 0) {
            anyhow::ensure!(
                size <= MAX_INDEX_BYTES,
                "its {wanted} claims {size} bytes, more than the {} MiB an image index may have: the archive is damaged",
                MAX_INDEX_BYTES >> 20
            );
            let mut data = Vec::new();
            r.by_ref().take(size).read_to_end(&mut data)?;
            anyhow::ensure!(
                data.len() as u64 == size,
                "it ends inside its {wanted} ({} of {size} bytes): the archive is truncated",
                data.len()
            );
            return Ok(Some(data));
        }
        let skip = size
            .div_ceil(BLOCK)
            .checked_mul(BLOCK)
            .and_then(|padded| i64::try_from(padded).ok())
            .with_context(|| {
                format!("its member {name:?} claims {size} bytes, more than a file can hold: the archive is damaged")
            })?;
        r.seek(SeekFrom::Current(skip))
            .with_context(|| format!("could not skip its member {name:?} ({size} bytes)"))?;
    }
}

/// A tar header's size field: octal (NUL/space padded), or GNU's base-256 for members of
/// 8 GiB and more (first byte 0x80, then big-endian; saturating, so a size past `u64` is
/// refused by the callers' bounds, not wrapped). `None` when it is neither.
fn tar_size(field: &[u8]) -> Option<u64> {
    match field.split_first() {
        Some((&first, rest)) if first & 0x80 != 0 => {
            if first & 0x40 != 0 {
                return None; // a negative base-256 number is no size
            }
            Some(rest.iter().fold(u64::from(first & 0x3f), |v, b| {
                v.saturating_mul(256).saturating_add(u64::from(*b))
            }))
        }
        _ => octal(field),
    }
}

/// A tar header's octal number field (NUL/space padded).
fn octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 8).ok()
}

/// Image names from a docker-archive `manifest.json` or an OCI `index.json`.
fn image_names(member: &str, bytes: &[u8]) -> Vec<String> {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return vec![];
    };
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    match member {
        "manifest.json" => doc
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| strings(&m["RepoTags"]))
            .collect(),
        _ => doc["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| {
                let a = &m["annotations"];
                a["io.containerd.image.name"]
                    .as_str()
                    .or_else(|| a["org.opencontainers.image.ref.name"].as_str())
                    .filter(|n| n.contains('/') || n.contains(':'))
                    .map(str::to_string)
            })
            .collect(),
    }
}

/// `image` as containerd stores a reference: a name without a registry gets `docker.io/`
/// (and `library/` when it has no path), one without a tag or digest gets `:latest`.
pub fn normalized(image: &str) -> String {
    let Ok(r) = components::image::ImageRef::parse(image) else {
        return image.to_string();
    };
    let registry = r
        .registry
        .clone()
        .unwrap_or_else(|| "docker.io".to_string());
    let repository = if r.registry.is_none() && !r.repository.contains('/') {
        format!("library/{}", r.repository)
    } else {
        r.repository.clone()
    };
    let mut s = format!("{registry}/{repository}");
    match (&r.tag, &r.digest) {
        (Some(t), _) => s.push_str(&format!(":{t}")),
        (None, None) => s.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(d) = &r.digest {
        s.push_str(&format!("@{d}"));
    }
    s
}

/// The images of `wanted` that `present` lacks, in `wanted`'s order.
pub fn missing<'a>(wanted: &'a [String], present: &BTreeSet<String>) -> Vec<&'a String> {
    let present: BTreeSet<String> = present.iter().map(|p| normalized(p)).collect();
    wanted
        .iter()
        .filter(|w| !present.contains(&normalized(w)))
        .collect()
}

#[cfg(test)]
#[path = "../tests/support/tar.rs"]
mod tar_support;

#[cfg(test)]
mod tests {
    use super::*;

    use super::tar_support::tar;

    #[test]
    fn docker_archive_tags_are_read_past_other_members() {
        let manifest = br#"[{"Config":"c.json","RepoTags":["k8s.gcr.io/pause:3.2","kubeboot.local/pause:1"],"Layers":["x/layer.tar"]}]"#;
        let bytes = tar(&[
            ("./x/layer.tar", &[7u8; 1300]),
            ("./c.json", b"{}"),
            ("./manifest.json", manifest),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pause.tar");
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(
            archive_images(&path).unwrap(),
            vec!["k8s.gcr.io/pause:3.2", "kubeboot.local/pause:1"]
        );
    }

    #[test]
    fn oci_layout_names_come_from_the_index_annotations() {
        let index = br#"{"schemaVersion":2,"manifests":[{"annotations":{"io.containerd.image.name":"registry.k8s.io/etcd:3.5.0-0","org.opencontainers.image.ref.name":"3.5.0-0"}},{"annotations":{"org.opencontainers.image.ref.name":"k8s.gcr.io/pause:3.2"}},{"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}"#;
        let mut c = std::io::Cursor::new(tar(&[("oci-layout", b"{}"), ("index.json", index)]));
        let bytes = tar_member(&mut c, "index.json").unwrap().unwrap();
        assert_eq!(
            image_names("index.json", &bytes),
            vec!["registry.k8s.io/etcd:3.5.0-0", "k8s.gcr.io/pause:3.2"]
        );
    }

    /// A tar whose first member is `name` with `size_field` as its header's size and `data`
    /// after it.
    fn tar_claiming(name: &str, size_field: &[u8; 12], data: &[u8]) -> Vec<u8> {
        let mut bytes = tar(&[(name, data)]);
        bytes[124..136].copy_from_slice(size_field);
        bytes
    }

    /// Issue 8: a huge size in manifest.json's header was allocated as is (`vec![0; size]`),
    /// which aborts the process; it is a clear error now, with nothing allocated.
    #[test]
    fn a_huge_index_size_is_an_error_not_an_allocation() {
        for field in [b"777777777777", b"77777777777\0"] {
            let mut c = std::io::Cursor::new(tar_claiming("manifest.json", field, b"[]"));
            let e = images_in_archive(&mut c).expect_err("huge");
            assert!(
                e.to_string()
                    .contains("more than the 16 MiB an image index may have"),
                "{e}"
            );
        }
        let mut base256 = [0u8; 12];
        base256[0] = 0x80;
        base256[1..].fill(0xff);
        let mut c = std::io::Cursor::new(tar_claiming("./index.json", &base256, b"{}"));
        assert!(images_in_archive(&mut c).is_err());
    }

    #[test]
    fn a_truncated_or_unskippable_archive_is_an_error() {
        let mut c = std::io::Cursor::new(tar_claiming("manifest.json", b"00000010000\0", b"[]"));
        let e = images_in_archive(&mut c).expect_err("short");
        assert!(e.to_string().contains("the archive is truncated"), "{e}");
        let mut huge = [0xffu8; 12];
        huge[0] = 0x80;
        let mut c = std::io::Cursor::new(tar_claiming("layer.tar", &huge, b"x"));
        let e = images_in_archive(&mut c).expect_err("unskippable");
        assert!(e.to_string().contains("more than a file can hold"), "{e}");
        // A big layer before the index is skipped, not read.
        let mut c = std::io::Cursor::new(tar_claiming("layer.tar", b"77777777777\0", b"x"));
        assert_eq!(
            images_in_archive(&mut c).expect("skips past the end"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_path_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.tar");
        std::fs::write(&path, tar_claiming("manifest.json", b"777777777777", b"[]")).unwrap();
        let e = format!("{:#}", archive_images(&path).expect_err("huge"));
        assert!(
            e.contains("bad.tar\"; remove it or replace it") && e.contains("68719476735 bytes"),
            "{e}"
        );
    }

    #[test]
    fn not_a_tar_names_nothing() {
        let mut c = std::io::Cursor::new(b"definitely not a tar archive".repeat(40));
        assert_eq!(tar_member(&mut c, "manifest.json").unwrap(), None);
        assert!(image_names("manifest.json", b"{not json").is_empty());
    }

    #[test]
    fn references_compare_as_containerd_stores_them() {
        assert_eq!(normalized("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalized("k8s.gcr.io/pause:3.2"), "k8s.gcr.io/pause:3.2");
        let present: BTreeSet<String> =
            ["docker.io/library/busybox:latest", "k8s.gcr.io/pause:3.2"]
                .into_iter()
                .map(String::from)
                .collect();
        let wanted: Vec<String> = [
            "busybox",
            "k8s.gcr.io/pause:3.2",
            "k8s.gcr.io/etcd:3.4.13-0",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(missing(&wanted, &present), vec!["k8s.gcr.io/etcd:3.4.13-0"]);
    }

    #[test]
    fn only_tar_files_are_archives() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.tar", "a.tar", "notes.txt", "c.tar.gz"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let names: Vec<String> = archives(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["a.tar", "b.tar"]);
        assert!(archives(&dir.path().join("none")).unwrap().is_empty());
    }
}
