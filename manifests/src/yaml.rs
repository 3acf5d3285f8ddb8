//! The one place pods become YAML and back.
//!
//! kubeadm marshals a pod to JSON (Go struct field order, `omitempty`) and converts the JSON
//! to YAML with go-yaml v2, which sorts every mapping's keys (kubeadm:
//! util.MarshalToYaml -> sigs.k8s.io/yaml.JSONToYAML). We do the same: serde to a JSON value,
//! then a YAML mapping built with keys in go-yaml's order, plus the two fields Go always
//! writes for a pod and k8s-openapi leaves out: `metadata.creationTimestamp: null` and
//! `status: {}`.

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use yaml_serde::{Mapping, Value};

/// YAML that could not be read back as a pod.
#[derive(Debug, thiserror::Error)]
#[error("could not parse the static pod manifest: {0}")]
pub struct ParseError(#[from] yaml_serde::Error);

/// Renders a pod as kubeadm writes a static pod manifest: keys sorted as go-yaml sorts them,
/// `creationTimestamp: null` and `status: {}` included.
pub fn to_yaml(pod: &Pod) -> String {
    let mut json = serde_json::to_value(pod).expect("a k8s-openapi Pod always serializes");
    if let Some(obj) = json.as_object_mut() {
        if let Some(meta) = obj.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.entry("creationTimestamp")
                .or_insert(serde_json::Value::Null);
        }
        obj.entry("status")
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    }
    yaml_serde::to_string(&sorted(&json)).expect("a YAML value always serializes")
}

/// Reads a static pod manifest (ours or kubeadm's). The `status: {}` kubeadm writes reads as
/// no status, so `from_yaml(&to_yaml(pod)) == pod`.
///
/// # Errors
/// [`ParseError`] when the text is not YAML or not a `v1` `Pod`.
pub fn from_yaml(text: &str) -> Result<Pod, ParseError> {
    let mut pod: Pod = yaml_serde::from_str(text)?;
    if pod
        .status
        .as_ref()
        .is_some_and(|s| *s == PodStatus::default())
    {
        pod.status = None;
    }
    Ok(pod)
}

/// A JSON value as a YAML value with every mapping's keys in go-yaml's order.
pub fn sorted(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::Number(i.into()),
            (_, Some(u), _) => Value::Number(u.into()),
            (_, _, Some(f)) => Value::Number(f.into()),
            _ => Value::Null,
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::Sequence(items.iter().map(sorted).collect()),
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| go_yaml_key_order(a, b));
            let mut out = Mapping::new();
            for k in keys {
                out.insert(Value::String(k.clone()), sorted(&map[k]));
            }
            Value::Mapping(out)
        }
    }
}

/// go-yaml v2's order for string keys (yaml.v2 sorter.go, keyList.Less): letters compare by
/// code point, a non-letter sorts before a letter, and runs of digits compare as numbers.
pub fn go_yaml_key_order(a: &str, b: &str) -> Ordering {
    let (ar, br): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let (al, bl) = (ar[i].is_alphabetic(), br[i].is_alphabetic());
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return if bl {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        let (mut an, mut bn): (i64, i64) = (0, 0);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an
                .saturating_mul(10)
                .saturating_add(i64::from(ar[ai] as u8 - b'0'));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn
                .saturating_mul(10)
                .saturating_add(i64::from(br[bi] as u8 - b'0'));
            bi += 1;
        }
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_yaml_order_puts_non_letters_first_and_numbers_numerically() {
        let mut keys = vec!["b", "a_x", "a-x", "ax", "a10", "a9", "A"];
        keys.sort_by(|a, b| go_yaml_key_order(a, b));
        assert_eq!(keys, ["A", "a-x", "a_x", "a9", "a10", "ax", "b"]);
    }

    #[test]
    fn writes_creation_timestamp_null_and_empty_status() {
        let pod = Pod::default();
        let text = to_yaml(&pod);
        assert!(text.contains("creationTimestamp: null"), "{text}");
        assert!(text.ends_with("status: {}\n"), "{text}");
        assert!(
            text.starts_with("apiVersion: v1\nkind: Pod\nmetadata:\n"),
            "{text}"
        );
    }

    #[test]
    fn round_trips() {
        let pod = Pod::default();
        assert_eq!(from_yaml(&to_yaml(&pod)).unwrap(), pod);
    }
}
