//! Field sets: paths into an object in, the FieldsV1 JSON of `metadata.managedFields` out (and back).
//!
//! A path is a list of steps as structured-merge-diff has them: a field name (`f:spec`), a key
//! of an associative-list item (`k:{"name":"main"}`), the value of a set item (`v:"x"`) or an
//! index into a list whose items cannot be named (`i:0`). A set holds paths; in FieldsV1 a path
//! that is itself a member and also has members below it carries `".": {}`.

use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// One step of a path. The derived order (fields, then keys, then values, then indexes) is the
/// order structured-merge-diff sorts path elements in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    Field(String),
    /// The key fields of a map-list item as compact JSON with sorted names: `{"name":"main"}`.
    Key(String),
    /// A set item's value as compact JSON: `"x"`.
    Value(String),
    Index(usize),
}

impl PathElement {
    /// The FieldsV1 spelling: `f:name`, `k:{...}`, `v:...`, `i:0`.
    pub fn to_fields_v1(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(json) => format!("k:{json}"),
            PathElement::Value(json) => format!("v:{json}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn from_fields_v1(text: &str) -> Option<PathElement> {
        let (kind, rest) = text.split_once(':')?;
        match kind {
            "f" => Some(PathElement::Field(rest.to_string())),
            "k" => {
                let value: Value = serde_json::from_str(rest).ok()?;
                value
                    .is_object()
                    .then(|| PathElement::Key(canonical_json(&value)))
            }
            "v" => {
                let value: Value = serde_json::from_str(rest).ok()?;
                Some(PathElement::Value(canonical_json(&value)))
            }
            "i" => rest.parse().ok().map(PathElement::Index),
            _ => None,
        }
    }

    /// How the real server prints the step in a conflict: `.name`, `[name="main"]`, `[="x"]`, `[0]`.
    fn display(&self) -> String {
        match self {
            PathElement::Field(name) => format!(".{name}"),
            PathElement::Key(json) => {
                let parts = match serde_json::from_str::<Value>(json) {
                    Ok(Value::Object(keys)) => keys
                        .iter()
                        .map(|(k, v)| format!("{k}={}", canonical_json(v)))
                        .collect::<Vec<_>>(),
                    _ => vec![json.clone()],
                };
                format!("[{}]", parts.join(","))
            }
            PathElement::Value(json) => format!("[={json}]"),
            PathElement::Index(i) => format!("[{i}]"),
        }
    }
}

/// Compact JSON with object keys sorted (serde_json's map is ordered by key).
pub fn canonical_json(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

pub type Path = Vec<PathElement>;

/// A path as the real server prints it in conflict messages: `.spec.containers[name="main"].image`.
pub fn display_path(path: &[PathElement]) -> String {
    path.iter().map(PathElement::display).collect()
}

/// A set of paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    paths: BTreeSet<Path>,
}

impl FieldSet {
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    pub fn insert(&mut self, path: Path) {
        self.paths.insert(path);
    }

    pub fn contains(&self, path: &[PathElement]) -> bool {
        self.paths.contains(path)
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Path> {
        self.paths.iter()
    }

    /// Whether some member lies strictly below `prefix`.
    pub fn has_below(&self, prefix: &[PathElement]) -> bool {
        self.paths
            .range::<[PathElement], _>((
                std::ops::Bound::Excluded(prefix),
                std::ops::Bound::Unbounded,
            ))
            .next()
            .is_some_and(|p| p.len() > prefix.len() && p.starts_with(prefix))
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            paths: self.paths.union(&other.paths).cloned().collect(),
        }
    }

    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            paths: self.paths.difference(&other.paths).cloned().collect(),
        }
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            paths: self.paths.intersection(&other.paths).cloned().collect(),
        }
    }

    /// Keeps only the paths for which `keep` holds.
    pub fn filter(&self, keep: impl Fn(&Path) -> bool) -> FieldSet {
        FieldSet {
            paths: self.paths.iter().filter(|p| keep(p)).cloned().collect(),
        }
    }

    /// The FieldsV1 object: `{"f:metadata":{"f:labels":{"f:app":{}}}}`.
    pub fn to_fields_v1(&self) -> Value {
        let mut root = Map::new();
        for path in &self.paths {
            insert_path(&mut root, path, self.has_below(path));
        }
        Value::Object(root)
    }

    /// Reads a FieldsV1 object; a key that is not a FieldsV1 step is an error naming it.
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, String> {
        let mut set = FieldSet::new();
        let Value::Object(map) = value else {
            return Err("fieldsV1 must be an object".to_string());
        };
        read_node(map, &mut Vec::new(), &mut set)?;
        Ok(set)
    }
}

fn insert_path(node: &mut Map<String, Value>, path: &[PathElement], has_children: bool) {
    match path.split_first() {
        None if has_children => {
            node.insert(".".to_string(), Value::Object(Map::new()));
        }
        None => {}
        Some((first, rest)) => {
            let entry = node
                .entry(first.to_fields_v1())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(child) = entry {
                insert_path(child, rest, has_children);
            }
        }
    }
}

fn read_node(map: &Map<String, Value>, path: &mut Path, set: &mut FieldSet) -> Result<(), String> {
    for (key, child) in map {
        if key == "." {
            set.insert(path.clone());
            continue;
        }
        let element = PathElement::from_fields_v1(key)
            .ok_or_else(|| format!("invalid fieldsV1 key {key:?}"))?;
        path.push(element);
        match child {
            Value::Object(inner) if inner.is_empty() => set.insert(path.clone()),
            Value::Object(inner) => read_node(inner, path, set)?,
            _ => return Err(format!("fieldsV1 value under {key:?} must be an object")),
        }
        path.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.to_string())
    }

    #[test]
    fn fields_v1_round_trips_with_dot_for_members_that_have_children() {
        let mut set = FieldSet::new();
        let item = vec![
            f("spec"),
            f("containers"),
            PathElement::Key(r#"{"name":"main"}"#.into()),
        ];
        set.insert(item.clone());
        let mut image = item.clone();
        image.push(f("image"));
        set.insert(image);
        set.insert(vec![f("metadata"), f("labels"), f("app")]);
        set.insert(vec![
            f("metadata"),
            f("finalizers"),
            PathElement::Value(r#""x""#.into()),
        ]);
        let encoded = set.to_fields_v1();
        assert_eq!(
            encoded,
            json!({
                "f:metadata": {"f:finalizers": {"v:\"x\"": {}}, "f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"main\"}": {".": {}, "f:image": {}}}}
            })
        );
        assert_eq!(FieldSet::from_fields_v1(&encoded), Ok(set));
    }

    #[test]
    fn paths_print_like_the_real_server() {
        let path = vec![
            f("spec"),
            f("ports"),
            PathElement::Key(r#"{"containerPort":80,"protocol":"TCP"}"#.into()),
            f("name"),
        ];
        assert_eq!(
            display_path(&path),
            r#".spec.ports[containerPort=80,protocol="TCP"].name"#
        );
        assert_eq!(
            display_path(&[
                f("metadata"),
                f("finalizers"),
                PathElement::Value(r#""a""#.into())
            ]),
            r#".metadata.finalizers[="a"]"#
        );
    }

    #[test]
    fn malformed_fields_v1_is_an_error() {
        assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
    }

    #[test]
    fn has_below_sees_only_strict_descendants() {
        let mut set = FieldSet::new();
        set.insert(vec![f("a"), f("b")]);
        assert!(set.has_below(&[f("a")]));
        assert!(!set.has_below(&[f("a"), f("b")]));
        assert!(!set.has_below(&[f("ab")]));
    }
}
