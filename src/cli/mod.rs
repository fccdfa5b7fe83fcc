//! The command line: verbs (validate, resolve, lock, build, import, schema, completions), their options,
//! and the edge where errors are rendered for people and turned into exit codes.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use miette::{GraphicalReportHandler, GraphicalTheme};

use crate::definition::{self, Arch, DefinitionError, LoadOptions, Loaded, Problem};

mod build;
mod inspect;
mod push;
mod report;
mod resolve;

/// Exit codes (documented in README.md).
pub mod exit {
    /// The definition is invalid, or the build failed.
    pub const FAILURE: u8 = 1;
    /// The command line was wrong (clap's own code).
    pub const USAGE: u8 = 2;
    /// The verb exists but is not implemented yet.
    pub const NOT_IMPLEMENTED: u8 = 3;
}

#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    about = "Build Azure Linux 4.0 images (Azure VHD, OCI, WSL) from one YAML definition",
    propagate_version = true
)]
pub struct Cli {
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more about what kiln does (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The image tree as a directory, with an mtree manifest beside it.
    Dir,
    Vhd,
    Vhdx,
    Raw,
    Qcow2,
    Oci,
    Wsl,
}

/// Where repository metadata comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct RepoArgs {
    /// A repository: `ID=URL` replaces that repository of the definition, a bare URL (or path)
    /// adds one (repeatable). Without a definition, the repositories to resolve against.
    #[arg(long = "repo", value_name = "[ID=]URL")]
    pub repo: Vec<String>,
    /// A dnf .repo file whose repositories replace all of the definition's (repeatable; for
    /// mirrors and air-gapped builds). `--repo` then applies on top.
    #[arg(long = "repo-file", value_name = "FILE")]
    pub repo_file: Vec<PathBuf>,
    /// Download remote metadata again even if the cached copy is fresh.
    #[arg(long, conflicts_with = "offline")]
    pub refresh: bool,
    /// Use only cached metadata; never touch the network.
    #[arg(long)]
    pub offline: bool,
    /// Where metadata is cached (default: $KILN_CACHE_DIR, $XDG_CACHE_HOME/kiln or ~/.cache/kiln).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check definitions: YAML, keys and types, extends, variables, names, ids and disk layout.
    Validate {
        /// Definition files.
        #[arg(required = true)]
        definitions: Vec<PathBuf>,
        /// Check only these architectures (x86_64, aarch64).
        #[arg(long, value_delimiter = ',')]
        arch: Vec<Arch>,
        /// Print the merged, expanded definition of each architecture as JSON.
        #[arg(long)]
        show: bool,
    },
    /// Resolve the package set of a definition (or of packages named on the command line).
    ///
    /// With a definition: `kiln resolve image.yaml`. Without one, name repositories and what to
    /// install: `kiln resolve --repo file:///srv/repo --json bash '@core' /usr/bin/python3`.
    Resolve {
        /// The definition file; with --repo and no definition, the packages to resolve (names,
        /// name.arch, provides, file paths, @groups).
        #[arg(value_name = "DEFINITION | SPEC")]
        args: Vec<String>,
        #[command(flatten)]
        repos: RepoArgs,
        /// Resolve for these architectures only (default: the definition's; x86_64 without one).
        #[arg(long, value_delimiter = ',')]
        arch: Vec<Arch>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Leave out weak dependencies (Recommends, Supplements).
        #[arg(long)]
        no_weak_deps: bool,
        /// Never consider packages whose name matches this glob (repeatable).
        #[arg(long, value_name = "GLOB")]
        exclude: Vec<String>,
        /// Check the answer independently: every requirement met, no conflicts or obsoletes
        /// among the chosen packages (exit 1 and list what is wrong otherwise).
        #[arg(long)]
        verify: bool,
    },
    /// Resolve a definition and write its lockfile (NAME.lock.yaml) beside it.
    Lock {
        definition: PathBuf,
        #[command(flatten)]
        repos: RepoArgs,
        /// Do not write: check that the existing lockfile still matches the definition.
        #[arg(long)]
        check: bool,
    },
    /// Build the artifacts of a definition.
    Build {
        definition: PathBuf,
        /// Directory the artifacts are written to.
        #[arg(long, short, default_value = "out")]
        output: PathBuf,
        /// Artifacts to build (default: the definition's outputs).
        #[arg(long, value_delimiter = ',')]
        format: Vec<Format>,
        /// Build only these architectures.
        #[arg(long, value_delimiter = ',')]
        arch: Vec<Arch>,
        /// Use exactly the packages of the lockfile; fail if the definition no longer matches it.
        #[arg(long)]
        locked: bool,
        #[command(flatten)]
        repos: RepoArgs,
        /// Downloads at the same time (default 6).
        #[arg(long, short = 'j', value_name = "N")]
        jobs: Option<usize>,
        /// Push the OCI image to a registry once written; without a tag, every tag of the image.
        #[arg(long, value_name = "REGISTRY/REPO[:TAG]")]
        push: Option<crate::emit::push::Reference>,
        /// Push over plain http instead of https: for localhost and test registries only.
        #[arg(long, requires = "push")]
        insecure: bool,
        /// Registry credentials (default: the registry's entry in the containers or docker
        /// auth files).
        #[arg(long, value_name = "USER:PASSWORD", requires = "push")]
        creds: Option<String>,
        /// Also write the build report (packages, stage times, artifacts with sizes and
        /// sha256) as JSON to FILE.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Show what a built disk image (raw or VHD) holds: partitions, file systems, labels,
    /// UUIDs, kernel command line, package count.
    Inspect {
        /// The disk image.
        image: PathBuf,
    },
    /// Convert another image description into a kiln definition (printed as YAML).
    Import {
        #[command(subcommand)]
        what: Import,
    },
    /// Print the JSON Schema of the image definition.
    Schema,
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum Import {
    /// Convert an Anaconda kickstart file (with its %include files): `kiln import kickstart
    /// image.ks > image.yaml`. What cannot be represented is reported by file and line.
    Kickstart {
        /// The kickstart file.
        file: PathBuf,
        /// Print what was read from the kickstart (packages, users, scripts …) as JSON instead,
        /// without converting it.
        #[arg(long)]
        json: bool,
    },
}

/// Runs kiln with the process's arguments.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    run(cli)
}

pub(crate) struct Ui {
    quiet: bool,
    handler: GraphicalReportHandler,
}

impl Ui {
    fn new(quiet: bool) -> Self {
        let stderr = std::io::stderr();
        let color = stderr.is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        // Terminals get wrapped text; logs and pipes get whole lines, which grep and path
        // matching can rely on.
        let handler = GraphicalReportHandler::new_themed(theme)
            .with_width(100)
            .with_wrap_lines(stderr.is_terminal());
        Ui { quiet, handler }
    }

