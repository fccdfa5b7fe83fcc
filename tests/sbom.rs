//! The SBOMs and the report of `kiln build`: every image artifact's SPDX document is accepted
//! by pyspdxtools and lists what `rpm -qa` (or the distroless manifest) lists, with purls and the
//! RPM files' sha256; two builds give the same bytes; the summary, `--json` and `-q`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    EPOCH, Repo, kiln_build, kiln_build_cmd, run, spdx_validate, temp_dir, text, write_definition,
};
use sha2::{Digest, Sha256};

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn json_file(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The RPM packages of a document: purl → (SPDX package). The artifact package is left out.
fn rpm_packages(doc: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["SPDXID"] != "SPDXRef-Artifact")
        .map(|p| {
            let purl = p["externalRefs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["referenceType"] == "purl")
                .unwrap()["referenceLocator"]
                .as_str()
                .unwrap()
                .to_string();
            (purl, p.clone())
        })
        .collect()
}

/// What the document says the artifact is: its checksum, and the ids it CONTAINS.
fn artifact_of(doc: &serde_json::Value) -> (String, BTreeSet<String>) {
    let art = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["SPDXID"] == "SPDXRef-Artifact")
        .unwrap();
    assert_eq!(art["checksums"][0]["algorithm"], "SHA256");
    let rels = doc["relationships"].as_array().unwrap();
    assert!(rels.iter().any(|r| r["spdxElementId"] == "SPDXRef-DOCUMENT"
        && r["relationshipType"] == "DESCRIBES"
        && r["relatedSpdxElement"] == "SPDXRef-Artifact"));
    let contains = rels
        .iter()
        .filter(|r| r["spdxElementId"] == "SPDXRef-Artifact" && r["relationshipType"] == "CONTAINS")
        .map(|r| r["relatedSpdxElement"].as_str().unwrap().to_string())
        .collect();
    (
        art["checksums"][0]["checksumValue"]
            .as_str()
            .unwrap()
            .to_string(),
        contains,
    )
}

/// The purls rpm's own query gives for the packages of a tree.
fn purls_from_rpm(tree: &Path) -> BTreeSet<String> {
    let out = run(Command::new("rpm").arg("--root").arg(tree).args([
        "--dbpath",
        "/usr/lib/sysimage/rpm",
        "-qa",
        "--qf",
        "%{NAME} %{VERSION}-%{RELEASE} %{ARCH} %{EPOCH}\\n",
    ]));
    text(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let mut p = format!(
                "pkg:rpm/azurelinux/{}@{}?arch={}",
                f[0].replace('+', "%2B"),
                f[1].replace('+', "%2B"),
                f[2]
            );
            if f[3] != "(none)" {
                p.push_str(&format!("&epoch={}", f[3]));
            }
            p
        })
        .collect()
}

/// sha256 of every RPM file of a repository, by file name.
fn repo_rpms(repo: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![repo.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rpm") {
                out.insert(e.file_name().to_string_lossy().into_owned(), sha256(&p));
            }
        }
    }
    out
}

