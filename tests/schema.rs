//! `kiln schema` is a JSON Schema that accepts every shipped definition and rejects broken ones,
//! checked with an independent validator (the `jsonschema` crate) on the YAML read as data.

mod common;

use std::path::Path;
use std::process::Command;

use common::{root, shipped_definitions};

fn schema() -> jsonschema::Validator {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("schema")
        .output()
        .expect("kiln runs");
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("schema is JSON");
    jsonschema::draft202012::new(&schema).expect("the schema is a valid 2020-12 schema")
}

/// Reads YAML as a generic editor or linter would (YAML 1.2 core types).
fn yaml_as_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_str_with_options(&text, options)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn schema_accepts_every_shipped_definition() {
    let validator = schema();
    let files = shipped_definitions();
    assert!(files.len() >= 15);
    for f in files {
        let doc = yaml_as_json(&root().join(&f));
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", f.display());
    }
}

#[test]
fn schema_rejects_what_kiln_rejects_for_shape() {
    let validator = schema();
    // Broken definitions whose fault is structural (not semantic): the schema catches them too.
    // (Required keys are not among them: a file that extends others may leave them to its base.)
    for name in [
        "unknown-key",
        "unknown-nested-key",
        "boolean-yes",
        "scalar-for-list",
        "unknown-arch",
        "bad-size",
        "bad-partition-type",
        "uid-out-of-range",
        "per-arch-unknown",
    ] {
        let f = root().join(format!("tests/definitions/invalid/{name}.yaml"));
        let doc = yaml_as_json(&f);
        assert!(!validator.is_valid(&doc), "{name} passed the schema");
    }
}
