//! Fixtures for unit tests: an example CustomResourceDefinition with a status subresource,
//! printer columns, enums and defaults.

pub fn example_crd() -> serde_json::Value {
    serde_json::from_str(include_str!("testdata/example-crd.json")).expect("the fixture is JSON")
}
