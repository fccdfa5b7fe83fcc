//! Kickstart import against pykickstart: what `kiln import kickstart --json` reads from Fedora 43's
//! kickstarts (../shared), the shipped ones and tests/kickstart/ must equal what pykickstart reads.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::root;

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("kiln runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Fedora 43's kickstarts: cloud, container, disk and live images, which %include each other.
const FEDORA: &[&str] = &[
    "fedora-cloud-base.ks",
    "fedora-cloud-base-azure.ks",
    "fedora-cloud-base-gcp.ks",
    "fedora-cloud-base-vagrant.ks",
    "fedora-container-base.ks",
    "fedora-container-base-minimal.ks",
    "fedora-container-toolbox.ks",
    "fedora-disk-server.ks",
    "fedora-disk-workstation.ks",
    "fedora-eln-guest.ks",
    "fedora-live-kde.ks",
    "fedora-live-workstation.ks",
    "fedora-server-vm-full.ks",
    "fedora-modular-disk-minimal.ks",
    "azure-flat.ks",
];

fn inputs() -> Vec<PathBuf> {
    let fedora = root().join("../shared/data/kickstarts/fedora-43");
    assert!(
        fedora.is_dir(),
        "{} is missing: the Fedora kickstarts live in ../shared beside the clone",
        fedora.display()
    );
    let mut files: Vec<PathBuf> = FEDORA.iter().map(|f| fedora.join(f)).collect();
    for dir in ["kickstart", "tests/kickstart"] {
        let mut own: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "ks"))
            .collect();
        own.sort();
        files.extend(own);
    }
    files
}

fn pykickstart(file: &Path) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(root().join("tests/kickstart/pyks_dump.py"))
        .arg(file)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "pykickstart could not read {} (tests/run installs it: python3 -m pip install pykickstart):\n{}",
        file.display(),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn kiln_reads_kickstarts_as_pykickstart_does() {
    let files = inputs();
    assert!(files.len() >= 20, "{files:?}");
    for file in files {
        let want = pykickstart(&file);
        let out = kiln(&["import", "kickstart", "--json", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            text(&out.stderr)
        );
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let (want, got) = (want.as_object().unwrap(), got.as_object().unwrap());
        assert_eq!(
            want.keys().collect::<Vec<_>>(),
            got.keys().collect::<Vec<_>>(),
            "{}: the same fields",
            file.display()
        );
        for (key, w) in want {
            assert_eq!(
                &got[key],
                w,
                "{}: `{key}` differs from pykickstart's",
                file.display()
            );
        }
    }
}

#[test]
fn shipped_kickstarts_convert_and_validate() {
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("kickstart")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "ks") {
            continue;
        }
        n += 1;
        let rel = path
            .strip_prefix(root())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let out = kiln(&["import", "kickstart", &rel]);
        assert!(out.status.success(), "{rel}: {}", text(&out.stderr));
        // The YAML it prints is a definition kiln accepts, equal to the kickstart's own.
        let dir = common::temp_dir("kickstart-import");
        let yaml = dir.join("imported.yaml");
        std::fs::write(&yaml, &out.stdout).unwrap();
        let from_yaml = kiln(&["validate", "--show", yaml.to_str().unwrap()]);
        let from_ks = kiln(&["validate", "--show", &rel]);
        assert!(
            from_yaml.status.success(),
            "{rel}: {}",
            text(&from_yaml.stderr)
        );
        assert!(from_ks.status.success(), "{rel}: {}", text(&from_ks.stderr));
        assert_eq!(text(&from_yaml.stdout), text(&from_ks.stdout), "{rel}");
    }
    assert!(n >= 3, "the Azure Linux kickstarts are shipped");
}

#[test]
fn import_prints_yaml() {
    let out = kiln(&["import", "kickstart", "tests/kickstart/convert.ks"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    insta::assert_snapshot!("import_convert_ks", text(&out.stdout));
}

#[test]
fn refusals_name_file_line_and_what_to_do() {
    let out = kiln(&["import", "kickstart", "tests/kickstart/commands.ks"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for want in [
        "tests/kickstart/commands.ks:4:1: `repo --includepkgs` (repository `linked one`) cannot be represented",
        "tests/kickstart/commands.ks:9:1: `firewall` --service/--port/--trust/--remove-service cannot be represented",
        "tests/kickstart/inc/packages.ks:4:1: environment group `@^server-product-environment` is not supported",
        "tests/kickstart/commands.ks:24:1: `part / --grow --maxsize`",
        "help: keep `firewall --enabled` and run `firewall-offline-cmd",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(
        out.stdout.is_empty(),
        "nothing is printed for a refused kickstart"
    );
}

#[test]
fn build_and_validate_take_kickstarts_and_yaml_may_extend_one() {
    let dir = common::temp_dir("kickstart-extends");
    let yaml = dir.join("signed.yaml");
    let ks = root().join("kickstart/azurelinux-4.0-container-base.ks");
    std::fs::write(
        &yaml,
        format!(
            "extends: [{}]\nname: signed\nrepositories:\n  - {{id: azurelinux-base, gpgcheck: true, gpgkey: [https://example.com/key]}}\n  - {{id: azurelinux-microsoft, gpgcheck: true, gpgkey: [https://example.com/key]}}\n",
            ks.display()
        ),
    )
    .unwrap();
    let out = kiln(&["validate", "--show", yaml.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["x86_64"]["repositories"][0]["gpgcheck"], true);
    assert_eq!(v["x86_64"]["packages"]["install"][0], "filesystem");
    assert!(!text(&out.stderr).contains("will not be checked"));
}

/// `kiln build FILE.ks` end to end on the fixture repository: the repository, packages, host
/// name, a user whose supplementary group anaconda would create, and a %post that runs in the
/// image.
#[test]
fn a_kickstart_builds() {
    let dir = common::temp_dir("kickstart-build");
    let ks = dir.join("app.ks");
    std::fs::write(
        &ks,
        format!(
            "repo --name=fixture --baseurl=file://{}\nnetwork --hostname=ks-app\ntimezone UTC\nrootpw --lock\nuser --name=alice --uid=1500 --groups=wheel --lock\n%packages --nocore\nfx-app\n%end\n%post --erroronfail\necho built-by-kickstart > /etc/ks-marker\n%end\n",
            common::fixture_repo().display()
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let o = common::kiln_build(&ks, &out, "dir");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let tree = out.join("app-x86_64");
    let read = |p: &str| std::fs::read_to_string(tree.join(p)).unwrap();
    assert_eq!(read("etc/ks-marker"), "built-by-kickstart\n");
    assert_eq!(read("etc/hostname"), "ks-app\n");
    assert!(read("etc/passwd").contains("alice:x:1500:1500:"));
    assert!(
        read("etc/group")
            .lines()
            .any(|l| l.starts_with("wheel:") && l.ends_with(":alice")),
        "{}",
        read("etc/group")
    );
    let names = std::fs::read_to_string(out.join("app-x86_64.mtree")).unwrap();
    assert!(names.contains("./usr/bin/fx-app "), "fx-app not installed");
    let _ = std::fs::remove_dir_all(&dir);
}
