//! A two-architecture OCI layout (x86_64 and aarch64) written through the library, since building
//! aarch64 needs an emulator: the image index, its platforms, and what skopeo and umoci make of it.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{run, temp_dir, text};
use kiln::definition::{Arch, Definition, LoadOptions};
use kiln::emit::oci::Oci;
use kiln::emit::{Backend, Image};
use kiln::tree::{Entry, Kind, Tree};

const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const EPOCH: i64 = 1_700_000_000;

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

/// The definition as `kiln build` would see it: loaded and validated from YAML.
fn definition(dir: &Path) -> Definition {
    definition_with(dir, "")
}

/// The same with more `outputs.oci` settings (indented YAML lines).
fn definition_with(dir: &Path, extra: &str) -> Definition {
    let yaml = "name: multi\nversion: \"3.0\"\narchitectures: [x86_64, aarch64]\nrepositories:\n  - id: none\n    baseurl: [\"file:///nonexistent/${basearch}\"]\n    gpgcheck: false\npackages:\n  install: [base-files]\noutputs:\n  oci:\n    variant: base\n    entrypoint: [/usr/bin/hello]\n    tags: [\"3.0\", latest]\n".to_string() + extra;
    let path = dir.join("multi.yaml");
    std::fs::write(&path, yaml).unwrap();
    let loaded = kiln::definition::load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.images.len(), 2);
    loaded.images.into_iter().next().unwrap().definition
}

/// A small staging tree whose files say which architecture it is for.
fn tree(dir: &Path, arch: Arch) -> Tree {
    let mut t = Tree::create(&dir.join(format!("root-{}", arch.rpm_name()))).unwrap();
    let entry = |mode| Entry {
        kind: Kind::Dir,
        mode,
        uid: 0,
        gid: 0,
        mtime: EPOCH - 10,
        xattrs: BTreeMap::new(),
    };
    for d in ["/etc", "/usr", "/usr/bin"] {
        t.put_dir(d, entry(0o755)).unwrap();
    }
    t.write_file(
        "/etc/kiln-arch",
        &mut arch.rpm_name().as_bytes(),
        entry(0o644),
    )
    .unwrap();
    // Enough content for several gzip blocks, different per architecture.
    let body: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 ^ arch.rpm_name().len() as u8)
        .collect();
    t.write_file("/usr/bin/hello", &mut &body[..], entry(0o755))
        .unwrap();
    t.symlink("/usr/bin/hi", "hello", entry(0o777)).unwrap();
    t
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let bytes = std::fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    use sha2::Digest;
    assert_eq!(
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes))),
        digest,
        "a blob not named by its digest"
    );
    bytes
}

/// Reads a descriptor's blob, checking its size too.
fn follow(layout: &Path, desc: &serde_json::Value) -> serde_json::Value {
    let bytes = blob(layout, desc["digest"].as_str().unwrap());
    assert_eq!(desc["size"].as_u64(), Some(bytes.len() as u64), "{desc}");
    json(&bytes)
}

/// `skopeo [global args] inspect [--config] IMAGE`.
fn skopeo_inspect(args: &[&str], image: &str) -> serde_json::Value {
    let (global, config): (Vec<&str>, Vec<&str>) = args.iter().partition(|a| **a != "--config");
    json(
        &run(Command::new("skopeo")
            .args(global)
            .arg("inspect")
            .args(config)
            .arg(image))
        .stdout,
    )
}

/// The layout's files, with their bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// The two trees as the backend receives them: x86_64, then aarch64.
fn images(trees: &[Tree; 2]) -> Vec<Image<'_>> {
    trees
        .iter()
        .zip([Arch::X86_64, Arch::Aarch64])
        .map(|(tree, arch)| Image {
            tree,
            arch,
            epoch: EPOCH,
            packages: &[],
        })
        .collect()
}