/// Every RPM package's checksum is the sha256 of the file `NAME-VERSION-RELEASE.ARCH.rpm` of
/// the repository it came from.
fn assert_rpm_checksums(doc: &serde_json::Value, rpms: &BTreeMap<String, String>) {
    for (purl, p) in rpm_packages(doc) {
        let evr = p["versionInfo"].as_str().unwrap();
        let vr = evr.split_once(':').map_or(evr, |(_, vr)| vr);
        let arch = purl
            .split("arch=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        let file = format!("{}-{vr}.{arch}.rpm", p["name"].as_str().unwrap());
        let want = rpms
            .get(&file)
            .unwrap_or_else(|| panic!("no {file} in the repository"));
        assert_eq!(p["checksums"][0]["checksumValue"], want.as_str(), "{purl}");
    }
}

/// The members of a gzip tar layer, read by Python's tarfile.
fn layer_file(layer: &Path, member: &str) -> String {
    let out = run(Command::new("python3").args([
        "-c",
        "import sys, tarfile\nt = tarfile.open(sys.argv[1])\nfor m in t.getmembers():\n    if m.name.lstrip('./') == sys.argv[2]:\n        sys.stdout.write(t.extractfile(m).read().decode())\n",
    ]).arg(layer).arg(member));
    text(&out.stdout)
}

/// The single layer blob of a one-platform OCI layout, and the manifest digest index.json names.
fn oci_layer(layout: &Path) -> (PathBuf, String) {
    let index = json_file(&layout.join("index.json"));
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest = json_file(&blob(&digest));
    let layer = blob(manifest["layers"][0]["digest"].as_str().unwrap());
    (layer, digest.trim_start_matches("sha256:").to_string())
}

fn sboms(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".spdx.json"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn dir_oci_and_wsl_sboms_are_valid_complete_and_reproducible() {
    let dir = temp_dir("sbom-fixture");
    let def = write_definition(
        &dir,
        "fxsbom",
        Repo::Fixture,
        "version: \"3\"\npackages:\n  install: [fx-filesystem, fx-busybox, fx-app, fx-epoch, fx-tilde]\noutputs:\n  oci:\n    variant: distroless\n  wsl:\n    systemd: false\n",
    );
    let out_dir = dir.join("out");
    let out = kiln_build(&def, &out_dir, "dir,oci,wsl");
    assert!(out.status.success(), "{}", text(&out.stderr));

    let names: BTreeSet<String> = sboms(&out_dir).into_keys().collect();
    assert_eq!(
        names,
        BTreeSet::from(
            [
                "fxsbom-x86_64.spdx.json",
                "fxsbom.oci.spdx.json",
                "fxsbom-x86_64.wsl.spdx.json"
            ]
            .map(String::from)
        ),
        "one SBOM per image artifact, none for DistributionInfo.json or the mtree"
    );
    let rpms = repo_rpms(common::fixture_repo());
    let tree = out_dir.join("fxsbom-x86_64");
    let installed = purls_from_rpm(&tree);
    let licenses: BTreeMap<String, String> = text(
        &run(Command::new("rpm").arg("--root").arg(&tree).args([
            "--dbpath",
            "/usr/lib/sysimage/rpm",
            "-qa",
            "--qf",
            "%{NAME}\\t%{LICENSE}\\n",
        ]))
        .stdout,
    )
    .lines()
    .filter_map(|l| l.split_once('\t'))
    .map(|(n, l)| (n.to_string(), l.to_string()))
    .collect();
    assert!(licenses.values().any(|l| l != "MIT"), "{licenses:?}");
    assert!(
        installed
            .iter()
            .any(|p| p.contains("fx-epoch@") && p.contains("&epoch=")),
        "{installed:?}"
    );

    for (file, digest) in [
        (
            "fxsbom-x86_64.spdx.json",
            sha256(&out_dir.join("fxsbom-x86_64.mtree")),
        ),
        (
            "fxsbom-x86_64.wsl.spdx.json",
            sha256(&out_dir.join("fxsbom-x86_64.wsl")),
        ),
    ] {
        let path = out_dir.join(file);
        spdx_validate(&path);
        let doc = json_file(&path);
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(
            doc["creationInfo"]["created"], "2023-11-14T22:13:20Z",
            "{EPOCH}"
        );
        assert_eq!(
            doc["creationInfo"]["creators"][0],
            format!("Tool: kiln-{}", env!("CARGO_PKG_VERSION"))
        );
        let (checksum, contains) = artifact_of(&doc);
        assert_eq!(checksum, digest, "{file}");
        let pkgs = rpm_packages(&doc);
        assert_eq!(
            pkgs.keys().cloned().collect::<BTreeSet<_>>(),
            installed,
            "{file}"
        );
        assert_eq!(contains.len(), installed.len(), "{file}");
        assert_rpm_checksums(&doc, &rpms);
        // fx-app requires fx-filesystem: a DEPENDS_ON between them.
        let id = |name: &str| {
            pkgs.values().find(|p| p["name"] == name).unwrap()["SPDXID"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert!(doc["relationships"].as_array().unwrap().iter().any(|r| {
            r["spdxElementId"] == id("fx-app").as_str()
                && r["relationshipType"] == "DEPENDS_ON"
                && r["relatedSpdxElement"] == id("fx-filesystem").as_str()
        }));
        // The fixtures' License tags are SPDX expressions: declared as rpm gives them.
        for p in pkgs.values() {
            let name = p["name"].as_str().unwrap();
            assert_eq!(p["licenseDeclared"], licenses[name].as_str(), "{name}");
        }
    }

    // The distroless image lists what its package manifest lists (busybox stays: the
    // definition names it; the Debian test below sees packages left out).
    let layout = out_dir.join("fxsbom.oci");
    let oci_sbom = out_dir.join("fxsbom.oci.spdx.json");
    spdx_validate(&oci_sbom);
    let doc = json_file(&oci_sbom);
    let (layer, digest) = oci_layer(&layout);
    let (checksum, contains) = artifact_of(&doc);
    assert_eq!(checksum, digest);
    let manifest = layer_file(&layer, "var/lib/rpmmanifest/container-manifest-2");
    let listed: BTreeSet<String> = manifest
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    let pkgs = rpm_packages(&doc);
    let names: BTreeSet<String> = pkgs
        .values()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, listed);
    assert_eq!(contains.len(), listed.len());
    assert!(pkgs.keys().all(|p| installed.contains(p)));

    // A second build writes the same bytes.
    let out_dir2 = dir.join("out2");
    let out = kiln_build(&def, &out_dir2, "dir,oci,wsl");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(sboms(&out_dir), sboms(&out_dir2));
}

#[test]
fn debian_distroless_sbom_has_license_refs_epochs_and_the_manifest_packages() {
    let dir = temp_dir("sbom-debian");
    let def = write_definition(
        &dir,
        "debsbom",
        Repo::Debian("minimal"),
        "version: \"1\"\npackages:\n  install: [base-files, base-passwd, coreutils, util-linux]\noutputs:\n  oci:\n    variant: distroless\n    entrypoint: [/usr/bin/ls]\n",
    );
    let out_dir = dir.join("out");
    let out = kiln_build(&def, &out_dir, "oci");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let path = out_dir.join("debsbom.oci.spdx.json");
    spdx_validate(&path);
    let doc = json_file(&path);
    let (layer, _) = oci_layer(&out_dir.join("debsbom.oci"));
    let manifest = layer_file(&layer, "var/lib/rpmmanifest/container-manifest-2");
    // NAME, VERSION-RELEASE, …, EPOCH (field 6), …, ARCH (field 8).
    let want: BTreeSet<String> = manifest
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let mut p = format!(
                "pkg:rpm/azurelinux/{}@{}?arch={}",
                f[0].replace('+', "%2B"),
                f[1].replace('+', "%2B"),
                f[7]
            );
            if f[5] != "(none)" {
                p.push_str(&format!("&epoch={}", f[5]));
            }
            p
        })
        .collect();
    let pkgs = rpm_packages(&doc);
    assert_eq!(pkgs.keys().cloned().collect::<BTreeSet<_>>(), want);
    assert!(want.iter().any(|p| p.contains("&epoch=")), "{want:?}");
    // What the distroless view left out (the note names it) is not in the SBOM.
    let stderr = text(&out.stderr);
    let removed: Vec<&str> = stderr
        .lines()
        .find_map(|l| l.split("left out of the distroless image: ").nth(1))
        .unwrap_or_else(|| panic!("no left-out note in {stderr}"))
        .split(", ")
        .collect();
    for name in &removed {
        assert!(
            !pkgs.values().any(|p| p["name"] == *name),
            "{name} is left out of the image but listed"
        );
    }
    assert_rpm_checksums(&doc, &repo_rpms(&common::debian_repo("minimal")));
    // Debian's License tags are prose: each becomes a LicenseRef with the text extracted.
    let extracted: BTreeMap<String, String> = doc["hasExtractedLicensingInfos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["licenseId"].as_str().unwrap().to_string(),
                e["extractedText"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for p in pkgs.values() {
        let l = p["licenseDeclared"].as_str().unwrap();
        assert!(
            l == "NOASSERTION"
                || extracted
                    .get(l)
                    .is_some_and(|t| t.starts_with("see /usr/share/doc/")),
            "{}: {l}",
            p["name"]
        );
        // Debian packages have no Vendor tag.
        assert_eq!(p["supplier"], "NOASSERTION");
    }
}

#[test]
fn build_report_lists_stages_and_artifacts_and_quiet_prints_nothing() {
    let dir = temp_dir("sbom-report");
    let def = write_definition(
        &dir,
        "fxreport",
        Repo::Fixture,
        "version: \"1\"\npackages:\n  install: [fx-filesystem, fx-app]\noutputs:\n  oci: {}\n",
    );
    let out_dir = dir.join("out");
    let json = dir.join("report.json");
    let out = run(kiln_build_cmd(&def, &out_dir, "dir,oci")
        .arg("--json")
        .arg(&json));
    let stdout = text(&out.stdout);
    let report = json_file(&json);

    let stages: Vec<&str> = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    for want in [
        "resolve",
        "fetch",
        "install",
        "rpmdb",
        "configure",
        "oci",
        "dir",
        "sbom",
    ] {
        assert!(stages.contains(&want), "{want} in {stages:?}");
    }
    assert!(
        report["stages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["seconds"].as_f64().unwrap() >= 0.0)
    );
    let image = &report["images"][0];
    assert_eq!(image["arch"], "x86_64");
    let tree = out_dir.join("fxreport-x86_64");
    assert_eq!(
        image["packages"].as_u64().unwrap() as usize,
        purls_from_rpm(&tree).len()
    );
    let size = run(Command::new("rpm").arg("--root").arg(&tree).args([
        "--dbpath",
        "/usr/lib/sysimage/rpm",
        "-qa",
        "--qf",
        "%{SIZE}\\n",
    ]));
    let total: u64 = text(&size.stdout)
        .lines()
        .map(|l| l.parse::<u64>().unwrap())
        .sum();
    assert_eq!(image["installed_size"].as_u64().unwrap(), total);

    let mut kinds = BTreeSet::new();
    for a in report["artifacts"].as_array().unwrap() {
        let path = PathBuf::from(a["path"].as_str().unwrap());
        kinds.insert(a["kind"].as_str().unwrap().to_string());
        // size and sha256 are of one file on disk, whichever digest_of names.
        let file = match a["digest_of"].as_str().unwrap() {
            "file" => path.clone(),
            "oci-manifest" => path
                .join("blobs/sha256")
                .join(a["sha256"].as_str().unwrap()),
            "mtree" => out_dir.join("fxreport-x86_64.mtree"),
            other => panic!("digest_of {other}"),
        };
        assert_eq!(a["sha256"], sha256(&file).as_str(), "{}", path.display());
        assert_eq!(
            a["size"],
            std::fs::metadata(&file).unwrap().len(),
            "{}",
            path.display()
        );
        if let Some(sbom) = a["sbom"].as_str() {
            assert!(Path::new(sbom).is_file());
        }
        // The summary names every artifact with its sha256.
        assert!(
            stdout.contains(&format!("{}  ", path.display()))
                && stdout.contains(&format!("sha256:{}", a["sha256"].as_str().unwrap())),
            "{stdout}"
        );
    }
    assert_eq!(
        kinds,
        BTreeSet::from(["oci-layout", "dir", "mtree", "sbom"].map(String::from))
    );
    assert!(stdout.contains("built fxreport 1 in "), "{stdout}");
    assert!(stdout.contains("  x86_64: "), "{stdout}");
    assert!(stdout.contains("  time: resolve "), "{stdout}");

    // -q: nothing at all on success, and the artifacts are there.
    let quiet_dir = dir.join("quiet");
    let out = run(kiln_build_cmd(&def, &quiet_dir, "dir,oci").arg("-q"));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(text(&out.stderr), "");
    assert!(quiet_dir.join("fxreport.oci.spdx.json").is_file());
}
