//! The kubeboot-dns image (no kubeadm equivalent): a docker-archive (`manifest.json` with
//! `RepoTags`, the config JSON with the `Entrypoint`, one `layer.tar`) built from the running
//! kubeboot executable, holding `/kubeboot`, its ELF interpreter and the shared libraries its
//! `DT_NEEDED` entries name, found as the dynamic loader finds them (`DT_RPATH`/`DT_RUNPATH`,
//! `/etc/ld.so.conf`, the default directories). Nodes import it into containerd
//! (`images::Ctr`) so the `kube-system/kubeboot-dns` Deployment runs with no registry.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use agent::host::fs::Fs;
use anyhow::Context;
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader as _};

/// The name of the archive in the image archive directory (`/var/lib/kubeboot/images`).
pub const ARCHIVE_NAME: &str = "kubeboot-dns.tar";
/// The most libraries followed from the executable (a loop in broken `DT_NEEDED` entries
/// ends here, not in an endless walk).
const MAX_LIBRARIES: usize = 256;

/// What one ELF file asks of the dynamic loader.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ElfNeeds {
    /// `PT_INTERP`: the loader's path, for an executable.
    pub interpreter: Option<String>,
    /// `DT_NEEDED`, in order.
    pub needed: Vec<String>,
    /// `DT_RPATH` directories (searched only when there is no `DT_RUNPATH`).
    pub rpath: Vec<String>,
    /// `DT_RUNPATH` directories.
    pub runpath: Vec<String>,
    /// `e_machine`: libraries of another machine are skipped, as the loader does.
    pub machine: u16,
}

/// The files of the image: (path in the image, file on this host), the executable first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFiles {
    /// `/kubeboot` and the executable.
    pub files: Vec<(String, PathBuf)>,
    /// The config's `architecture` (`amd64`, `arm64`).
    pub architecture: &'static str,
}

/// Reads `path`'s ELF header, program headers and dynamic section (never the whole file: the
/// executable is large).
///
/// # Errors
/// The file cannot be read, or is not a 64-bit ELF file.
pub fn elf_needs(path: &Path) -> anyhow::Result<ElfNeeds> {
    let file = File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    let data = object::read::ReadCache::new(file);
    let parse = || -> object::read::Result<ElfNeeds> {
        let header = elf::FileHeader64::<object::Endianness>::parse(&data)?;
        let endian = header.endian()?;
        let mut needs = ElfNeeds {
            machine: header.e_machine(endian),
            ..ElfNeeds::default()
        };
        for ph in header.program_headers(endian, &data)? {
            if let Some(interp) = ph.interpreter(endian, &data)? {
                needs.interpreter = Some(String::from_utf8_lossy(interp).into_owned());
            }
        }
        let sections = header.sections(endian, &data)?;
        let table = sections.dynamic_table(endian, &data)?;
        for d in table.iter() {
            let text = || -> object::read::Result<String> {
                Ok(String::from_utf8_lossy(table.string(d)?).into_owned())
            };
            let dirs = |s: String| s.split(':').map(str::to_string).collect::<Vec<_>>();
            match d.tag {
                elf::DT_NEEDED => needs.needed.push(text()?),
                elf::DT_RPATH => needs.rpath.extend(dirs(text()?)),
                elf::DT_RUNPATH => needs.runpath.extend(dirs(text()?)),
                _ => {}
            }
        }
        Ok(needs)
    };
    parse().map_err(|e| {
        anyhow::anyhow!(
            "{} is not a 64-bit ELF file kubeboot can read: {e}",
            path.display()
        )
    })
}

