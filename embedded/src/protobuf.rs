//! Kubernetes' protobuf wire format for the few built-in objects kubectl sends that way: a request
//! body in, the same object as JSON out.
//!
//! `kubectl create namespace|configmap|secret` encode their body as
//! `application/vnd.kubernetes.protobuf` (the `k8s\0` magic, then a `runtime.Unknown` envelope
//! around the object's own message). The embedded server decodes those three kinds and answers in
//! JSON, which kubectl accepts; any other kind gets a 415 that says to send JSON.

use base64::Engine;
use serde_json::{Map, Value, json};

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

/// Why a protobuf body could not be decoded; the server answers 415 (unsupported kind) or 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    #[error("malformed protobuf body: {0}")]
    Malformed(&'static str),
    #[error(
        "the embedded API server decodes protobuf only for Namespace, ConfigMap and Secret, not {0}; send JSON instead (for example `kubectl apply -f`)"
    )]
    UnsupportedKind(String),
}

/// Decodes a `k8s\0`-prefixed body into the object's JSON form.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or(ProtobufError::Malformed("missing the k8s\\0 prefix"))?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for field in Fields::new(envelope) {
        let (number, value) = field?;
        match (number, value) {
            (1, Wire::Bytes(type_meta)) => {
                for field in Fields::new(type_meta) {
                    match field? {
                        (1, Wire::Bytes(b)) => api_version = utf8(b)?,
                        (2, Wire::Bytes(b)) => kind = utf8(b)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let mut object = match kind.as_str() {
        "Namespace" => namespace(raw)?,
        "ConfigMap" => config_map(raw)?,
        "Secret" => secret(raw)?,
        other => return Err(ProtobufError::UnsupportedKind(other.to_string())),
    };
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!(kind));
    Ok(Value::Object(object))
}

fn namespace(raw: &[u8]) -> Result<Map<String, Value>, ProtobufError> {
    let mut out = Map::new();
    for field in Fields::new(raw) {
        match field? {
            (1, Wire::Bytes(b)) => {
                out.insert("metadata".into(), object_meta(b)?);
            }
            (2, Wire::Bytes(b)) => {
                let mut finalizers = Vec::new();
                for field in Fields::new(b) {
                    if let (1, Wire::Bytes(f)) = field? {
                        finalizers.push(json!(utf8(f)?));
                    }
                }
                if !finalizers.is_empty() {
                    out.insert("spec".into(), json!({ "finalizers": finalizers }));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn config_map(raw: &[u8]) -> Result<Map<String, Value>, ProtobufError> {
    let mut out = Map::new();
    let (mut data, mut binary) = (Map::new(), Map::new());
    for field in Fields::new(raw) {
        match field? {
            (1, Wire::Bytes(b)) => {
                out.insert("metadata".into(), object_meta(b)?);
            }
            (2, Wire::Bytes(b)) => {
                let (k, v) = map_entry(b)?;
                data.insert(utf8(k)?, json!(utf8(v)?));
            }
            (3, Wire::Bytes(b)) => {
                let (k, v) = map_entry(b)?;
                binary.insert(utf8(k)?, json!(base64_of(v)));
            }
            (4, Wire::Varint(v)) => {
                out.insert("immutable".into(), json!(v != 0));
            }
            _ => {}
        }
    }
    insert_nonempty(&mut out, "data", data);
    insert_nonempty(&mut out, "binaryData", binary);
    Ok(out)
}

fn secret(raw: &[u8]) -> Result<Map<String, Value>, ProtobufError> {
    let mut out = Map::new();
    let (mut data, mut string_data) = (Map::new(), Map::new());
    for field in Fields::new(raw) {
        match field? {
            (1, Wire::Bytes(b)) => {
                out.insert("metadata".into(), object_meta(b)?);
            }
            (2, Wire::Bytes(b)) => {
                let (k, v) = map_entry(b)?;
                data.insert(utf8(k)?, json!(base64_of(v)));
            }
            (3, Wire::Bytes(b)) => {
                out.insert("type".into(), json!(utf8(b)?));
            }
            (4, Wire::Varint(v)) => {
                out.insert("immutable".into(), json!(v != 0));
            }
            (5, Wire::Bytes(b)) => {
                let (k, v) = map_entry(b)?;
                string_data.insert(utf8(k)?, json!(utf8(v)?));
            }
            _ => {}
        }
    }
    insert_nonempty(&mut out, "data", data);
    insert_nonempty(&mut out, "stringData", string_data);
    Ok(out)
}

/// The ObjectMeta fields a client sets on create; server-owned fields are ignored.
fn object_meta(raw: &[u8]) -> Result<Value, ProtobufError> {
    let mut out = Map::new();
    let (mut labels, mut annotations, mut finalizers) = (Map::new(), Map::new(), Vec::new());
    for field in Fields::new(raw) {
        match field? {
            (1, Wire::Bytes(b)) => {
                out.insert("name".into(), json!(utf8(b)?));
            }
            (2, Wire::Bytes(b)) => {
                out.insert("generateName".into(), json!(utf8(b)?));
            }
            (3, Wire::Bytes(b)) => {
                out.insert("namespace".into(), json!(utf8(b)?));
            }
            (11, Wire::Bytes(b)) => {
                let (k, v) = map_entry(b)?;
                labels.insert(utf8(k)?, json!(utf8(v)?));
            }
            (12, Wire::Bytes(b)) => {
                let (k, v) = map_entry(b)?;
                annotations.insert(utf8(k)?, json!(utf8(v)?));
            }
            (14, Wire::Bytes(b)) => finalizers.push(json!(utf8(b)?)),
            _ => {}
        }
    }
    insert_nonempty(&mut out, "labels", labels);
    insert_nonempty(&mut out, "annotations", annotations);
    if !finalizers.is_empty() {
        out.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(out))
}

fn insert_nonempty(out: &mut Map<String, Value>, key: &str, map: Map<String, Value>) {
    if !map.is_empty() {
        out.insert(key.into(), Value::Object(map));
    }
}

/// A protobuf map entry: field 1 the key, field 2 the value (both default to empty).
fn map_entry(raw: &[u8]) -> Result<(&[u8], &[u8]), ProtobufError> {
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    for field in Fields::new(raw) {
        match field? {
            (1, Wire::Bytes(b)) => key = b,
            (2, Wire::Bytes(b)) => value = b,
            _ => {}
        }
    }
    Ok((key, value))
}

fn utf8(b: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(b.to_vec()).map_err(|_| ProtobufError::Malformed("a string is not UTF-8"))
}

fn base64_of(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// One field's value, by wire type.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Iterates over the (field number, value) pairs of one message.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Self { rest }
    }

    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .rest
                .split_first()
                .ok_or(ProtobufError::Malformed("truncated varint"))?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtobufError::Malformed("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        if n > self.rest.len() {
            return Err(ProtobufError::Malformed("truncated field"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Wire<'a>), ProtobufError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let field = (|| {
            let key = self.varint()?;
            let number = key >> 3;
            let value = match key & 7 {
                0 => Wire::Varint(self.varint()?),
                1 => {
                    self.take(8)?;
                    Wire::Fixed
                }
                2 => {
                    let len = usize::try_from(self.varint()?)
                        .map_err(|_| ProtobufError::Malformed("length overflows"))?;
                    Wire::Bytes(self.take(len)?)
                }
                5 => {
                    self.take(4)?;
                    Wire::Fixed
                }
                _ => return Err(ProtobufError::Malformed("unsupported wire type")),
            };
            Ok((number, value))
        })();
        if field.is_err() {
            self.rest = &[];
        }
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn bytes(number: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(number << 3 | 2, &mut out);
        varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    }

    fn entry(number: u64, k: &str, v: &[u8]) -> Vec<u8> {
        bytes(number, &[bytes(1, k.as_bytes()), bytes(2, v)].concat())
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [bytes(1, api_version.as_bytes()), bytes(2, kind.as_bytes())].concat();
        [
            MAGIC.to_vec(),
            bytes(1, &type_meta),
            bytes(2, raw),
            bytes(4, b"application/vnd.kubernetes.protobuf"),
        ]
        .concat()
    }

    #[test]
    fn decodes_a_namespace() {
        let meta = [bytes(1, b"demo"), entry(11, "team", b"a")].concat();
        let body = envelope("v1", "Namespace", &bytes(1, &meta));
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": "demo", "labels": {"team": "a"}}})
        );
    }

    #[test]
    fn decodes_a_config_map_and_a_secret() {
        let meta = [bytes(1, b"c"), bytes(3, b"ns")].concat();
        let cm = [bytes(1, &meta), entry(2, "a", b"x"), entry(2, "b", b"")].concat();
        assert_eq!(
            decode(&envelope("v1", "ConfigMap", &cm)).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c", "namespace": "ns"}, "data": {"a": "x", "b": ""}})
        );
        let secret = [
            bytes(1, &meta),
            entry(2, "token", b"\x00\xff"),
            bytes(3, b"Opaque"),
        ]
        .concat();
        assert_eq!(
            decode(&envelope("v1", "Secret", &secret)).unwrap(),
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": "c", "namespace": "ns"}, "data": {"token": "AP8="}})
        );
    }

    #[test]
    fn other_kinds_and_garbage_are_refused() {
        assert_eq!(
            decode(&envelope("batch/v1", "Job", &[])).unwrap_err(),
            ProtobufError::UnsupportedKind("Job".into())
        );
        assert!(matches!(decode(b"{}"), Err(ProtobufError::Malformed(_))));
        let truncated = [MAGIC.to_vec(), vec![0x0a, 0x05, b'a']].concat();
        assert!(matches!(
            decode(&truncated),
            Err(ProtobufError::Malformed(_))
        ));
    }
}
