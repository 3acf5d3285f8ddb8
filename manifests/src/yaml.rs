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
            let keys = go_yaml_sorted(map.keys().collect());
            let mut out = Mapping::new();
            for k in keys {
                out.insert(Value::String(k.clone()), sorted(&map[k]));
            }
            Value::Mapping(out)
        }
    }
}

/// Renders a plain JSON value as go-yaml v2 writes it in block style (kubeadm marshals
/// component configs so: sigs.k8s.io/yaml over the Go struct): keys in go-yaml's order,
/// sequences at their key's indentation, `""` and other strings that would read as another
/// type double-quoted, strings that cannot be plain single-quoted, multi-line strings as
/// literal blocks. Used for documents kept as text inside objects (kube-proxy's
/// `config.conf`), whose bytes, not only values, must match kubeadm's.
pub fn go_yaml(value: &serde_json::Value) -> String {
    let mut out = String::new();
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => emit_mapping(map, 0, &mut out),
        serde_json::Value::Array(items) if !items.is_empty() => emit_sequence(items, 0, &mut out),
        scalar => {
            out.push_str(&go_scalar(scalar, 0));
            out.push('\n');
        }
    }
    out
}

fn emit_mapping(map: &serde_json::Map<String, serde_json::Value>, indent: usize, out: &mut String) {
    let keys = go_yaml_sorted(map.keys().collect());
    for key in keys {
        out.push_str(&" ".repeat(indent));
        out.push_str(&go_string(key, indent));
        out.push(':');
        emit_value(&map[key.as_str()], indent, indent + 2, out);
    }
}

fn emit_sequence(items: &[serde_json::Value], indent: usize, out: &mut String) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            serde_json::Value::Object(map) if !map.is_empty() => {
                // The first key shares the "- " line; go-yaml indents the rest under it.
                let mut nested = String::new();
                emit_mapping(map, indent + 2, &mut nested);
                out.push(' ');
                out.push_str(&nested[indent + 2..]);
            }
            other => emit_value(other, indent, indent + 2, out),
        }
    }
}

/// Writes what follows `key:` or `-`: a scalar on the same line, or a nested block.
fn emit_value(value: &serde_json::Value, indent: usize, nested: usize, out: &mut String) {
    match value {
        serde_json::Value::Object(map) if map.is_empty() => out.push_str(" {}\n"),
        serde_json::Value::Array(items) if items.is_empty() => out.push_str(" []\n"),
        serde_json::Value::Object(map) => {
            out.push('\n');
            emit_mapping(map, nested, out);
        }
        serde_json::Value::Array(items) => {
            out.push('\n');
            emit_sequence(items, indent, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&go_scalar(scalar, nested));
            out.push('\n');
        }
    }
}

fn go_scalar(value: &serde_json::Value, indent: usize) -> String {
    match value {
        serde_json::Value::Null => "null".to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => go_string(s, indent),
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
            unreachable!("collections are emitted as blocks")
        }
    }
}

/// A string as go-yaml v2 writes it (yaml.v2 encode.go stringv, emitterc.go select_scalar_style).
fn go_string(s: &str, indent: usize) -> String {
    if s.contains('\n') {
        let chomp = if s.ends_with('\n') { "" } else { "-" };
        let pad = " ".repeat(indent);
        let body: String = s
            .trim_end_matches('\n')
            .split('\n')
            .map(|line| {
                if line.is_empty() {
                    "\n".to_string()
                } else {
                    format!("{pad}{line}\n")
                }
            })
            .collect();
        return format!("|{chomp}\n{}", body.trim_end_matches('\n'));
    }
    if resolves_to_non_string(s) {
        return serde_json::Value::String(s.to_string()).to_string();
    }
    // libyaml's analysis (which yaml_serde shares with go-yaml) decides plain or single quotes.
    yaml_serde::to_string(&Value::String(s.to_string()))
        .expect("a string always serializes")
        .trim_end_matches('\n')
        .to_string()
}

