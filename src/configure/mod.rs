//! Applying the definition's system configuration to the staging tree: users, services, files,
//! hostname, locale, SELinux labels, scripts.

pub mod boot;
pub mod selinux;
pub mod services;
pub mod system;
pub mod users;

use crate::definition::types::{Script, SelinuxMode, System};
use crate::install::sandbox;
use crate::tree::{Kind, Tree, TreeError};

#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    #[error(transparent)]
    Users(#[from] users::UsersError),
    #[error(transparent)]
    System(#[from] system::SystemError),
    #[error(transparent)]
    Services(#[from] services::ServiceError),
    #[error(transparent)]
    Selinux(#[from] selinux::SelinuxError),
    #[error("{stage} script `{name}` {message}")]
    Script {
        stage: &'static str,
        name: String,
        message: String,
        output: String,
    },
    #[error("system.services lists units, but systemd is not installed in the image")]
    NoSystemd,
    #[error(transparent)]
    Tree(#[from] TreeError),
}

impl ConfigureError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            ConfigureError::Users(users::UsersError::Invalid { help, .. })
            | ConfigureError::System(system::SystemError::Invalid { help, .. }) => {
                Some(help.clone())
            }
            ConfigureError::NoSystemd => {
                Some("add `systemd` to packages.install, or drop system.services".into())
            }
            ConfigureError::Script { output, .. } if !output.trim().is_empty() => {
                Some(format!("its output:\n{}", output.trim_end()))
            }
            _ => None,
        }
    }
}

/// What configuring did, for the build log.
#[derive(Debug, Default)]
pub struct Report {
    pub notes: Vec<String>,
    pub services: Vec<String>,
    pub scripts_run: Vec<String>,
    /// Paths labelled, or `None` when no SELinux policy is installed.
    pub labelled: Option<usize>,
    pub unlabelled: Vec<String>,
}

/// Applies `sys` to the tree, in the order an installer would: accounts, directories and files,
/// settings, services, post-install scripts, machine-id, finalize scripts, SELinux labels.
pub fn configure(tree: &mut Tree, sys: &System, epoch: i64) -> Result<Report, ConfigureError> {
    let mut report = Report::default();
    report
        .notes
        .extend(users::apply(tree, &sys.groups, &sys.users, epoch)?);
    system::apply_files(tree, &sys.directories, &sys.files, epoch)?;
    report
        .notes
        .extend(system::apply_settings(tree, sys, epoch)?);

    let has_systemd = ["/usr/lib/systemd/system", "/etc/systemd/system"]
        .iter()
        .any(|d| {
            tree.resolve(d)
                .ok()
                .and_then(|p| tree.get(&p).cloned())
                .is_some_and(|e| e.kind == Kind::Dir)
        });
    if has_systemd {
        let r = services::apply_presets(tree, epoch)?;
        report.notes.extend(r.warnings);
        for (verb, units) in [
            ("enable", &sys.services.enable),
            ("disable", &sys.services.disable),
            ("mask", &sys.services.mask),
        ] {
            if units.is_empty() {
                continue;
            }
            let r = match verb {
                "enable" => services::enable(tree, units, epoch)?,
                "disable" => services::disable(tree, units, epoch)?,
                _ => services::mask(tree, units, epoch)?,
            };
            report.notes.extend(r.warnings);
            report
                .services
                .extend(units.iter().map(|u| format!("{verb} {u}")));
        }
    } else if !(sys.services.enable.is_empty()
        && sys.services.disable.is_empty()
        && sys.services.mask.is_empty())
    {
        return Err(ConfigureError::NoSystemd);
    }

    run_scripts(tree, "post-install", &sys.scripts.post_install, &mut report)?;
    system::reset_machine_id(tree, epoch)?;
    run_scripts(tree, "finalize", &sys.scripts.finalize, &mut report)?;

    let mode = sys
        .selinux
        .or_else(|| match selinux::config(tree).map(|(m, _)| m) {
            Some(m) if m == "disabled" => Some(SelinuxMode::Disabled),
            Some(_) => Some(SelinuxMode::Enforcing),
            None => None,
        });
    if mode != Some(SelinuxMode::Disabled) {
        let policy_type = selinux::config(tree).map(|(_, t)| t);
        match selinux::Policy::load(tree, policy_type.as_deref())? {
            Some(policy) => {
                let r = selinux::label(tree, &policy);
                report.labelled = Some(r.labelled);
                report.unlabelled = r.unlabelled;
            }
            None if matches!(mode, Some(SelinuxMode::Enforcing | SelinuxMode::Permissive))
                && sys.selinux.is_some() =>
            {
                report.notes.push("selinux is set but no SELinux policy is installed, so nothing is labelled: add selinux-policy-targeted to the packages".into());
            }
            None => {}
        }
    }
    tree.clamp_mtimes(epoch);
    Ok(report)
}

fn run_scripts(
    tree: &mut Tree,
    stage: &'static str,
    scripts: &[Script],
    report: &mut Report,
) -> Result<(), ConfigureError> {
    for (i, s) in scripts.iter().enumerate() {
        let name = s
            .name
            .clone()
            .or_else(|| {
                s.source
                    .as_ref()
                    .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
            })
            .unwrap_or_else(|| format!("script {}", i + 1));
        let fail = |message: String, output: String| ConfigureError::Script {
            stage,
            name: name.clone(),
            message,
            output,
        };
        let body = match (&s.content, &s.source) {
            (Some(c), _) => c.clone(),
            (None, Some(p)) => std::fs::read_to_string(p)
                .map_err(|e| fail(format!("cannot be read from {p}: {e}"), String::new()))?,
            (None, None) => String::new(),
        };
        let interp = s.interpreter.clone().unwrap_or_else(|| "/bin/sh".into());
        let present = tree
            .resolve(&interp)
            .ok()
            .and_then(|p| tree.get(&p).cloned())
            .is_some_and(|e| matches!(e.kind, Kind::File { .. }));
        if !present {
            return Err(fail(
                format!(
                    "needs {interp}, which is not in the image (install it, or set `interpreter`)"
                ),
                String::new(),
            ));
        }
        let script_path = format!("/.kiln-{stage}-{}", i + 1);
        let disk = tree.disk_path(&script_path);
        std::fs::write(&disk, body).map_err(|e| {
            fail(
                format!("cannot be written into the tree: {e}"),
                String::new(),
            )
        })?;
        let result = sandbox::run(tree.root(), &[interp, script_path], b"");
        let _ = std::fs::remove_file(&disk);
        let out = result.map_err(|e| fail(e.to_string(), String::new()))?;
        tree.rescan()?;
        if !out.success() {
            let message = match out.status {
                Some(c) => format!("failed with exit status {c}"),
                None => "was killed by a signal".into(),
            };
            return Err(fail(message, out.output));
        }
        report.scripts_run.push(format!("{stage}: {name}"));
    }
    Ok(())
}
