//! Resolution: rpmvercmp and version ranges, dependency expressions (rich deps), a resolvo-based
//! solver with RPM rules, failure explanations and the lockfile.

pub mod dep;
pub mod eval;
pub mod evr;
pub mod lock;
pub mod solver;

use crate::definition::{Arch, Definition, OciVariant};
use crate::repo::{self, LoadOptions, Pool, RepoLoad, RepoSpec};
pub use solver::{Request, Resolution, ResolveError};

/// A definition resolved for one architecture.
pub struct Resolved {
    pub arch: Arch,
    pub pool: Pool,
    pub resolution: Resolution,
    pub loads: Vec<RepoLoad>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Repo(#[from] repo::RepoError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

/// The request a definition makes for one architecture.
pub fn request_for(
    def: &Definition,
    arch: Arch,
    repos: &[&crate::definition::Repository],
) -> Request {
    let mut install = def.packages.install.clone();
    if let Some(oci) = &def.outputs.oci
        && oci.variant == OciVariant::Runtime
    {
        install.extend(oci.runtime_packages.iter().cloned());
    }
    Request {
        install,
        exclude: def.packages.exclude.clone(),
        remove: def.packages.remove.clone(),
        repo_excludes: repos.iter().map(|r| r.excludes.clone()).collect(),
        arch,
        weak_deps: def.packages.weak_deps,
    }
}

/// Loads the definition's enabled repositories and resolves its packages for `arch`.
pub fn resolve_definition(
    def: &Definition,
    arch: Arch,
    opts: &LoadOptions,
) -> Result<Resolved, Error> {
    let repos: Vec<&crate::definition::Repository> =
        def.repositories.iter().filter(|r| r.enabled).collect();
    let specs: Vec<RepoSpec> = repos.iter().map(|r| RepoSpec::from(*r)).collect();
    let mut opts = opts.clone();
    opts.wanted_files.extend(
        def.packages
            .install
            .iter()
            .filter(|s| s.starts_with('/'))
            .cloned(),
    );
    let (pool, loads) = repo::load(&specs, &opts)?;
    let request = request_for(def, arch, &repos);
    let resolution = solver::resolve(&pool, &request)?;
    Ok(Resolved {
        arch,
        pool,
        resolution,
        loads,
    })
}

impl Resolved {
    /// The lockfile entry for this architecture; `def_dir` is the definition's directory.
    pub fn locked(&self, def: &Definition, def_dir: &std::path::Path) -> lock::LockedArch {
        let pool = &self.pool;
        lock::LockedArch {
            inputs: lock::inputs_hash(def, self.arch, def_dir),
            repositories: pool
                .repos
                .iter()
                .map(|r| lock::LockedRepo {
                    id: r.id.clone(),
                    baseurl: lock::portable_url(&r.baseurl, def_dir),
                    revision: r.revision.clone(),
                })
                .collect(),
            packages: self
                .resolution
                .packages
                .iter()
                .map(|&p| {
                    let pk = &pool.packages[p as usize];
                    lock::LockedPackage {
                        nevra: pool.nevra(p),
                        repo: pool.repos[pk.repo as usize].id.clone(),
                        location: pool.str(pk.location).to_string(),
                        sha256: if pool.str(pk.checksum_type) == "sha256" {
                            pool.str(pk.checksum).to_string()
                        } else {
                            format!("{}:{}", pool.str(pk.checksum_type), pool.str(pk.checksum))
                        },
                        size: pk.size,
                    }
                })
                .collect(),
        }
    }
}
