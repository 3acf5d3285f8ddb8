//! Image references and the image -> host binary mapping the process runtime uses.
//!
//! The agent's process runtime runs a static pod's container from the host binary its image
//! names: `k8s.gcr.io/kube-apiserver:v1.20.2` (or `registry.k8s.io/...`, or any mirror set
//! with kubeadm's `imageRepository`) runs `kube-apiserver`, whose `--version` must be exactly
//! v1.20.2; `k8s.gcr.io/etcd:3.4.13-0` runs `etcd` of the same major.minor (distributions
//! ship their own patch release, e.g. Debian's 3.4.23).
//!
//! The node's own system components have images too, so that they can be static pods of the
//! agent like the control plane:
//! - `k8s.gcr.io/kubelet:v1.20.2` (kubeadm's image naming; upstream publishes no kubelet
//!   image) runs the `kubelet` binary of exactly that version;
//! - `kubeboot.local/containerd:1.6.20` (a kubeboot-defined name: containerd comes from the
//!   distribution, never from an image) runs the `containerd` binary of the same
//!   major.minor, the tag being the version `init` found installed.

use std::fmt;

use crate::names;
use crate::version::Version;

/// A parsed image reference: `[registry/]repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry host (`k8s.gcr.io`), if the reference names one.
    pub registry: Option<String>,
    /// The repository path without the registry (`kube-apiserver`, `library/etcd`).
    pub repository: String,
    /// The tag (`v1.20.2`), if any.
    pub tag: Option<String>,
    /// The digest (`sha256:...`), if any.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses an image reference as the Docker reference grammar reads it: the first path
    /// component is a registry when it contains `.` or `:` or is `localhost`.
    ///
    /// # Errors
    /// [`ImageError::Invalid`] for an empty reference, an empty path component, tag or digest.
    pub fn parse(image: &str) -> Result<ImageRef, ImageError> {
        let invalid = |why: &'static str| ImageError::Invalid {
            image: image.to_string(),
            why,
        };
        let trimmed = image.trim();
        if trimmed.is_empty() {
            return Err(invalid("it is empty"));
        }
        let (rest, digest) = match trimmed.split_once('@') {
            Some((_, "")) => return Err(invalid("the digest is empty")),
            Some((r, d)) => (r, Some(d.to_string())),
            None => (trimmed, None),
        };
        // A tag is after the last ':' that follows the last '/' (a registry may have a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                if tag.is_empty() {
                    return Err(invalid("the tag is empty"));
                }
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        let (registry, repository) = match path.split_once('/') {
            Some((first, repo))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (Some(first.to_string()), repo)
            }
            _ => (None, path),
        };
        if repository.is_empty() || repository.split('/').any(str::is_empty) {
            return Err(invalid("a path component is empty"));
        }
        Ok(ImageRef {
            registry,
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// The last path component (`kube-apiserver` for `k8s.gcr.io/kube-apiserver:v1.20.2`).
    pub fn name(&self) -> &str {
        self.repository
            .rsplit('/')
            .next()
            .unwrap_or(&self.repository)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.registry {
            write!(f, "{r}/")?;
        }
        f.write_str(&self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// An image reference the process runtime cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Not an image reference at all.
    #[error("{image:?} is not a valid image reference: {why}")]
    Invalid {
        /// The reference as written in the manifest.
        image: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A known component image whose tag is not a version, so the binary cannot be checked.
    #[error(
        "image {image:?} has no version tag (e.g. {example:?}): the process runtime checks the {binary} binary's version against it"
    )]
    NoVersionTag {
        /// The reference as written in the manifest.
        image: String,
        /// The binary the image maps to.
        binary: &'static str,
        /// An example of a usable reference.
        example: String,
    },
}

/// Which host binary versions may stand in for an image's tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPolicy {
    /// Major, minor and patch must equal the tag's (and its pre-release, if the tag has
    /// one): Kubernetes components, whose flags change between patch releases.
    Exact(Version),
    /// Major and minor must equal the tag's: etcd, whose image tag (`3.4.13-0`) carries an
    /// image revision and whose distributions ship their own patch release, and containerd,
    /// which distributions patch on their own schedule.
    SameMinor(Version),
}

impl VersionPolicy {
    /// True when a binary reporting `found` may run this image.
    pub fn accepts(&self, found: &Version) -> bool {
        match self {
            VersionPolicy::Exact(want) => {
                (want.major, want.minor, want.patch) == (found.major, found.minor, found.patch)
                    && (want.pre.is_none() || want.pre == found.pre)
            }
            VersionPolicy::SameMinor(want) => want.minor_pair() == found.minor_pair(),
        }
    }

    /// What the policy wants, for messages: `v1.20.2` or `v3.4.x`.
    pub fn wanted(&self) -> String {
        match self {
            VersionPolicy::Exact(v) => v.to_string(),
            VersionPolicy::SameMinor(v) => format!("v{}.{}.x", v.major, v.minor),
        }
    }
}

/// The host binary that runs an image, and the versions it may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageBinary {
    /// The binary's file name, looked up in the agent's `--bin-dir`s.
    pub binary: &'static str,
    /// The versions of that binary that may run the image.
    pub policy: VersionPolicy,
}

