//! `kiln build --push` against a real registry (Debian's docker-registry, distribution 2.8) on
//! localhost: anonymous, htpasswd Basic auth and Bearer tokens from an in-test token server;
//! skopeo pulls the image back and it must be byte-identical to the layout kiln wrote.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{Repo, kiln_build_cmd, run, temp_dir, text, write_definition};
use kiln::emit::push::{PushOptions, Reference, push};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A docker-registry process with filesystem storage under `dir`, killed when dropped.
struct Registry {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Registry {
    /// Starts one; `auth` is the YAML of its `auth:` section (empty: anonymous).
    fn start(dir: &Path, auth: &str) -> Registry {
        let dir = dir.join("registry");
        std::fs::create_dir_all(dir.join("storage")).unwrap();
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: kiln-test-secret\n{auth}",
            dir.join("storage").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            // stdout: the access log (one line per request); stderr: the application log.
            .stdout(std::fs::File::create(dir.join("access.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .expect("docker-registry runs (Debian package docker-registry, tests/prereqs.txt)");
        let mut reg = Registry { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = reg.child.try_wait().unwrap() {
                panic!("docker-registry exited ({status}):\n{}", reg.log());
            }
            if http_status(port, "/v2/").is_some() {
                return reg;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer:\n{}",
                reg.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// The access log's request lines (`METHOD PATH`) with their status.
    fn requests(&self) -> Vec<(String, u16)> {
        let log = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| {
                let (_, rest) = l.split_once('"')?;
                let (req, rest) = rest.split_once('"')?;
                let status = rest.split_whitespace().next()?.parse().ok()?;
                Some((req.rsplit_once(' ')?.0.to_string(), status))
            })
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of `GET path` on 127.0.0.1:port, if anything answers HTTP there.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A fixture definition with an OCI output tagged `tags`.
fn definition(dir: &Path, name: &str, tags: &str) -> PathBuf {
    let body = format!(
        "version: \"2.1\"\npackages:\n  install: [fx-app, fx-files]\noutputs:\n  oci:\n    tags: {tags}\n"
    );
    write_definition(dir, name, Repo::Fixture, &body)
}

/// `kiln build DEF --format oci --output OUT ARGS…`, with no auth file of this machine in
/// reach (HOME is the test's directory) unless `env` sets one.
fn kiln_build(def: &Path, out: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = kiln_build_cmd(def, out, "oci");
    cmd.args(args)
        .env("HOME", def.parent().unwrap())
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The digest of the image the layout's index.json names first, and its manifest's bytes.
fn layout_manifest(layout: &Path) -> (String, Vec<u8>) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let bytes = std::fs::read(blob(layout, &digest)).unwrap();
    (digest, bytes)
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Every blob of a layout: file name → bytes.
fn blobs(layout: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Checks with skopeo that `reference` holds exactly the layout's image: the manifest bytes
/// the registry serves, and every blob of a copy pulled back into a new layout.
fn assert_pulled_back(reference: &str, layout: &Path, scratch: &Path, creds: Option<&str>) {
    let mut args = vec!["--tls-verify=false".to_string()];
    if let Some(c) = creds {
        args.push(format!("--creds={c}"));
    }
    let (digest, manifest) = layout_manifest(layout);
    let inspect = run(Command::new("skopeo")
        .arg("inspect")
        .args(&args)
        .arg(format!("docker://{reference}")));
    let inspect: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .args(&args)
        .arg(format!("docker://{reference}")));
    assert!(
        raw.stdout == manifest,
        "{reference}: the registry's manifest differs from the layout's"
    );
    let pulled = scratch.join("pulled");
    let _ = std::fs::remove_dir_all(&pulled);
    let mut copy = Command::new("skopeo");
    copy.args(["copy", "--src-tls-verify=false"]);
    if let Some(c) = creds {
        copy.arg(format!("--src-creds={c}"));
    }
    run(copy
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:pulled", pulled.display())));
    assert_eq!(layout_manifest(&pulled).0, digest);
    let (want, got) = (blobs(layout), blobs(&pulled));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    assert!(want == got, "{reference}: pulled blobs differ");
}

#[test]
fn push_anonymous_then_pull_back_identical_and_push_again() {
    let dir = temp_dir("push-anon");
    let reg = Registry::start(&dir, "");
    let def = definition(&dir, "fxpush", "[\"2.1\", latest]");
    let out_dir = dir.join("out");
    let reference = format!("{}/kiln/test:1", reg.host());
    let out = kiln_build(&def, &out_dir, &["--push", &reference, "--insecure"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let layout = out_dir.join("fxpush.oci");
    let (digest, _) = layout_manifest(&layout);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "pushed {reference} ({digest}): 2 blobs uploaded, 0 already present"
        )),
        "{stdout}"
    );
    assert_pulled_back(&reference, &layout, &dir, None);
    // The layer is far below the default chunk size: whole uploads, no PATCH.
    let requests = reg.requests();
    assert!(
        !requests.iter().any(|(r, _)| r.starts_with("PATCH")),
        "{requests:?}"
    );
    assert_eq!(
        requests
            .iter()
            .filter(|(r, s)| r.starts_with("PUT /v2/kiln/test/blobs/uploads/") && *s == 201)
            .count(),
        2
    );

    // Again, without a tag: every tag of the layout, and every blob is there already.
    let out = kiln_build(
        &def,
        &out_dir,
        &["--push", &format!("{}/kiln/test", reg.host()), "--insecure"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for tag in ["2.1", "latest"] {
        assert!(
            stdout.contains(&format!(
                "pushed {}/kiln/test:{tag} ({digest}): 0 blobs uploaded, 2 already present",
                reg.host()
            )),
            "{stdout}"
        );
    }
    let tags = run(Command::new("skopeo")
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{}/kiln/test", reg.host())));
    let tags: serde_json::Value = serde_json::from_slice(&tags.stdout).unwrap();
    let mut tags: Vec<&str> = tags["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["1", "2.1", "latest"]);

    // Without --insecure kiln speaks https, which this registry does not: say so.
    let out = kiln_build(&def, &out_dir, &["--push", &reference], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("the registry does not speak https; --insecure uses plain http"),
        "{err}"
    );
}

#[test]
fn chunked_upload_through_the_library() {
    let dir = temp_dir("push-chunked");
    let reg = Registry::start(&dir, "");
    let def = definition(&dir, "fxchunk", "[\"1\"]");
    let out_dir = dir.join("out");
    let out = kiln_build(&def, &out_dir, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let layout = out_dir.join("fxchunk.oci");
    let manifest: serde_json::Value = serde_json::from_slice(&layout_manifest(&layout).1).unwrap();
    let layer_size = manifest["layers"][0]["size"].as_u64().unwrap();
    let config_size = manifest["config"]["size"].as_u64().unwrap();
    // Small chunks, and not a divisor of the layer: the last chunk is a short one.
    let chunk = 100_000;
    assert!(
        layer_size > 3 * chunk && !layer_size.is_multiple_of(chunk),
        "{layer_size}"
    );

    let reference: Reference = format!("{}/kiln/chunked:1", reg.host()).parse().unwrap();
    let opts = PushOptions {
        insecure: true,
        chunk_size: chunk,
        ..PushOptions::default()
    };
    let report = push(&layout, &reference, &opts).unwrap();
    assert_eq!(report.tags.len(), 1);
    let t = &report.tags[0];
    assert_eq!(t.reference, reference.to_string());
    assert_eq!(t.digest, layout_manifest(&layout).0);
    assert_eq!((t.blobs_uploaded, t.blobs_present), (2, 0));
    let manifest_len = layout_manifest(&layout).1.len() as u64;
    assert_eq!(t.bytes_sent, layer_size + config_size + manifest_len);
    let patches = reg
        .requests()
        .iter()
        .filter(|(r, s)| r.starts_with("PATCH /v2/kiln/chunked/blobs/uploads/") && *s == 202)
        .count() as u64;
    assert_eq!(patches, layer_size.div_ceil(chunk));
    assert_pulled_back(&reference.to_string(), &layout, &dir, None);

    // Pushed again: nothing uploaded.
    let again = push(&layout, &reference, &opts).unwrap();
    assert_eq!(
        (again.tags[0].blobs_uploaded, again.tags[0].blobs_present),
        (0, 2)
    );
}

/// An image index of two manifests (the built one and a copy with an annotation) over the same
/// blobs, written by hand into a copy of the layout: children first, by digest, then the index.
#[test]
fn image_index_is_pushed_with_its_manifests() {
    let dir = temp_dir("push-index");
    let reg = Registry::start(&dir, "");
    let def = definition(&dir, "fxindex", "[\"1\"]");
    let out_dir = dir.join("out");
    let out = kiln_build(&def, &out_dir, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let single = out_dir.join("fxindex.oci");
    let layout = dir.join("multi.oci");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    for (name, bytes) in blobs(&single) {
        std::fs::write(layout.join("blobs/sha256").join(name), bytes).unwrap();
    }
    std::fs::copy(single.join("oci-layout"), layout.join("oci-layout")).unwrap();
    let (d1, m1) = layout_manifest(&single);
    let mut second: serde_json::Value = serde_json::from_slice(&m1).unwrap();
    second["annotations"] = serde_json::json!({"org.example.copy": "2"});
    let m2 = serde_json::to_vec(&second).unwrap();
    let d2 = sha256(&m2);
    std::fs::write(blob(&layout, &d2), &m2).unwrap();
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": mt, "digest": d1, "size": m1.len(), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": mt, "digest": d2, "size": m2.len(), "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ],
    }))
    .unwrap();
    let di = sha256(&index);
    std::fs::write(blob(&layout, &di), &index).unwrap();
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": di, "size": index.len(),
                           "annotations": {"org.opencontainers.image.ref.name": "multi"}}],
        }))
        .unwrap(),
    )
    .unwrap();

    let reference: Reference = format!("{}/kiln/index", reg.host()).parse().unwrap();
    let opts = PushOptions {
        insecure: true,
        ..PushOptions::default()
    };
    let report = push(&layout, &reference, &opts).unwrap();
    assert_eq!(report.tags.len(), 1);
    let t = &report.tags[0];
    assert_eq!(t.reference, format!("{}/kiln/index:multi", reg.host()));
    assert_eq!(t.digest, di);
    // The second manifest's blobs were uploaded for the first.
    assert_eq!((t.blobs_uploaded, t.blobs_present), (2, 2));
    let requests = reg.requests();
    let pos = |want: &str| {
        requests
            .iter()
            .position(|(r, s)| r == want && *s == 201)
            .unwrap_or_else(|| panic!("no `{want}` in {requests:?}"))
    };
    let (p1, p2, pi) = (
        pos(&format!("PUT /v2/kiln/index/manifests/{d1}")),
        pos(&format!("PUT /v2/kiln/index/manifests/{d2}")),
        pos("PUT /v2/kiln/index/manifests/multi"),
    );
    assert!(p1 < pi && p2 < pi, "{requests:?}");

    let raw = |r: &str| {
        run(Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/kiln/index{r}", reg.host())))
        .stdout
    };
    assert!(raw(":multi") == index);
    assert!(raw(&format!("@{d2}")) == m2);
    assert!(raw(&format!("@{d1}")) == m1);
}

/// A bcrypt htpasswd line, for the registry's htpasswd auth.
fn htpasswd(user: &str, password: &str) -> String {
    let script =
        "import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))";
    for py in ["python3", "/usr/bin/python3"] {
        if let Ok(out) = Command::new(py)
            .args(["-W", "ignore", "-c", script, password])
            .output()
            && out.status.success()
            && out.stdout.starts_with(b"$2")
        {
            return format!("{user}:{}", text(&out.stdout).trim());
        }
    }
    panic!("no bcrypt: Python's crypt module (Debian 12's python3 has it) is needed");
}

#[test]
fn basic_auth_with_creds_and_auth_file() {
    let dir = temp_dir("push-basic");
    std::fs::write(
        dir.join("htpasswd"),
        htpasswd("alice", "open-sesame") + "\n",
    )
    .unwrap();
    let reg = Registry::start(
        &dir,
        &format!(
            "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
            dir.join("htpasswd").display()
        ),
    );
    let def = definition(&dir, "fxbasic", "[\"1\"]");
    let out_dir = dir.join("out");
    let reference = format!("{}/kiln/test:1", reg.host());

    // No credentials anywhere.
    let out = kiln_build(&def, &out_dir, &["--push", &reference, "--insecure"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "error: push: {}/kiln/test: connecting",
            reg.host()
        )) && err.contains("requires credentials and none were given")
            && err.contains("401 Unauthorized"),
        "{err}"
    );

    // Wrong password: a clear error, and the password is not in it.
    let out = kiln_build(
        &def,
        &out_dir,
        &[
            "--push",
            &reference,
            "--insecure",
            "--creds",
            "alice:wrong-pass-7f3",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        all.contains("the credentials of user `alice` were rejected"),
        "{all}"
    );
    assert!(!all.contains("wrong-pass-7f3"), "{all}");

    // Right password.
    let out = kiln_build(
        &def,
        &out_dir,
        &[
            "--push",
            &reference,
            "--insecure",
            "--creds",
            "alice:open-sesame",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("2 blobs uploaded, 0 already present"),
        "{}",
        text(&out.stdout)
    );
    let layout = out_dir.join("fxbasic.oci");
    assert_pulled_back(&reference, &layout, &dir, Some("alice:open-sesame"));

    // From $REGISTRY_AUTH_FILE, as `podman login` writes it.
    let auth = dir.join("auth.json");
    let encoded = base64::engine::general_purpose::STANDARD.encode("alice:open-sesame");
    std::fs::write(
        &auth,
        format!(r#"{{"auths":{{"{}":{{"auth":"{encoded}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    let reference2 = format!("{}/kiln/test:from-auth-file", reg.host());
    let out = kiln_build(
        &def,
        &out_dir,
        &["--push", &reference2, "--insecure", "-v"],
        &[("REGISTRY_AUTH_FILE", &auth)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "credentials for {} from {}",
            reg.host(),
            auth.display()
        )),
        "{err}"
    );
    assert!(
        text(&out.stdout).contains("0 blobs uploaded, 2 already present"),
        "{}",
        text(&out.stdout)
    );
    // And from ~/.docker/config.json (HOME is the test directory).
    std::fs::create_dir_all(dir.join(".docker")).unwrap();
    std::fs::copy(&auth, dir.join(".docker/config.json")).unwrap();
    let out = kiln_build(
        &def,
        &out_dir,
        &[
            "--push",
            &format!("{}/kiln/test:from-docker", reg.host()),
            "--insecure",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A token server for the registry's `auth: token`: checks the Basic credentials, grants the
/// scopes asked for in a JWT signed (RS256, by openssl) with the key whose certificate the
/// registry trusts, and records what it was asked.
struct TokenServer {
    port: u16,
    asked: Arc<Mutex<Vec<String>>>,
}

impl TokenServer {
    fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=kiln-test-token"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert));
        let der = run(Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert))
        .stdout;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        let expected = format!("{user}:{password}");
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let _ = serve_token(conn, &expected, &key, &der, &log);
            }
        });
        TokenServer { port, asked }
    }

    /// The `auth:` section of the registry's config.
    fn registry_auth(&self, dir: &Path) -> String {
        format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: kiln-test\n    issuer: kiln-test-issuer\n    rootcertbundle: {}\n",
            self.port,
            dir.join("token.crt").display()
        )
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve_token(
    mut conn: TcpStream,
    expected: &str,
    key: &Path,
    der: &[u8],
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(v.trim().to_string());
        }
    }
    let target = request.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    log.lock().unwrap().push(query.to_string());
    let user = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| text(&b));
    let (status, body) = if user.as_deref() != Some(expected) {
        (
            "401 Unauthorized",
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#.to_string(),
        )
    } else {
        let service = params
            .iter()
            .find(|(k, _)| k == "service")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let access: Vec<serde_json::Value> = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .filter_map(|(_, s)| {
                let mut parts = s.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({
            "typ": "JWT", "alg": "RS256",
            "x5c": [base64::engine::general_purpose::STANDARD.encode(der)],
        });
        let claims = serde_json::json!({
            "iss": "kiln-test-issuer", "sub": expected.split(':').next(), "aud": service,
            "exp": now + 600, "nbf": now - 60, "iat": now - 60, "jti": format!("{now}-{}", log.lock().unwrap().len()),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let mut openssl = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        openssl
            .stdin
            .take()
            .unwrap()
            .write_all(signing_input.as_bytes())?;
        let mut signature = Vec::new();
        openssl.stdout.take().unwrap().read_to_end(&mut signature)?;
        openssl.wait()?;
        // `access_token` only (OAuth2's name): kiln must take it when `token` is absent.
        (
            "200 OK",
            serde_json::json!({
                "access_token": format!("{signing_input}.{}", b64url(&signature)),
                "expires_in": 600,
            })
            .to_string(),
        )
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

#[test]
fn bearer_token_auth() {
    let dir = temp_dir("push-bearer");
    let tokens = TokenServer::start(&dir, "bob", "hunter2-token");
    let reg = Registry::start(&dir, &tokens.registry_auth(&dir));
    let def = definition(&dir, "fxbearer", "[\"1\"]");
    let out_dir = dir.join("out");
    let reference = format!("{}/kiln/test:1", reg.host());

    let out = kiln_build(
        &def,
        &out_dir,
        &[
            "--push",
            &reference,
            "--insecure",
            "--creds",
            "bob:nope-91c",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "getting a token from http://127.0.0.1:{}/token",
            tokens.port
        )) && err.contains("the credentials of user `bob` were rejected")
            && err.contains("401 Unauthorized: UNAUTHORIZED: bad credentials"),
        "{err}"
    );
    assert!(!err.contains("nope-91c"), "{err}");

    let out = kiln_build(
        &def,
        &out_dir,
        &[
            "--push",
            &reference,
            "--insecure",
            "--creds",
            "bob:hunter2-token",
        ],
        &[],
    );
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), reg.log());
    assert!(
        text(&out.stdout).contains("2 blobs uploaded, 0 already present"),
        "{}",
        text(&out.stdout)
    );
    let asked = tokens.asked.lock().unwrap().clone();
    assert!(
        asked.iter().any(|q| q.contains("service=kiln-test")
            && q.contains("scope=repository%3Akiln%2Ftest%3Apull%2Cpush")),
        "{asked:?}"
    );
    let layout = out_dir.join("fxbearer.oci");
    assert_pulled_back(&reference, &layout, &dir, Some("bob:hunter2-token"));
}

#[test]
fn push_is_checked_before_building() {
    let dir = temp_dir("push-usage");
    let def = definition(&dir, "fxusage", "[\"1\"]");
    let out_dir = dir.join("out");
    let kiln = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("build")
            .arg(&def)
            .arg("--output")
            .arg(&out_dir)
            .args(args)
            .env("HOME", &dir)
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    for (args, want) in [
        (
            &["--format", "dir", "--push", "127.0.0.1:1/kiln/x"][..],
            "--push sends the OCI image, and this build writes none",
        ),
        (&["--push", "kiln/x:1"][..], "`kiln` is not a registry host"),
        (
            &["--push", "localhost/x@sha256:00"][..],
            "pushing to a digest is not supported",
        ),
        (&["--insecure"][..], "--push"),
        (
            &["--push", "127.0.0.1:1/kiln/x", "--creds", "alice"][..],
            "--creds takes USER:PASSWORD",
        ),
    ] {
        let out = kiln(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!out_dir.exists(), "{args:?}: built anyway");
    }

    // Nothing listens: the build is written, the push fails with exit 1.
    let port = free_port();
    let reference = format!("127.0.0.1:{port}/kiln/x:1");
    let out = kiln_build(&def, &out_dir, &["--push", &reference, "--insecure"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "error: push: 127.0.0.1:{port}/kiln/x: connecting (GET /v2/)"
        )),
        "{err}"
    );
    assert!(out_dir.join("fxusage.oci/index.json").is_file());
}