    pub(crate) fn problem(&self, p: &Problem) {
        if self.quiet && !p.is_error() {
            return;
        }
        let mut out = String::new();
        if self.handler.render_report(&mut out, p).is_err() {
            out = format!("{p}\n");
        }
        eprint!("{out}");
    }

    pub(crate) fn error(&self, message: impl std::fmt::Display) {
        eprintln!("error: {message}");
    }

    pub(crate) fn info(&self, message: impl std::fmt::Display) {
        if !self.quiet {
            println!("{message}");
        }
    }
}

pub fn run(cli: Cli) -> ExitCode {
    crate::say::set_quiet(cli.quiet);
    let ui = Ui::new(cli.quiet);
    match cli.command {
        Command::Validate {
            definitions,
            arch,
            show,
        } => validate(&ui, &definitions, arch, show),
        Command::Resolve {
            args,
            repos,
            arch,
            json,
            no_weak_deps,
            exclude,
            verify,
        } => resolve::resolve(
            &ui,
            resolve::ResolveArgs {
                args,
                repos,
                arch,
                json,
                no_weak_deps,
                exclude,
                verify,
                verbose: cli.verbose > 0,
            },
        ),
        Command::Lock {
            definition,
            repos,
            check,
        } => resolve::lock(&ui, &definition, &repos, check, cli.verbose > 0),
        Command::Build {
            definition,
            output,
            format,
            arch,
            locked,
            repos,
            jobs,
            push,
            insecure,
            creds,
            json,
        } => build::build(
            &ui,
            build::BuildArgs {
                definition,
                output,
                formats: format,
                arch,
                locked,
                repos,
                jobs,
                push: push.map(|reference| push::PushArgs {
                    reference,
                    insecure,
                    creds,
                }),
                json,
                verbose: cli.verbose > 0,
                quiet: cli.quiet,
            },
        ),
        Command::Inspect { image } => inspect::inspect(&ui, &image),
        Command::Import {
            what: Import::Kickstart { file, json },
        } => import_kickstart(&ui, &file, json),
        Command::Schema => {
            println!("{}", schema_json());
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "kiln", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}

/// The JSON Schema of a definition file, generated from the Rust types.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(definition::Definition);
    let mut root = serde_json::to_value(&schema).expect("a schema always serializes");
    // The schema describes one file, and a file that extends others may give only part of an
    // item (`{name: root, size: 10GiB}`) or leave `name` to its base. Required keys are checked
    // on the merged definition; here only the keys that name items for merging stay required.
    if let Some(obj) = root.as_object_mut() {
        obj.remove("required");
    }
    if let Some(defs) = root["$defs"].as_object_mut() {
        for def in defs.values_mut() {
            if let Some(req) = def.get_mut("required").and_then(|r| r.as_array_mut()) {
                req.retain(|k| matches!(k.as_str(), Some("id" | "name" | "path")));
            }
        }
    }
    // `per-arch` sections take any top-level key except those that pick the architectures; the
    // derive cannot express "the root without its required keys", so it is added here.
    let mut patch = serde_json::Map::new();
    patch.insert("type".into(), "object".into());
    patch.insert("additionalProperties".into(), false.into());
    let mut props = root["properties"].as_object().cloned().unwrap_or_default();
    for key in ["name", "architectures", "extends", "repo-files"] {
        props.remove(key);
    }
    patch.insert("properties".into(), props.into());
    root["$defs"]["ArchSettings"] = patch.into();
    root["properties"]["per-arch"] = serde_json::json!({
        "description": "Settings for one architecture only, merged over the rest with the `extends` rules.",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "x86_64": {"$ref": "#/$defs/ArchSettings"},
            "aarch64": {"$ref": "#/$defs/ArchSettings"}
        }
    });
    serde_json::to_string_pretty(&root).expect("JSON values serialize")
}

/// Loads a definition and prints its problems; `None` if it is invalid.
pub(crate) fn load(ui: &Ui, path: &Path, opts: LoadOptions) -> Option<Loaded> {
    match definition::load(path, &opts) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                ui.problem(w);
            }
            Some(loaded)
        }
        Err(DefinitionError::Read { path, source }) => {
            ui.error(format!("cannot read {}: {source}", path.display()));
            None
        }
        Err(e @ DefinitionError::Invalid(_)) => {
            for p in e.problems() {
                ui.problem(&p);
            }
            ui.error(format!("{}: {e}", path.display()));
            None
        }
    }
}

