//! The fixture repositories: built by tests/fixtures/build (cached, flock-safe), then checked with
//! the real tools — dnf repoclosure and rpm -K — through tests/fixtures/verify.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::root;

/// Runs a fixture script; on failure shows what it printed, which names any missing tool.
fn script(name: &str, args: &[&str]) -> String {
    let out = Command::new(root().join("tests/fixtures").join(name))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run tests/fixtures/{name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tests/fixtures/{name} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn built(args: &[&str]) -> Vec<PathBuf> {
    script("build", args).lines().map(PathBuf::from).collect()
}

#[test]
fn kiln_fixture_repository_passes_dnf_and_rpm() {
    let repos = built(&[]);
    let repo = &repos[0];
    assert!(repo.ends_with("kiln"), "{repos:?}");
    let rpms = std::fs::read_dir(repo.join("Packages")).unwrap().count();
    assert!(rpms >= 40, "only {rpms} fixture packages");
    let report = script(
        "verify",
        &[
            repo.to_str().unwrap(),
            "--expect-unresolved",
            "tests/fixtures/expected-unresolved.txt",
        ],
    );
    assert!(!report.is_empty());
}

#[test]
fn fixture_packages_use_every_payload_compression() {
    let repo = &built(&[])[0];
    let out = Command::new("rpm")
        .args([
            "-qp",
            "--nosignature",
            "--nodigest",
            "--qf",
            "%{PAYLOADCOMPRESSOR}\n",
        ])
        .args(
            std::fs::read_dir(repo.join("Packages"))
                .unwrap()
                .map(|e| e.unwrap().path()),
        )
        .output()
        .expect("rpm runs");
    let text = String::from_utf8_lossy(&out.stdout);
    for c in ["zstd", "xz", "gzip"] {
        assert!(
            text.lines().any(|l| l == c),
            "no {c} payload among:\n{text}"
        );
    }
}

#[test]
fn debian_binary_repositories_build_and_verify() {
    let repos = built(&["--debian"]);
    let names: Vec<String> = repos
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "kiln",
            "debian-minimal",
            "debian-boot",
            "debian-server",
            "debian-dracut",
            "azl-alias"
        ]
    );
    for repo in &repos[1..5] {
        script("verify", &[repo.to_str().unwrap()]);
    }
    // The boot profile carries what a VM needs: a kernel and systemd.
    let manifest = std::fs::read_to_string(repos[2].join("manifest.tsv")).unwrap();
    for pkg in ["linux-image-", "systemd\t", "systemd-boot-efi"] {
        assert!(manifest.contains(pkg), "debian-boot lacks {pkg}");
    }
    // The server profile carries a language runtime, CA certificates and time zones.
    let manifest = std::fs::read_to_string(repos[3].join("manifest.tsv")).unwrap();
    for pkg in [
        "python3\t",
        "ca-certificates\t",
        "tzdata\t",
        "openssh-server\t",
        "grub-efi-amd64-bin\t",
        "grub-common\t",
    ] {
        assert!(manifest.contains(pkg), "debian-server lacks {pkg}");
    }
    // debian-dracut has dracut where the others have initramfs-tools.
    let manifest = std::fs::read_to_string(repos[4].join("manifest.tsv")).unwrap();
    assert!(manifest.contains("dracut\t") && !manifest.contains("initramfs-tools"));
    // Every Azure Linux name in azl-alias installs over debian-server, all together.
    let aliases = Command::new("rpm")
        .args(["-qp", "--qf", "%{NAME}\n"])
        .args(
            std::fs::read_dir(repos[5].join("Packages"))
                .unwrap()
                .map(|e| e.unwrap().path()),
        )
        .output()
        .unwrap();
    let aliases = String::from_utf8(aliases.stdout).unwrap();
    let aliases: Vec<&str> = aliases.lines().collect();
    assert!(aliases.len() > 30, "{aliases:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("resolve")
        .arg("--repo")
        .arg(&repos[5])
        .arg("--repo")
        .arg(&repos[3])
        .args(&aliases)
        .env(
            "KILN_CACHE_DIR",
            root().join("target/test-tmp/fixtures-cache"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the aliases do not install together:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn committed_sample_repository_is_current_and_valid() {
    let sample = root().join("examples/sample-repo");
    script(
        "build-repo",
        &[
            "examples/sample-repo/specs",
            "examples/sample-repo",
            "--comps",
            "examples/sample-repo/comps.xml",
            "--sign",
            "target/fixtures/sample-gnupg",
            "--key-name",
            "RPM-GPG-KEY-kiln-sample",
            "--repo-id",
            "kiln-sample",
            "--check",
        ],
    );
    script("verify", &[sample.to_str().unwrap()]);
}