/// The registry of the images kubeboot defines for host software that has no upstream image.
pub const KUBEBOOT_IMAGE_REGISTRY: &str = "kubeboot.local";
/// The binary (and image name) of containerd.
pub const CONTAINERD: &str = "containerd";

/// The image of the installed containerd of `version` (kubeboot-defined, see the module docs).
pub fn containerd_image(version: &Version) -> String {
    format!(
        "{KUBEBOOT_IMAGE_REGISTRY}/{CONTAINERD}:{}.{}.{}",
        version.major, version.minor, version.patch
    )
}

/// The images the process runtime knows, by image name, and whether they want the exact
/// version (else the same major.minor).
const KNOWN: &[(&str, bool)] = &[
    (names::KUBE_APISERVER, true),
    (names::KUBE_CONTROLLER_MANAGER, true),
    (names::KUBE_SCHEDULER, true),
    (names::KUBE_PROXY, true),
    (names::KUBELET, true),
    (names::ETCD, false),
    (CONTAINERD, false),
];

/// Architecture suffixes of the pre-1.12 image names (`kube-apiserver-amd64`).
const ARCH_SUFFIXES: &[&str] = &["-amd64", "-arm64", "-arm", "-ppc64le", "-s390x"];

/// Maps an image to the host binary that runs it. The registry is not checked: kubeadm's
/// `imageRepository` points the same names at a mirror.
///
/// Returns `Ok(None)` for an image the process runtime does not know.
///
/// # Errors
/// [`ImageError::Invalid`] for a malformed reference, [`ImageError::NoVersionTag`] for a
/// known image without a version tag.
pub fn binary_for_image(image: &str) -> Result<Option<ImageBinary>, ImageError> {
    let r = ImageRef::parse(image)?;
    let name = r.name();
    let base = ARCH_SUFFIXES
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    let Some(&(binary, exact)) = KNOWN.iter().find(|(b, _)| *b == base) else {
        return Ok(None);
    };
    let version = r
        .tag
        .as_deref()
        .and_then(|t| t.parse::<Version>().ok())
        .ok_or_else(|| ImageError::NoVersionTag {
            image: image.to_string(),
            binary,
            example: format!(
                "{}:{}",
                r.repository,
                if exact { "v1.20.2" } else { "3.4.13-0" }
            ),
        })?;
    let policy = if exact {
        VersionPolicy::Exact(version)
    } else {
        VersionPolicy::SameMinor(version)
    };
    Ok(Some(ImageBinary { binary, policy }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::v;

    #[test]
    fn parses_registry_repository_tag_digest() {
        let r = ImageRef::parse("k8s.gcr.io/kube-apiserver:v1.20.2").unwrap();
        assert_eq!(r.registry.as_deref(), Some("k8s.gcr.io"));
        assert_eq!(r.repository, "kube-apiserver");
        assert_eq!(r.tag.as_deref(), Some("v1.20.2"));
        let r = ImageRef::parse("localhost:5000/k8s/etcd:3.4.13-0@sha256:abc").unwrap();
        assert_eq!(r.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(r.repository, "k8s/etcd");
        assert_eq!(r.name(), "etcd");
        assert_eq!(r.tag.as_deref(), Some("3.4.13-0"));
        assert_eq!(r.digest.as_deref(), Some("sha256:abc"));
        assert_eq!(r.to_string(), "localhost:5000/k8s/etcd:3.4.13-0@sha256:abc");
        let r = ImageRef::parse("library/busybox").unwrap();
        assert_eq!((r.registry, r.tag), (None, None));
    }

    #[test]
    fn rejects_malformed_references() {
        for bad in ["", "k8s.gcr.io/", "kube-apiserver:", "a//b", "etcd@"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn kubernetes_images_want_the_exact_version() {
        for image in [
            "k8s.gcr.io/kube-apiserver:v1.20.2",
            "registry.k8s.io/kube-apiserver:v1.20.2",
        ] {
            let b = binary_for_image(image).unwrap().unwrap();
            assert_eq!(b.binary, "kube-apiserver");
            assert!(
                b.policy
                    .accepts(&Version::find_in("Kubernetes v1.20.2").unwrap())
            );
            assert!(!b.policy.accepts(&v(1, 20, 3)));
            assert!(!b.policy.accepts(&v(1, 21, 2)));
            assert_eq!(b.policy.wanted(), "v1.20.2");
        }
        for (image, bin) in [
            (
                "k8s.gcr.io/kube-controller-manager:v1.20.2",
                "kube-controller-manager",
            ),
            ("k8s.gcr.io/kube-scheduler:v1.20.2", "kube-scheduler"),
            ("mirror.local:5000/k8s/kube-proxy:v1.20.2", "kube-proxy"),
            ("k8s.gcr.io/kube-proxy-amd64:v1.20.2", "kube-proxy"),
        ] {
            assert_eq!(
                binary_for_image(image).unwrap().unwrap().binary,
                bin,
                "{image}"
            );
        }
    }

    #[test]
    fn etcd_wants_the_same_minor() {
        let b = binary_for_image("k8s.gcr.io/etcd:3.4.13-0")
            .unwrap()
            .unwrap();
        assert_eq!(b.binary, "etcd");
        assert!(
            b.policy
                .accepts(&Version::find_in("etcd Version: 3.4.23\n").unwrap())
        );
        assert!(!b.policy.accepts(&v(3, 5, 0)));
        assert_eq!(b.policy.wanted(), "v3.4.x");
    }

    #[test]
    fn node_components_map_to_their_binaries() {
        let b = binary_for_image("k8s.gcr.io/kubelet:v1.20.2")
            .unwrap()
            .unwrap();
        assert_eq!(b.binary, "kubelet");
        assert_eq!(b.policy, VersionPolicy::Exact(v(1, 20, 2)));
        let image = containerd_image(&v(1, 6, 20));
        assert_eq!(image, "kubeboot.local/containerd:1.6.20");
        let b = binary_for_image(&image).unwrap().unwrap();
        assert_eq!(b.binary, "containerd");
        let found = Version::find_in(
            "containerd github.com/containerd/containerd 1.6.24~ds1 1.6.24~ds1-1+deb12u3\n",
        )
        .unwrap();
        assert!(b.policy.accepts(&found));
        assert!(!b.policy.accepts(&v(1, 7, 0)));
    }

    #[test]
    fn unknown_images_map_to_nothing() {
        for image in [
            "k8s.gcr.io/pause:3.2",
            "k8s.gcr.io/coredns:1.7.0",
            "nginx",
            "busybox:latest",
        ] {
            assert_eq!(binary_for_image(image).unwrap(), None, "{image}");
        }
    }

    #[test]
    fn known_image_without_version_tag_is_an_error() {
        let err = binary_for_image("k8s.gcr.io/kube-apiserver:latest").unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::NoVersionTag {
                    binary: "kube-apiserver",
                    ..
                }
            ),
            "{err}"
        );
        assert!(binary_for_image("k8s.gcr.io/etcd").is_err());
    }
}
