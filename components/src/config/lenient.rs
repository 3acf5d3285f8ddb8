//! Lenient decoding of the (strict) config API types, for what a cluster already holds: a
//! serde `Deserializer` over a YAML value that, wherever a struct is read, drops the keys
//! that struct does not have, so `deny_unknown_fields` never fires (kubeadm reads the
//! `kubeadm-config` ConfigMap with its non-strict UniversalDecoder the same way).
//!
//! The known keys come from the types themselves (the field list serde's derive passes to
//! `deserialize_struct`), so the strict reader of users' files and this lenient reader can
//! never disagree about which fields exist.

use serde::de::Visitor;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess};
use yaml_serde::Value;

/// Decodes `value` into `T`, ignoring every field `T` (or a struct inside it) does not know.
pub(crate) fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, yaml_serde::Error> {
    T::deserialize(Lenient(value))
}

struct Lenient(Value);

struct Map {
    entries: std::vec::IntoIter<(Value, Value)>,
    value: Option<Value>,
}

struct Seq(std::vec::IntoIter<Value>);

impl<'de> MapAccess<'de> for Map {
    type Error = yaml_serde::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        let value = self.value.take().ok_or_else(|| {
            <yaml_serde::Error as de::Error>::custom("a map value was read before its key")
        })?;
        seed.deserialize(Lenient(value))
    }
}

impl<'de> SeqAccess<'de> for Seq {
    type Error = yaml_serde::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Self::Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(Lenient(v)))
            .transpose()
    }
}

fn map(entries: Vec<(Value, Value)>) -> Map {
    Map {
        entries: entries.into_iter(),
        value: None,
    }
}

/// Scalars carry no fields to drop: they go to the YAML value's own deserializer.
macro_rules! forward_to_value {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                self.0.$method(visitor)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for Lenient {
    type Error = yaml_serde::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Sequence(s) => visitor.visit_seq(Seq(s.into_iter())),
            Value::Mapping(m) => visitor.visit_map(map(m.into_iter().collect())),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Lenient(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Sequence(s) => visitor.visit_seq(Seq(s.into_iter())),
            other => other.deserialize_seq(visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Mapping(m) => visitor.visit_map(map(m.into_iter().collect())),
            other => other.deserialize_map(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Mapping(m) => {
                let known = m
                    .into_iter()
                    .filter(|(k, _)| k.as_str().is_some_and(|k| fields.contains(&k)))
                    .collect();
                visitor.visit_map(map(known))
            }
            other => other.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    forward_to_value! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier deserialize_ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::v1beta2;

    fn value(text: &str) -> Value {
        yaml_serde::from_str(text).expect("test YAML")
    }

    #[test]
    fn unknown_fields_at_every_depth_are_dropped() {
        let text = "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\nfuture: 1\n\
                    apiServer:\n  newThing: [1, 2]\n  certSANs: [a.example]\n  extraVolumes:\n  - name: v\n    hostPath: /h\n    mountPath: /m\n    shiny: true\n\
                    etcd:\n  local:\n    dataDir: /var/lib/etcd\n    unknown: {a: b}\n";
        // The strict reader refuses this document...
        assert!(yaml_serde::from_str::<v1beta2::ClusterConfiguration>(text).is_err());
        // ...the lenient one keeps every known field.
        let c: v1beta2::ClusterConfiguration = from_value(value(text)).unwrap();
        assert_eq!(c.api_server.cert_sans, vec!["a.example"]);
        assert_eq!(c.api_server.extra_volumes[0].host_path, "/h");
        assert_eq!(c.etcd.local.unwrap().data_dir, "/var/lib/etcd");
    }

    #[test]
    fn maps_keep_every_key_and_types_are_still_checked() {
        let c: v1beta2::ClusterConfiguration = from_value(value(
            "apiServer:\n  extraArgs:\n    any-flag: x\n    other: y\nfeatureGates:\n  Future: true\n",
        ))
        .unwrap();
        assert_eq!(c.api_server.extra_args.len(), 2);
        assert_eq!(c.feature_gates.get("Future"), Some(&true));
        let e = from_value::<v1beta2::ClusterConfiguration>(value(
            "networking:\n  serviceSubnet: [not, a, string]\n",
        ));
        assert!(e.is_err());
    }

    #[test]
    fn null_and_absent_options() {
        let n: v1beta2::NodeRegistrationOptions =
            from_value(value("taints: null\nname: n\n")).unwrap();
        assert_eq!(n.taints, None);
        let n: v1beta2::NodeRegistrationOptions =
            from_value(value("taints: []\nname: n\n")).unwrap();
        assert_eq!(n.taints, Some(vec![]));
    }
}