fn validate(ui: &Ui, paths: &[PathBuf], arches: Vec<Arch>, show: bool) -> ExitCode {
    let mut failed = false;
    for path in paths {
        let opts = LoadOptions {
            arches: arches.clone(),
            ..Default::default()
        };
        let Some(loaded) = load(ui, path, opts) else {
            failed = true;
            continue;
        };
        if show {
            let by_arch: serde_json::Map<String, serde_json::Value> = loaded
                .images
                .iter()
                .map(|i| {
                    (
                        i.arch.to_string(),
                        serde_json::to_value(&i.definition).expect("definitions serialize"),
                    )
                })
                .collect();
            let text = serde_json::to_string_pretty(&by_arch).expect("JSON values serialize");
            let _ = writeln!(std::io::stdout(), "{text}");
        } else {
            ui.info(summary(&loaded));
        }
    }
    ExitCode::from(if failed { exit::FAILURE } else { 0 })
}

/// `kiln import kickstart`: the kickstart converted, checked as any definition, printed as YAML.
fn import_kickstart(ui: &Ui, path: &Path, json: bool) -> ExitCode {
    use definition::kickstart;
    if json {
        let (ks, problems, _) = kickstart::read(path);
        for p in &problems {
            ui.problem(p);
        }
        return match ks {
            Some(ks) if !problems.iter().any(Problem::is_error) => {
                let text = serde_json::to_string_pretty(&ks).expect("JSON values serialize");
                let _ = writeln!(std::io::stdout(), "{text}");
                ExitCode::SUCCESS
            }
            _ => {
                ui.error(format!("{}: the kickstart cannot be read", path.display()));
                ExitCode::from(exit::FAILURE)
            }
        };
    }
    let options = LoadOptions {
        kickstart: true,
        ..LoadOptions::default()
    };
    // The whole definition check runs on the converted tree; its problems are shown once.
    if load(ui, path, options).is_none() {
        return ExitCode::from(exit::FAILURE);
    }
    let (Some(node), _, _) = kickstart::load(path) else {
        return ExitCode::from(exit::FAILURE);
    };
    let _ = write!(
        std::io::stdout(),
        "# Converted by `kiln import kickstart` from {}.\n{}",
        path.display(),
        kickstart::to_yaml(&node)
    );
    ExitCode::SUCCESS
}

