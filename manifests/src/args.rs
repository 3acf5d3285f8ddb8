//! Flags as a sorted map, rendered as `--key=value` (kubeadm: util.BuildArgumentListFromMap).

use std::collections::BTreeMap;

/// A component's flags by name (no dashes). A `BTreeMap`, so rendering is sorted.
pub type Args = BTreeMap<String, String>;

/// Merges `overrides` over `defaults` and renders every flag as `--key=value`, sorted by key
/// (kubeadm: BuildArgumentListFromMap). An override replaces the default of the same name; it
/// is never appended next to it.
pub fn build_argument_list(defaults: &Args, overrides: &BTreeMap<String, String>) -> Vec<String> {
    let mut merged = defaults.clone();
    merged.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged.iter().map(|(k, v)| format!("--{k}={v}")).collect()
}

/// `binary` followed by the merged flags: a container's `command`.
pub fn command(binary: &str, defaults: &Args, overrides: &BTreeMap<String, String>) -> Vec<String> {
    std::iter::once(binary.to_string())
        .chain(build_argument_list(defaults, overrides))
        .collect()
}

/// Adds `(name, value)` pairs to a flag map.
pub(crate) fn insert_all<'a>(args: &mut Args, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
    for (name, value) in pairs {
        args.insert(name.to_string(), value.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Args {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_sorted_key_value_flags() {
        let defaults = map(&[("secure-port", "6443"), ("allow-privileged", "true")]);
        assert_eq!(
            build_argument_list(&defaults, &Args::new()),
            ["--allow-privileged=true", "--secure-port=6443"]
        );
    }

    #[test]
    fn overrides_replace_defaults_in_place() {
        let defaults = map(&[("a", "1"), ("b", "2")]);
        let overrides = map(&[("b", "3"), ("c", "4")]);
        assert_eq!(
            build_argument_list(&defaults, &overrides),
            ["--a=1", "--b=3", "--c=4"]
        );
    }

    #[test]
    fn empty_values_are_kept_as_kubeadm_does() {
        let defaults = map(&[("cluster-signing-key-file", "")]);
        assert_eq!(
            build_argument_list(&defaults, &Args::new()),
            ["--cluster-signing-key-file="]
        );
    }

    #[test]
    fn command_starts_with_binary() {
        assert_eq!(
            command("etcd", &map(&[("name", "n1")]), &Args::new()),
            ["etcd", "--name=n1"]
        );
    }
}