#[test]
fn two_architectures_make_an_image_index_that_skopeo_resolves() {
    let dir = temp_dir("oci-index");
    let def = definition(&dir);
    let trees = [tree(&dir, Arch::X86_64), tree(&dir, Arch::Aarch64)];
    let images = images(&trees);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let artifacts = Oci.emit(&def, &images, &out).unwrap();
    let layout = out.join("multi.oci");
    assert_eq!(artifacts.len(), 1);
    assert_eq!(artifacts[0].path, layout);

    // index.json: one entry per tag, each pointing at the same image index.
    let top = json(&std::fs::read(layout.join("index.json")).unwrap());
    let refs = top["manifests"].as_array().unwrap();
    let tags: Vec<&str> = refs
        .iter()
        .map(|d| {
            d["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(tags, ["3.0", "latest"]);
    assert!(refs.iter().all(|d| d["mediaType"] == MT_INDEX
        && d["digest"] == refs[0]["digest"]
        && d.get("platform").is_none()));
    assert_eq!(
        refs[0]["digest"].as_str().unwrap(),
        format!("sha256:{}", artifacts[0].sha256)
    );

    // The image index: two manifests, linux/amd64 and linux/arm64/v8.
    let index = follow(&layout, &refs[0]);
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], MT_INDEX);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2);
    let platforms: Vec<&serde_json::Value> = manifests.iter().map(|m| &m["platform"]).collect();
    assert_eq!(
        platforms,
        [
            &serde_json::json!({"architecture": "amd64", "os": "linux"}),
            &serde_json::json!({"architecture": "arm64", "os": "linux", "variant": "v8"}),
        ]
    );
    let mut layer_of = BTreeMap::new();
    for (m, (arch, variant)) in manifests
        .iter()
        .zip([("amd64", None), ("arm64", Some("v8"))])
    {
        assert_eq!(m["mediaType"], MT_MANIFEST);
        let manifest = follow(&layout, m);
        assert_eq!(manifest["mediaType"], MT_MANIFEST);
        let config = follow(&layout, &manifest["config"]);
        assert_eq!(config["architecture"], arch);
        assert_eq!(config["os"], "linux");
        assert_eq!(config["variant"].as_str(), variant);
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        let layer = layers[0]["digest"].as_str().unwrap();
        blob(&layout, layer);
        layer_of.insert(arch, layer.to_string());
    }
    assert_ne!(layer_of["amd64"], layer_of["arm64"]);

    // skopeo picks the manifest of the platform it is asked for.
    let image = format!("oci:{}:3.0", layout.display());
    for (args, arch, variant) in [
        (
            &["--override-arch", "arm64", "--override-variant", "v8"][..],
            "arm64",
            Some("v8"),
        ),
        (&["--override-arch", "arm64"][..], "arm64", Some("v8")),
        (&["--override-arch", "amd64"][..], "amd64", None),
    ] {
        let got = skopeo_inspect(args, &image);
        assert_eq!(got["Architecture"], arch, "{args:?}");
        // Digest is the index's (what a pull by digest names); the layers are the platform's.
        assert_eq!(got["Digest"], refs[0]["digest"], "{args:?}");
        assert_eq!(
            got["Layers"],
            serde_json::json!([layer_of[arch]]),
            "{args:?}"
        );
        assert_eq!(got["Labels"]["org.opencontainers.image.version"], "3.0");
        // skopeo 1.9 does not print the variant; the config it picked has it.
        let config = skopeo_inspect(&[args, &["--config"]].concat(), &image);
        assert_eq!(config["variant"].as_str(), variant, "{args:?}");
    }
    // --raw gives the index itself.
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(&image));
    assert_eq!(json(&raw.stdout), index);

    // skopeo copy --all keeps the index and both images, byte for byte.
    let copy = dir.join("copy.oci");
    run(Command::new("skopeo")
        .args(["copy", "--all"])
        .arg(&image)
        .arg(format!("oci:{}:3.0", copy.display())));
    let copied = json(&std::fs::read(copy.join("index.json")).unwrap());
    assert_eq!(copied["manifests"][0]["digest"], refs[0]["digest"]);
    let (ours, theirs) = (files(&layout.join("blobs")), files(&copy.join("blobs")));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    assert!(ours == theirs, "skopeo copy --all changed a blob");

    // umoci 0.4 has no platform choice: it follows the tag through the index to two manifests
    // and stops ("tag is ambiguous"). One platform copied out with skopeo unpacks, with that
    // architecture's files and the entrypoint.
    let bundle = dir.join("bundle");
    let refused = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:3.0", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    let err = text(&refused.stderr);
    assert!(!refused.status.success(), "umoci unpacked an index: {err}");
    assert!(err.contains("tag is ambiguous: 3.0"), "{err}");
    for (arch, rpm_arch) in [("arm64", "aarch64"), ("amd64", "x86_64")] {
        let single = dir.join(format!("{arch}.oci"));
        run(Command::new("skopeo")
            .args(["--override-arch", arch, "copy"])
            .arg(&image)
            .arg(format!("oci:{}:3.0", single.display())));
        let bundle = dir.join(format!("bundle-{arch}"));
        run(Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:3.0", single.display()))
            .arg(&bundle));
        let rootfs = bundle.join("rootfs");
        assert_eq!(
            std::fs::read_to_string(rootfs.join("etc/kiln-arch")).unwrap(),
            rpm_arch
        );
        assert_eq!(
            std::fs::read(rootfs.join("usr/bin/hello")).unwrap(),
            std::fs::read(trees[if arch == "arm64" { 1 } else { 0 }].disk_path("/usr/bin/hello"))
                .unwrap()
        );
        let config: serde_json::Value = json(&std::fs::read(bundle.join("config.json")).unwrap());
        assert_eq!(
            config["process"]["args"],
            serde_json::json!(["/usr/bin/hello"])
        );
    }
}

#[test]
fn platforms_choose_which_architectures_the_image_holds() {
    let dir = temp_dir("oci-platforms");
    let trees = [tree(&dir, Arch::X86_64), tree(&dir, Arch::Aarch64)];
    let images = images(&trees);
    let def = definition_with(&dir, "    platforms: [linux/arm64/v8]\n");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    Oci.emit(&def, &images, &out).unwrap();
    // One platform: index.json points straight at its manifest, the arm64 one.
    let top = json(&std::fs::read(out.join("multi.oci/index.json")).unwrap());
    let desc = &top["manifests"][0];
    assert_eq!(desc["mediaType"], MT_MANIFEST);
    assert_eq!(desc["platform"]["architecture"], "arm64");
    // Only the x86_64 image built (`--arch x86_64`): nothing to put in it, and nothing written.
    let out2 = dir.join("out2");
    std::fs::create_dir_all(&out2).unwrap();
    let err = Oci.emit(&def, &images[..1], &out2).unwrap_err().to_string();
    assert!(
        err.contains("names none of the architectures built (x86_64)"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&out2).unwrap().count(), 0);
}
