//! `kiln build --push`: the registry options, settled into credentials before the build starts,
//! and one line per pushed tag after the OCI layout is written.

use std::path::Path;
use std::process::ExitCode;

use super::{Format, Ui, exit};
use crate::emit::push::{self, Credentials, PushOptions, Reference};

/// The push options of `kiln build`, as given.
pub struct PushArgs {
    pub reference: Reference,
    pub insecure: bool,
    /// `USER:PASSWORD`.
    pub creds: Option<String>,
}

/// A push ready to run once the layout exists.
pub struct Push {
    reference: Reference,
    options: PushOptions,
}

/// Checks the push options and finds the credentials, before the build: a mistake here should
/// not cost a whole build.
pub fn prepare(ui: &Ui, a: &PushArgs, formats: &[Format], verbose: bool) -> Result<Push, ExitCode> {
    if !formats.contains(&Format::Oci) {
        ui.error(
            "--push sends the OCI image, and this build writes none: add `--format oci` (or an `outputs.oci` section to the definition)",
        );
        return Err(ExitCode::from(exit::USAGE));
    }
    let credentials = match &a.creds {
        // The value is never echoed: it holds the password.
        Some(c) => {
            match c.split_once(':') {
                Some((user, password)) if !user.is_empty() => Some(Credentials {
                    username: user.to_string(),
                    password: password.to_string(),
                }),
                _ => {
                    ui.error("--creds takes USER:PASSWORD (a non-empty user name, a colon, the password)");
                    return Err(ExitCode::from(exit::USAGE));
                }
            }
        }
        None => match push::credentials_from_files(&push::auth_files(), &a.reference) {
            Ok(Some(found)) => {
                if verbose {
                    eprintln!(
                        "note: credentials for {} from {} (entry `{}`)",
                        a.reference.registry,
                        found.file.display(),
                        found.key
                    );
                }
                Some(found.credentials)
            }
            Ok(None) => None,
            Err(e) => {
                ui.error(format!("--push: {e}"));
                return Err(ExitCode::from(exit::FAILURE));
            }
        },
    };
    Ok(Push {
        reference: a.reference.clone(),
        options: PushOptions {
            insecure: a.insecure,
            credentials,
            ..PushOptions::default()
        },
    })
}

impl Push {
    /// Pushes the layout; prints `pushed REF (DIGEST)` per tag.
    pub fn run(&self, ui: &Ui, layout: &Path) -> Result<(), ExitCode> {
        match push::push(layout, &self.reference, &self.options) {
            Ok(report) => {
                for t in report.tags {
                    ui.info(format!(
                        "pushed {} ({}): {} blobs uploaded, {} already present, {} sent",
                        t.reference,
                        t.digest,
                        t.blobs_uploaded,
                        t.blobs_present,
                        size(t.bytes_sent)
                    ));
                }
                Ok(())
            }
            Err(e) => {
                ui.error(format!("push: {e}"));
                Err(ExitCode::from(exit::FAILURE))
            }
        }
    }
}

fn size(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_well() {
        assert_eq!(super::size(0), "0 B");
        assert_eq!(super::size(1023), "1023 B");
        assert_eq!(super::size(1536), "1.5 KiB");
        assert_eq!(super::size(5 << 20), "5.0 MiB");
        assert_eq!(super::size(3 << 30), "3.0 GiB");
    }
}
