//! Label and field selector strings from fuzz bytes: parsing must not panic, and a parsed label
//! selector must answer for an object without panicking.
#![no_main]

use kube_envtest::selector::{FieldSelector, LabelSelector};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let object =
        serde_json::json!({"metadata": {"name": "a", "namespace": "b", "labels": {"app": "web"}}});
    if let Ok(selector) = LabelSelector::parse(&text) {
        let _ = selector.matches(&object);
    }
    for plural in ["configmaps", "pods", "events", "secrets", "namespaces"] {
        if let Ok(selector) = FieldSelector::parse(&text, plural) {
            let _ = selector.matches(&object);
        }
    }
});
