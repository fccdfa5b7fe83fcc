//! Running the image's own programs over the staging tree: a child in new mount, network, UTS
//! and IPC namespaces (and a user namespace when not root), chrooted into the tree, no network.

use std::ffi::CString;
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// What a sandboxed run produced.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub status: Option<i32>,
    /// stdout and stderr, interleaved in the order written.
    pub output: String,
}

impl RunOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot start the sandbox: {0}")]
    Start(#[source] io::Error),
}

/// Whether kiln runs as real root (then the sandbox needs no user namespace and file owners
/// set by scriptlets are real).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with NUL"))
}

/// Runs `argv` (a program inside the image and its arguments) chrooted into `root`, with `stdin`
/// fed to it. The host is untouched: mounts made inside die with the child, the network
/// namespace is empty, the hostname is `localhost`.
pub fn run(root: &Path, argv: &[String], stdin: &[u8]) -> Result<RunOutput, SandboxError> {
    run_with_env(root, argv, stdin, &[])
}

/// [`run`] with extra environment variables (SOURCE_DATE_EPOCH for tools that honour it).
pub fn run_with_env(
    root: &Path,
    argv: &[String],
    stdin: &[u8],
    env: &[(&str, &str)],
) -> Result<RunOutput, SandboxError> {
    let root_c = cstr(root).map_err(SandboxError::Start)?;
    let dev = root.join("dev");
    let has_dev = dev.symlink_metadata().is_ok_and(|m| m.is_dir());
    let dev_c = cstr(&dev).map_err(SandboxError::Start)?;
    let nodes: Vec<(CString, CString)> = ["null", "zero", "random", "urandom", "tty"]
        .iter()
        .map(|n| {
            (
                CString::new(format!("/dev/{n}")).expect("no NUL"),
                cstr(&dev.join(n)).expect("no NUL in the staging path"),
            )
        })
        .collect();
    let root_user = is_root();
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let uid_map = CString::new(format!("0 {uid} 1")).expect("no NUL");
    let gid_map = CString::new(format!("0 {gid} 1")).expect("no NUL");

    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .env("TERM", "dumb")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec. It only makes system calls on
    // data prepared above (no allocation, no locks), as pre_exec requires.
    unsafe {
        cmd.pre_exec(move || {
            let fail = |what: &str| {
                let e = io::Error::last_os_error();
                io::Error::new(e.kind(), format!("{what}: {e}"))
            };
            let mut flags =
                libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
            if !root_user {
                flags |= libc::CLONE_NEWUSER;
            }
            if libc::unshare(flags) != 0 {
                return Err(fail("unshare"));
            }
            if !root_user {
                write_proc(c"/proc/self/setgroups", c"deny")?;
                write_proc(c"/proc/self/uid_map", &uid_map)?;
                write_proc(c"/proc/self/gid_map", &gid_map)?;
            }
            // Nothing mounted here may reach the host's mount table.
            if libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(fail("making mounts private"));
            }
            if has_dev {
                // A private /dev with the few nodes scripts use; the image's own /dev is hidden
                // only for the duration of the run.
                if libc::mount(
                    c"tmpfs".as_ptr(),
                    dev_c.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID,
                    c"mode=0755".as_ptr().cast(),
                ) == 0
                {
                    for (src, dst) in &nodes {
                        let fd = libc::open(
                            dst.as_ptr(),
                            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                            0o666,
                        );
                        if fd >= 0 {
                            libc::close(fd);
                            libc::mount(
                                src.as_ptr(),
                                dst.as_ptr(),
                                std::ptr::null(),
                                libc::MS_BIND,
                                std::ptr::null(),
                            );
                        }
                    }
                }
            }
            libc::sethostname(c"localhost".as_ptr(), 9);
            if libc::chroot(root_c.as_ptr()) != 0 {
                return Err(fail("chroot"));
            }
            if libc::chdir(c"/".as_ptr()) != 0 {
                return Err(fail("chdir"));
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(SandboxError::Start)?;
    if let Some(mut input) = child.stdin.take() {
        // A script that does not read its input closes the pipe: that is not an error.
        let _ = input.write_all(stdin);
    }
    let out = child.wait_with_output().map_err(SandboxError::Start)?;
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(RunOutput {
        status: out.status.code(),
        output,
    })
}

/// Writes a small value to a /proc file (uid_map and friends) from the pre-exec child.
fn write_proc(path: &std::ffi::CStr, value: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: plain open/write/close on valid NUL-terminated strings.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let bytes = value.to_bytes();
        let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        libc::close(fd);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root with a static busybox as /bin/sh, when the host has one (busybox-static).
    fn busybox_root() -> Option<tempfile::TempDir> {
        let bb = Path::new("/bin/busybox");
        if !bb.exists() {
            return None;
        }
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("bin")).unwrap();
        std::fs::create_dir_all(d.path().join("dev")).unwrap();
        std::fs::create_dir_all(d.path().join("tmp")).unwrap();
        std::fs::copy(bb, d.path().join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", d.path().join("bin/sh")).unwrap();
        Some(d)
    }

    #[test]
    fn runs_chrooted_without_network() {
        let Some(d) = busybox_root() else {
            panic!(
                "/bin/busybox (Debian's busybox-static) is needed for this test: tests/prereqs.txt lists it"
            );
        };
        let argv: Vec<String> = ["/bin/sh", "-c", "echo hi > /tmp/out; /bin/busybox ls /; /bin/busybox cat; /bin/busybox hostname; echo x > /dev/null && echo devnull-ok; /bin/busybox ip link 2>&1 || true"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = run(d.path(), &argv, b"from-stdin\n").unwrap();
        assert!(out.success(), "{out:?}");
        assert!(out.output.contains("from-stdin"), "{}", out.output);
        assert!(out.output.contains("localhost"), "{}", out.output);
        assert!(out.output.contains("devnull-ok"), "{}", out.output);
        // Only loopback in the network namespace.
        assert!(!out.output.contains("eth0"), "{}", out.output);
        assert_eq!(
            std::fs::read_to_string(d.path().join("tmp/out")).unwrap(),
            "hi\n"
        );
        // The private /dev left nothing behind in the tree.
        assert_eq!(std::fs::read_dir(d.path().join("dev")).unwrap().count(), 0);
    }

    #[test]
    fn failures_report_status_and_output() {
        let Some(d) = busybox_root() else {
            panic!("/bin/busybox (busybox-static) is needed for this test");
        };
        let argv: Vec<String> = ["/bin/sh", "-c", "echo oops >&2; exit 3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = run(d.path(), &argv, b"").unwrap();
        assert_eq!(out.status, Some(3));
        assert!(out.output.contains("oops"));
        let missing: Vec<String> = vec!["/usr/bin/nope".into()];
        assert!(run(d.path(), &missing, b"").is_err());
    }
}
