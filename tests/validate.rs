//! `kiln validate` on real files, run as the real binary: every shipped definition is accepted,
//! every broken one under tests/definitions/invalid is rejected with its message and location.

mod common;

use std::process::{Command, Output};

use common::{root, shipped_definitions, yaml_files};

/// Runs kiln from the repository root, so paths in messages are relative and stable.
fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .env("KILN_CACHE_DIR", root().join("target/test-cache"))
        .output()
        .expect("kiln runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn shipped_and_example_definitions_validate() {
    let files = shipped_definitions();
    assert!(
        files.len() >= 15,
        "expected the shipped definitions, found {files:?}"
    );
    for f in files {
        let out = kiln(&["validate", f.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{} was rejected:\n{}",
            f.display(),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).starts_with("ok: "),
            "{}",
            text(&out.stdout)
        );
    }
}

#[test]
fn shipped_kickstarts_validate() {
    let mut files: Vec<_> = std::fs::read_dir(root().join("kickstart"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ks"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for f in files {
        let rel = f
            .strip_prefix(root())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let out = kiln(&["validate", &rel]);
        assert!(out.status.success(), "{rel}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).starts_with("ok: "),
            "{}",
            text(&out.stdout)
        );
    }
}

#[test]
fn broken_definitions_are_rejected_with_location() {
    let count = yaml_files("tests/definitions/invalid")
        .iter()
        .filter(|p| !p.starts_with("tests/definitions/invalid/support"))
        .count();
    assert!(count >= 20, "only {count} broken definitions");
    insta::glob!("definitions/invalid/*.yaml", |path| {
        let rel = path.strip_prefix(root()).unwrap();
        let out = kiln(&["validate", rel.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{} was accepted", rel.display());
        let stderr = text(&out.stderr);
        // The first line names the file, line and column.
        let first = stderr
            .lines()
            .find(|l| l.contains(" × "))
            .unwrap_or_default();
        assert!(
            first.contains(&format!("{}:", rel.display())) || first.contains("support/"),
            "no location in {first:?}"
        );
        let root_pattern = regex_escape(&root().display().to_string());
        insta::with_settings!({
            filters => vec![(root_pattern.as_str(), "[ROOT]")],
            prepend_module_to_snapshot => false,
        }, {
            insta::assert_snapshot!(stderr);
        });
    });
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

#[test]
fn merge_rules_end_to_end() {
    let out = kiln(&[
        "validate",
        "--show",
        "tests/definitions/valid/merge/child.yaml",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // child.yaml narrows the architectures (a replaced list).
    assert_eq!(
        v.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["x86_64"]
    );
    insta::assert_json_snapshot!("merge_child", v);
}

#[test]
fn per_arch_sections_and_arch_filter() {
    let out = kiln(&[
        "validate",
        "--show",
        "--arch",
        "aarch64",
        "tests/definitions/valid/full.yaml",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let install = &v["aarch64"]["packages"]["install"];
    assert!(
        install
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "grub2-efi-aa64")
    );
    assert!(
        !install
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "grub2-efi-x64")
    );
    assert_eq!(
        v["aarch64"]["repositories"][0]["baseurl"][0],
        "https://mirror.example/azurelinux/4.0/base/aarch64"
    );
    assert!(v.get("x86_64").is_none());

    let out = kiln(&[
        "validate",
        "--arch",
        "aarch64",
        "tests/definitions/valid/merge/child.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("--arch aarch64 was asked for, but this definition builds only x86_64")
    );
}

#[test]
fn relative_paths_follow_the_file_that_names_them() {
    let out = kiln(&["validate", "--show", "examples/demo.yaml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let baseurl = v["x86_64"]["repositories"][0]["baseurl"][0]
        .as_str()
        .unwrap();
    let expected = format!("file://{}/examples/sample-repo", root().display());
    assert_eq!(baseurl, expected);
}

#[test]
fn outputs_not_implemented_yet_say_so_and_fail() {
    // vhdx has no backend yet; the definition is checked first.
    let out = kiln(&["build", "examples/demo.yaml", "--format", "vhdx,oci"]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("not implemented yet"), "{err}");
    assert!(err.contains("`--format vhd` writes the fixed VHD"), "{err}");
    // An invalid definition is reported as such first.
    let out = kiln(&["build", "tests/definitions/invalid/unknown-key.yaml"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn missing_file_and_usage_errors() {
    let out = kiln(&["validate", "does/not/exist.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read does/not/exist.yaml"));
    let out = kiln(&["validate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = kiln(&["validate", "--arch", "sparc", "examples/demo.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown architecture `sparc`"));
}

#[test]
fn completions_are_generated() {
    let out = kiln(&["completions", "bash"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("validate"));
}