/// True when go-yaml would read `s`, written plain, as something other than a string
/// (yaml.v2 resolve.go: YAML 1.1 booleans, null, numbers), so it must quote it.
fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
        ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
        ".NaN", ".NAN", "<<",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let numeric_hint = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    if !numeric_hint {
        return false;
    }
    let unsigned = s.trim_start_matches(['+', '-']);
    let hex = unsigned
        .strip_prefix("0x")
        .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()));
    let binary = unsigned
        .strip_prefix("0b")
        .is_some_and(|b| !b.is_empty() && b.chars().all(|c| c == '0' || c == '1'));
    hex || binary || s.parse::<i64>().is_ok() || s.parse::<f64>().is_ok()
}

/// `keys` in [`go_yaml_key_order`], by a merge sort that tolerates an order that is not
/// total. go-yaml's order is not transitive for some keys (`"-001" < "-00a" < "-01"` but
/// `"-001" > "-01"`), and `sort_by` may panic on such an order ("user-provided comparison
/// function does not correctly implement a total order"); keys come from user documents
/// (component configs, labels), so this sort never panics, and for a total order it gives
/// the same result.
pub fn go_yaml_sorted(mut keys: Vec<&String>) -> Vec<&String> {
    let n = keys.len();
    let mut merged = Vec::with_capacity(n);
    let mut width = 1;
    while width < n {
        merged.clear();
        for start in (0..n).step_by(2 * width) {
            let mid = (start + width).min(n);
            let end = (start + 2 * width).min(n);
            let (mut i, mut j) = (start, mid);
            while i < mid && j < end {
                if go_yaml_key_order(keys[j], keys[i]) == Ordering::Less {
                    merged.push(keys[j]);
                    j += 1;
                } else {
                    merged.push(keys[i]);
                    i += 1;
                }
            }
            merged.extend_from_slice(&keys[i..mid]);
            merged.extend_from_slice(&keys[j..end]);
        }
        std::mem::swap(&mut keys, &mut merged);
        width *= 2;
    }
    keys
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
        let owned: Vec<String> = keys.iter().rev().map(|k| k.to_string()).collect();
        let merged: Vec<&str> = go_yaml_sorted(owned.iter().collect())
            .into_iter()
            .map(String::as_str)
            .collect();
        assert_eq!(merged, keys, "the same order where the order is total");
    }

    /// Issue 8 (found by the property tests' review): these keys of a user's component
    /// config made `sort_by` panic ("does not correctly implement a total order"), because
    /// go-yaml's key order is not transitive for them.
    #[test]
    fn keys_without_a_total_order_are_written_not_a_panic() {
        let keys = [
            "-000", "-001", "-01", "-1a", "-9", "-90", "-91", "-9a", "-a", "-a0", "-a1", "-aa",
            "-b", "-b0", "-b1", "-ba", "0", "0-", "0-0", "0-1", "0-a", "00", "00-", "00-0", "00-1",
            "00-a", "000", "0000", "00000", "0001a", "000a", "001", "0010", "00100", "00101",
            "0010a", "0011", "01a", "01a0", "01a1", "01aa", "01b", "01b0", "01b1", "01ba", "aa1",
            "aaa", "ab", "ab0", "ab1", "aba", "b", "b-", "b-0", "b-1", "b-a", "b0", "b00", "b000",
            "b001", "b010", "b011", "b01a", "b0a", "b1",
        ];
        let map: serde_json::Map<String, serde_json::Value> = keys
            .iter()
            .map(|k| (k.to_string(), serde_json::Value::Bool(true)))
            .collect();
        let text = go_yaml(&serde_json::Value::Object(map.clone()));
        assert_eq!(text.lines().count(), keys.len(), "{text}");
        let Value::Mapping(m) = sorted(&serde_json::Value::Object(map)) else {
            panic!("a mapping")
        };
        assert_eq!(m.len(), keys.len());
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
