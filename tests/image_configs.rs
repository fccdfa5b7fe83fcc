//! The shipped Azure Linux 4.0 definitions (`image-configs/`) built here: `--repo-file` puts the
//! `azl-alias` fixture (Azure Linux names over Debian binaries) in place of Azure's repositories;
//! every artifact's SPDX document must pass pyspdxtools.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{EPOCH, debian_fixture, root, run, spdx_validate, temp_dir, text};

/// A .repo file with the alias repository and the Debian server binaries behind it.
fn repo_file(dir: &Path) -> PathBuf {
    let mut all = String::new();
    for (repo, file) in [
        ("azl-alias", "kiln-fixture.repo"),
        ("debian-server", "debrpm.repo"),
    ] {
        all.push_str(&std::fs::read_to_string(debian_fixture(repo).join(file)).unwrap());
        all.push('\n');
    }
    let f = dir.join("mirror.repo");
    std::fs::write(&f, all).unwrap();
    f
}

fn build(config: &str, repo_file: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("build")
        .arg(root().join("image-configs/azurelinux-4.0").join(config))
        .arg("--repo-file")
        .arg(repo_file)
        .args(["--arch", "x86_64", "--output"])
        .arg(out)
        .env("KILN_CACHE_DIR", root().join("target/test-tmp/build-cache"))
        .env("NO_COLOR", "1")
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap()
}

/// `skopeo inspect --config` of an OCI layout's `latest` tag.
fn oci_config(layout: &Path) -> serde_json::Value {
    let o = run(Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!("oci:{}:latest", layout.display())));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn container_and_wsl_configs_build_from_a_mirror() {
    let dir = temp_dir("image-configs");
    let repos = repo_file(&dir);
    let out = dir.join("out");
    for (config, name) in [
        ("distroless-minimal.yaml", "azurelinux-distroless-minimal"),
        ("distroless-base.yaml", "azurelinux-distroless-base"),
        ("distroless-debug.yaml", "azurelinux-distroless-debug"),
        ("container-base.yaml", "azurelinux-base-core"),
        ("runtime-python.yaml", "azurelinux-python"),
    ] {
        let o = build(config, &repos, &out);
        assert!(o.status.success(), "{config}: {}", text(&o.stderr));
        let c = oci_config(&out.join(format!("{name}.oci")));
        spdx_validate(&out.join(format!("{name}.oci.spdx.json")));
        let user = c["config"]["User"].as_str().unwrap_or("");
        let entry = &c["config"]["Entrypoint"];
        match config {
            "container-base.yaml" => {
                assert_eq!(user, "root", "{config}");
                assert_eq!(c["config"]["Cmd"], serde_json::json!(["/bin/bash"]));
            }
            "distroless-debug.yaml" => {
                assert_eq!(user, "65532:65532", "{config}");
                assert_eq!(entry, &serde_json::json!(["/usr/sbin/busybox", "sh"]));
            }
            "runtime-python.yaml" => {
                assert_eq!(user, "65532:65532", "{config}");
                assert_eq!(entry, &serde_json::json!(["/usr/bin/python3"]));
            }
            _ => assert_eq!(user, "65532:65532", "{config}"),
        }
        assert_eq!(
            c["config"]["Labels"]["org.opencontainers.image.version"], "4.0",
            "{config}"
        );
    }
    let o = build("wsl.yaml", &repos, &out);
    assert!(o.status.success(), "wsl.yaml: {}", text(&o.stderr));
    spdx_validate(&out.join("azurelinux-wsl-x86_64.wsl.spdx.json"));
    let listing = run(Command::new("tar")
        .arg("-tzf")
        .arg(out.join("azurelinux-wsl-x86_64.wsl")));
    let listing = text(&listing.stdout);
    for want in ["etc/wsl-distribution.conf", "etc/wsl.conf", "bin/bash"] {
        assert!(listing.lines().any(|l| l == want), "{want} not in the .wsl");
    }
    let info: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("azurelinux-wsl.DistributionInfo.json")).unwrap(),
    )
    .unwrap();
    assert!(info["ModernDistributions"].is_object(), "{info}");

    // The Node.js runtime needs nodejs, which no fixture has: a clear refusal naming it.
    let o = build("runtime-nodejs.yaml", &repos, &out);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("nodejs"), "{}", text(&o.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