/// The directories `/etc/ld.so.conf` names, following its `include` lines (`include` of a
/// `dir/*.conf` pattern or a file). `read` returns a file's text, `list` a directory's entries.
pub fn ld_so_conf_dirs(
    path: &Path,
    read: &dyn Fn(&Path) -> Option<String>,
    list: &dyn Fn(&Path) -> Vec<PathBuf>,
) -> Vec<PathBuf> {
    fn walk(
        path: &Path,
        read: &dyn Fn(&Path) -> Option<String>,
        list: &dyn Fn(&Path) -> Vec<PathBuf>,
        seen: &mut BTreeSet<PathBuf>,
        out: &mut Vec<PathBuf>,
    ) {
        if !seen.insert(path.to_path_buf()) {
            return; // an include loop
        }
        let Some(text) = read(path) else { return };
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if let Some(pattern) = line.strip_prefix("include") {
                for pattern in pattern.split_whitespace() {
                    let pattern = match Path::new(pattern).is_absolute() {
                        true => PathBuf::from(pattern),
                        false => path.parent().unwrap_or(Path::new("/")).join(pattern),
                    };
                    let name = pattern
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned());
                    match (pattern.parent(), name) {
                        (Some(dir), Some(name)) if name.contains('*') => {
                            let (prefix, suffix) = name.split_once('*').unwrap_or((&name, ""));
                            let mut files: Vec<PathBuf> = list(dir)
                                .into_iter()
                                .filter(|f| {
                                    f.file_name().map(|n| n.to_string_lossy()).is_some_and(|n| {
                                        n.starts_with(prefix) && n.ends_with(suffix)
                                    })
                                })
                                .collect();
                            files.sort();
                            for f in files {
                                walk(&f, read, list, seen, out);
                            }
                        }
                        _ => walk(&pattern, read, list, seen, out),
                    }
                }
            } else if line.starts_with('/') {
                let dir = PathBuf::from(line);
                if !out.contains(&dir) {
                    out.push(dir);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(path, read, list, &mut BTreeSet::new(), &mut out);
    out
}

/// The loader's search order for the libraries of an object that has `needs` and lives in
/// `origin` (for `$ORIGIN`): `DT_RPATH` when there is no `DT_RUNPATH`, `DT_RUNPATH`, the
/// ld.so.conf directories (what `/etc/ld.so.cache` indexes), then the default directories.
pub fn search_order(needs: &ElfNeeds, origin: &Path, conf_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let expand = |dir: &String| {
        let o = origin.display().to_string();
        PathBuf::from(dir.replace("${ORIGIN}", &o).replace("$ORIGIN", &o))
    };
    let mut order: Vec<PathBuf> = Vec::new();
    if needs.runpath.is_empty() {
        order.extend(needs.rpath.iter().map(expand));
    }
    order.extend(needs.runpath.iter().map(expand));
    order.extend(conf_dirs.iter().cloned());
    for dir in [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib/aarch64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
    ] {
        order.push(PathBuf::from(dir));
    }
    let mut seen = BTreeSet::new();
    order.retain(|d| !d.as_os_str().is_empty() && seen.insert(d.clone()));
    order
}

/// The files of the image of executable `exe`: itself as `/kubeboot`, its interpreter and
/// every library it needs (transitively), each at the path the loader finds it by.
///
/// # Errors
/// `exe` or a library is not a readable ELF file, or a library is not found: names it and
/// the directories searched.
pub fn image_files(exe: &Path) -> anyhow::Result<ImageFiles> {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let list = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    let conf_dirs = ld_so_conf_dirs(Path::new("/etc/ld.so.conf"), &read, &list);
    let top = elf_needs(exe)?;
    let architecture = match top.machine {
        elf::EM_X86_64 => "amd64",
        elf::EM_AARCH64 => "arm64",
        other => anyhow::bail!(
            "{} is built for ELF machine {other}; kubeboot builds its DNS image for amd64 and arm64 only",
            exe.display()
        ),
    };
    let mut files = vec![(
        manifests::addons::cluster_dns::EXE_IN_IMAGE.to_string(),
        exe.to_path_buf(),
    )];
    if let Some(interp) = &top.interpreter {
        files.push((interp.clone(), PathBuf::from(interp)));
    }
    // Breadth first from the executable, each library once (by name, as the loader does).
    let mut queue: Vec<(ElfNeeds, PathBuf)> = vec![(
        top.clone(),
        exe.parent().unwrap_or(Path::new("/")).to_path_buf(),
    )];
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    while let Some((needs, origin)) = queue.pop() {
        let order = search_order(&needs, &origin, &conf_dirs);
        for name in &needs.needed {
            if found.contains_key(name) {
                continue;
            }
            anyhow::ensure!(
                found.len() < MAX_LIBRARIES,
                "{} needs more than {MAX_LIBRARIES} shared libraries",
                exe.display()
            );
            let candidates: Vec<PathBuf> = if name.contains('/') {
                vec![PathBuf::from(name)]
            } else {
                order.iter().map(|d| d.join(name)).collect()
            };
            let hit = candidates.into_iter().find_map(|path| {
                let lib = elf_needs(&path).ok()?;
                (lib.machine == top.machine).then_some((path, lib))
            });
            let (path, lib) = hit.with_context(|| {
                format!(
                    "{} needs the shared library {name}, which is not in {}; install it (the loader could not start kubeboot without it either)",
                    exe.display(),
                    order
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            found.insert(name.clone(), path.clone());
            files.push((path.display().to_string(), path.clone()));
            queue.push((lib, path.parent().unwrap_or(Path::new("/")).to_path_buf()));
        }
    }
    let mut seen = BTreeSet::new();
    files.retain(|(in_image, _)| seen.insert(in_image.clone()));
    Ok(ImageFiles {
        files,
        architecture,
    })
}

/// A writer that hashes what passes through (the layer's diff ID).
struct Hashing<W> {
    inner: W,
    digest: ring::digest::Context,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h
}

/// Appends a regular file entry at `path` with `data`'s `size` bytes.
fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    mode: u32,
    size: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut h = header(tar::EntryType::Regular, mode, size);
    tar.append_data(&mut h, path, data)
}

/// The root filesystem of the image as a tar written to `out`: the directories, then each
/// file (symlinks resolved: the loader must be a real file) with its host mode.
fn write_layer<W: Write>(files: &ImageFiles, out: W) -> io::Result<W> {
    let mut tar = tar::Builder::new(out);
    let mut dirs: BTreeSet<String> = ["etc", "tmp", "proc", "sys", "dev", "var", "run"]
        .into_iter()
        .map(str::to_string)
        .collect();
    for (in_image, _) in &files.files {
        let mut p = Path::new(in_image.trim_start_matches('/')).parent();
        while let Some(dir) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(dir.display().to_string());
            p = dir.parent();
        }
    }
    for dir in &dirs {
        let mode = if dir == "tmp" { 0o1777 } else { 0o755 };
        let mut h = header(tar::EntryType::Directory, mode, 0);
        tar.append_data(&mut h, format!("{dir}/"), io::empty())?;
    }
    for (in_image, host) in &files.files {
        let file = File::open(host)?;
        let meta = file.metadata()?;
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        append_file(
            &mut tar,
            in_image.trim_start_matches('/'),
            mode,
            meta.len(),
            file,
        )?;
    }
    tar.into_inner()
}

/// Builds the image `image` from the executable `exe` into the docker-archive `archive`,
/// atomically (a hidden temporary file renamed into place). The layer is staged in a hidden
/// temporary file beside it (its size and digest go before it in the archive), removed after.
///
/// # Errors
/// [`image_files`] fails, or a file cannot be read or written.
pub fn write_archive(fs: &Fs, exe: &Path, archive: &Path, image: &str) -> anyhow::Result<()> {
    let files = image_files(exe)?;
    let staged = fs
        .resolve(archive)
        .with_file_name(format!(".{ARCHIVE_NAME}.layer.{}.tmp", std::process::id()));
    let result = (|| -> anyhow::Result<()> {
        let layer = File::options()
            .write(true)
            .create_new(true)
            .open(&staged)
            .with_context(|| format!("could not create {}", staged.display()))?;
        let hashing = write_layer(
            &files,
            Hashing {
                inner: io::BufWriter::new(layer),
                digest: ring::digest::Context::new(&ring::digest::SHA256),
            },
        )
        .with_context(|| format!("could not write the image layer {}", staged.display()))?;
        let Hashing { inner, digest } = hashing;
        inner
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .with_context(|| format!("could not write {}", staged.display()))?;
        let diff_id = hex(digest.finish().as_ref());
        let config = serde_json::json!({
            "architecture": files.architecture,
            "os": "linux",
            "config": {
                "Entrypoint": [manifests::addons::cluster_dns::EXE_IN_IMAGE],
                "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
                "WorkingDir": "/",
            },
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
            "history": [{"created_by": "kubeboot: the kubeboot-dns image of this node's executable"}],
        });
        let config = serde_json::to_vec(&config)?;
        let config_name = format!(
            "{}.json",
            hex(ring::digest::digest(&ring::digest::SHA256, &config).as_ref())
        );
        let layer_name = format!("{diff_id}/layer.tar");
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": config_name,
            "RepoTags": [image],
            "Layers": [layer_name],
        }]))?;
        let layer_len = std::fs::metadata(&staged)?.len();
        fs.write_streamed(archive, 0o644, |out| {
            let mut tar = tar::Builder::new(io::BufWriter::new(out));
            append_file(
                &mut tar,
                "manifest.json",
                0o644,
                manifest.len() as u64,
                &manifest[..],
            )?;
            append_file(
                &mut tar,
                &config_name,
                0o644,
                config.len() as u64,
                &config[..],
            )?;
            let mut h = header(tar::EntryType::Directory, 0o755, 0);
            tar.append_data(&mut h, format!("{diff_id}/"), io::empty())?;
            append_file(
                &mut tar,
                &layer_name,
                0o644,
                layer_len,
                File::open(&staged)?,
            )?;
            Ok(tar.into_inner()?.flush()?)
        })
    })();
    let _ = std::fs::remove_file(&staged);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ld_so_conf_follows_includes_in_order() {
        let files: BTreeMap<PathBuf, &str> = [
            (
                "/etc/ld.so.conf",
                "include /etc/ld.so.conf.d/*.conf\n/opt/a # comment\n",
            ),
            (
                "/etc/ld.so.conf.d/x86_64-linux-gnu.conf",
                "# Multiarch support\n/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n",
            ),
            ("/etc/ld.so.conf.d/libc.conf", "/usr/local/lib\n"),
            ("/etc/ld.so.conf.d/notes.txt", "/nope\n"),
            ("/etc/ld.so.conf.d/loop.conf", "include /etc/ld.so.conf\n"),
        ]
        .into_iter()
        .map(|(p, t)| (PathBuf::from(p), t))
        .collect();
        let read = |p: &Path| files.get(p).map(|t| t.to_string());
        let list = |d: &Path| -> Vec<PathBuf> {
            files
                .keys()
                .filter(|p| p.parent() == Some(d))
                .cloned()
                .collect()
        };
        let dirs = ld_so_conf_dirs(Path::new("/etc/ld.so.conf"), &read, &list);
        let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        assert_eq!(
            dirs,
            [
                "/usr/local/lib",
                "/usr/local/lib/x86_64-linux-gnu",
                "/lib/x86_64-linux-gnu",
                "/opt/a"
            ]
        );
    }

    #[test]
    fn runpath_hides_rpath_and_origin_expands() {
        let needs = ElfNeeds {
            rpath: vec!["/r".into()],
            runpath: vec!["$ORIGIN/../lib".into(), "${ORIGIN}".into()],
            ..ElfNeeds::default()
        };
        let order = search_order(&needs, Path::new("/opt/k/bin"), &[PathBuf::from("/c")]);
        assert_eq!(order[0], Path::new("/opt/k/bin/../lib"));
        assert_eq!(order[1], Path::new("/opt/k/bin"));
        assert_eq!(order[2], Path::new("/c"));
        assert!(!order.contains(&PathBuf::from("/r")));
        let rpath_only = ElfNeeds {
            rpath: vec!["/r".into()],
            ..ElfNeeds::default()
        };
        assert_eq!(
            search_order(&rpath_only, Path::new("/"), &[])[0],
            Path::new("/r")
        );
    }

    /// This test's own executable is a dynamically linked Rust program like kubeboot: its
    /// image holds the loader and libc, found where the host's loader finds them.
    #[test]
    fn the_image_of_a_real_executable_has_its_loader_and_libc() {
        let exe = std::env::current_exe().expect("test executable");
        let needs = elf_needs(&exe).expect("an ELF file");
        let interp = needs.interpreter.clone().expect("dynamically linked");
        assert!(needs.needed.iter().any(|n| n == "libc.so.6"), "{needs:?}");
        let files = image_files(&exe).expect("resolves");
        assert_eq!(files.files[0], ("/kubeboot".to_string(), exe.clone()));
        let in_image: Vec<&str> = files.files.iter().map(|(p, _)| p.as_str()).collect();
        assert!(in_image.contains(&interp.as_str()), "{in_image:?}");
        assert!(
            in_image.iter().any(|p| p.ends_with("/libc.so.6")),
            "{in_image:?}"
        );
        for (_, host) in &files.files {
            assert!(host.is_file(), "{}", host.display());
        }
    }

    #[test]
    fn not_an_elf_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("script");
        std::fs::write(&path, b"#!/bin/sh\necho hi\n").expect("write");
        let e = elf_needs(&path).expect_err("not ELF").to_string();
        assert!(e.contains("script is not a 64-bit ELF file"), "{e}");
    }

    /// The archive is one containerd's docker-archive importer takes: manifest.json names the
    /// tag, the config and the layer, the config's diff ID is the layer's digest, and the layer
    /// holds /kubeboot byte for byte.
    #[test]
    fn the_archive_is_a_docker_archive_of_the_executable() {
        let exe = std::env::current_exe().expect("test executable");
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = dir.path().join(ARCHIVE_NAME);
        write_archive(
            &Fs::real(),
            &exe,
            &archive,
            "kubeboot.local/kubeboot-dns:0.1.0",
        )
        .expect("writes");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [ARCHIVE_NAME], "temporary files left behind");
        assert_eq!(
            crate::images::archive_images(&archive).expect("reads"),
            ["kubeboot.local/kubeboot-dns:0.1.0"]
        );
        let mut members: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut outer = tar::Archive::new(File::open(&archive).expect("open"));
        for entry in outer.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").display().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("read");
            members.insert(path, data);
        }
        let manifest: serde_json::Value =
            serde_json::from_slice(&members["manifest.json"]).expect("manifest");
        let config_name = manifest[0]["Config"].as_str().expect("Config");
        let layer_name = manifest[0]["Layers"][0].as_str().expect("Layers");
        let config: serde_json::Value =
            serde_json::from_slice(&members[config_name]).expect("config");
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!(["/kubeboot"])
        );
        let layer = &members[layer_name];
        let digest = hex(ring::digest::digest(&ring::digest::SHA256, layer).as_ref());
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            format!("sha256:{digest}").as_str()
        );
        let mut inner = tar::Archive::new(&layer[..]);
        let mut kubeboot = None;
        for entry in inner.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            if entry.path().expect("path") == Path::new("kubeboot") {
                assert_eq!(entry.header().mode().expect("mode") & 0o111, 0o111);
                let mut data = Vec::new();
                entry.read_to_end(&mut data).expect("read");
                kubeboot = Some(data);
            }
        }
        assert!(
            kubeboot == Some(std::fs::read(&exe).expect("exe")),
            "/kubeboot is not the executable"
        );
    }
}
