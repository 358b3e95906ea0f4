//! Property tests of label and field selector parsing (the `labelSelector` and `fieldSelector`
//! query strings any client sends): arbitrary text never panics; a selector built from valid
//! requirements parses and matches exactly what a plain model of the rules says. The same
//! properties run under cargo-fuzz in fuzz/ (fuzz target `selectors`).

use kube_envtest::selector::{FieldSelector, LabelSelector};
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;

/// A requirement in the model: key, operator, values.
#[derive(Clone, Debug)]
enum Req {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Req {
    fn render(&self) -> String {
        match self {
            Req::Equals(k, v) => format!("{k}={v}"),
            Req::NotEquals(k, v) => format!("{k}!={v}"),
            Req::In(k, vs) => format!("{k} in ({})", vs.join(",")),
            Req::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
            Req::Exists(k) => k.clone(),
            Req::NotExists(k) => format!("!{k}"),
        }
    }

    fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Req::Equals(k, v) => labels.get(k) == Some(v),
            Req::NotEquals(k, v) => labels.get(k) != Some(v),
            Req::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Req::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Req::Exists(k) => labels.contains_key(k),
            Req::NotExists(k) => !labels.contains_key(k),
        }
    }
}

/// Few keys and values, so that generated labels often meet the requirements.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("app".to_string()),
        Just("tier".to_string()),
        Just("example.com/team".to_string()),
        "[a-z][a-z0-9-]{0,6}[a-z0-9]",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("web".to_string()),
        Just("db".to_string()),
        Just("v1.2_x".to_string()),
        "[a-z0-9]{1,5}",
    ]
}

fn requirement() -> impl Strategy<Value = Req> {
    prop_oneof![
        (key(), value()).prop_map(|(k, v)| Req::Equals(k, v)),
        (key(), value()).prop_map(|(k, v)| Req::NotEquals(k, v)),
        (key(), prop::collection::vec(value(), 1..4)).prop_map(|(k, v)| Req::In(k, v)),
        (key(), prop::collection::vec(value(), 1..4)).prop_map(|(k, v)| Req::NotIn(k, v)),
        key().prop_map(Req::Exists),
        key().prop_map(Req::NotExists),
    ]
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(key(), value(), 0..4)
}

const FIELD_PLURALS: &[&str] = &[
    "configmaps",
    "pods",
    "events",
    "secrets",
    "namespaces",
    "jobs",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,40}|[a-z!=(), ]{0,40}", plural in 0..FIELD_PLURALS.len()) {
        // What parses must also answer for an object without panicking, as in the fuzz target.
        let object = json!({"metadata": {"name": "a", "namespace": "b", "labels": {"app": "web"}}});
        if let Ok(selector) = LabelSelector::parse(&text) {
            let _ = selector.matches(&object);
        }
        if let Ok(selector) = FieldSelector::parse(&text, FIELD_PLURALS[plural]) {
            let _ = selector.matches(&object);
        }
    }

    #[test]
    fn valid_label_selectors_parse_and_match_like_the_model(
        reqs in prop::collection::vec(requirement(), 1..4),
        labels in labels(),
    ) {
        let text = reqs.iter().map(Req::render).collect::<Vec<_>>().join(",");
        let selector = LabelSelector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let want = reqs.iter().all(|r| r.holds(&labels));
        prop_assert_eq!(selector.matches_labels(&labels), want, "{} on {:?}", text, labels);
        let object = json!({"metadata": {"name": "a", "labels": labels}});
        prop_assert_eq!(selector.matches(&object), want);
    }

    #[test]
    fn field_selectors_on_name_and_namespace_match_like_the_model(
        name in "[a-z0-9]{1,3}",
        namespace in "[a-z0-9]{1,3}",
        wanted in "[a-z0-9]{1,3}",
        equal in any::<bool>(),
        on_name in any::<bool>(),
    ) {
        let field = if on_name { "metadata.name" } else { "metadata.namespace" };
        let op = if equal { "=" } else { "!=" };
        let selector = FieldSelector::parse(&format!("{field}{op}{wanted}"), "configmaps")
            .map_err(TestCaseError::fail)?;
        let actual = if on_name { &name } else { &namespace };
        let object = json!({"metadata": {"name": name, "namespace": namespace}});
        prop_assert_eq!(selector.matches(&object), (actual == &wanted) == equal);
    }
}