/// One line about a valid definition.
fn summary(loaded: &Loaded) -> String {
    let first = &loaded.images[0].definition;
    let arches: Vec<String> = loaded.images.iter().map(|i| i.arch.to_string()).collect();
    let mut outputs = Vec::new();
    if let Some(d) = &first.outputs.disk {
        let f: Vec<String> = d
            .formats
            .iter()
            .map(|f| format!("{f:?}").to_lowercase())
            .collect();
        outputs.push(format!("disk ({})", f.join(", ")));
    }
    if let Some(o) = &first.outputs.oci {
        outputs.push(format!(
            "oci ({})",
            format!("{:?}", o.variant).to_lowercase()
        ));
    }
    if first.outputs.wsl.is_some() {
        outputs.push("wsl".into());
    }
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        "ok: {} — {}{} for {}; {}, {} to install; outputs: {}{}",
        loaded.path.display(),
        first.name,
        first
            .version
            .as_deref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default(),
        arches.join(", "),
        plural(first.repositories.len(), "repository").replace("repositorys", "repositories"),
        plural(first.packages.install.len(), "package"),
        if outputs.is_empty() {
            "none".into()
        } else {
            outputs.join(", ")
        },
        match loaded.warnings.len() {
            0 => String::new(),
            n => format!(" ({})", plural(n, "warning")),
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn schema_is_json_with_the_top_level_keys() {
        let v: serde_json::Value = serde_json::from_str(&schema_json()).unwrap();
        let props = v["properties"].as_object().unwrap();
        for key in [
            "name",
            "extends",
            "per-arch",
            "repositories",
            "repo-files",
            "packages",
            "system",
            "outputs",
        ] {
            assert!(props.contains_key(key), "{key}");
        }
        assert!(v.get("required").is_none());
        assert_eq!(
            v["$defs"]["Partition"]["required"],
            serde_json::json!(["name"])
        );
    }
}
