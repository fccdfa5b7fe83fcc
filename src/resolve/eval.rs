//! Evaluating dependencies against a set of packages: which packages provide an atom, whether a
//! (rich) dependency holds for a chosen set — used for weak deps and to check every solution.

use std::collections::HashSet;

use super::dep::{self, Dep, Simple};
use super::evr::{Evr, ranges_overlap};
use crate::repo::Pool;
use crate::repo::pool::{DepEntry, FILE_PROVIDE};

/// Converts a repodata entry to an expression (parsing rich dependencies).
pub fn to_dep(pool: &Pool, d: &DepEntry) -> Result<Dep, dep::DepError> {
    if d.is_rich() {
        return dep::parse(pool.str(d.name));
    }
    Ok(Dep::Simple(Simple {
        name: pool.str(d.name).to_string(),
        range: d.is_versioned().then(|| {
            (
                d.sense(),
                Evr::new(
                    d.epoch,
                    pool.str(d.version),
                    Some(pool.str(d.release).to_string()),
                ),
            )
        }),
    }))
}

/// Packages satisfying a repodata dependency by themselves; simple dependencies go straight
/// through the pool's index (no string lookups), rich ones through `satisfying`.
pub fn entry_satisfying(pool: &Pool, d: &DepEntry) -> Vec<u32> {
    if !d.is_rich() {
        return pool.what_provides(d);
    }
    to_dep(pool, d)
        .map(|dep| satisfying(pool, &dep))
        .unwrap_or_default()
}

/// Whether a repodata dependency holds for `set` (as a requirement).
pub fn entry_holds(pool: &Pool, d: &DepEntry, set: &HashSet<u32>) -> bool {
    if !d.is_rich() {
        return pool.what_provides(d).iter().any(|p| set.contains(p));
    }
    to_dep(pool, d).is_ok_and(|dep| holds(pool, &dep, set))
}

/// Packages (pool indexes, ascending, unique) with a provide (or primary/filelists file)
/// matching `s`.
pub fn providers(pool: &Pool, s: &Simple) -> Vec<u32> {
    let Some(sid) = pool.strings.lookup(&s.name) else {
        return Vec::new();
    };
    let mut out: Vec<u32> = pool
        .providers_raw(sid)
        .iter()
        .filter(|&&(_, idx)| {
            let Some((sense, evr)) = &s.range else {
                return true;
            };
            if idx == FILE_PROVIDE {
                return true;
            }
            let p = &pool.deps[idx as usize];
            !p.is_versioned()
                || ranges_overlap(
                    Some((
                        p.sense(),
                        p.epoch,
                        pool.str(p.version),
                        Some(pool.str(p.release)),
                    )),
                    Some((*sense, evr.epoch, &evr.version, evr.release.as_deref())),
                )
        })
        .map(|&(p, _)| p)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether `dep` holds when exactly the packages in `set` are installed (read as a requirement).
pub fn holds(pool: &Pool, dep: &Dep, set: &HashSet<u32>) -> bool {
    holds_in(pool, dep, set, false)
}

/// As `holds`; with `conflict`, `if`/`unless` without `else` read as rpm reads them in
/// Conflicts: `(a if b)` is "a and b", `(a unless b)` is "a and not b".
pub fn holds_in(pool: &Pool, dep: &Dep, set: &HashSet<u32>, conflict: bool) -> bool {
    let holds = |d: &Dep, set: &HashSet<u32>| holds_in(pool, d, set, conflict);
    match dep {
        Dep::Simple(s) => providers(pool, s).iter().any(|p| set.contains(p)),
        Dep::And(items) => items.iter().all(|d| holds(d, set)),
        Dep::Or(items) => items.iter().any(|d| holds(d, set)),
        Dep::With(items) => {
            let mut common: Option<Vec<u32>> = None;
            for d in items {
                let p = satisfying(pool, d);
                common = Some(match common {
                    None => p,
                    Some(c) => c
                        .into_iter()
                        .filter(|x| p.binary_search(x).is_ok())
                        .collect(),
                });
            }
            common.unwrap_or_default().iter().any(|p| set.contains(p))
        }
        Dep::Without(a, b) => {
            let not = satisfying(pool, b);
            satisfying(pool, a)
                .iter()
                .any(|p| set.contains(p) && not.binary_search(p).is_err())
        }
        Dep::If {
            then,
            cond,
            otherwise,
        } => {
            if holds(cond, set) {
                holds(then, set)
            } else {
                otherwise.as_ref().map_or(!conflict, |o| holds(o, set))
            }
        }
        Dep::Unless {
            then,
            cond,
            otherwise,
        } => {
            if holds(cond, set) {
                otherwise.as_ref().map_or(!conflict, |o| holds(o, set))
            } else {
                holds(then, set)
            }
        }
    }
}

/// Packages that by themselves satisfy a "one package" expression (simple, with, without, or
/// an or of those). Other forms are not about a single package; they give the empty set.
pub fn satisfying(pool: &Pool, dep: &Dep) -> Vec<u32> {
    match dep {
        Dep::Simple(s) => providers(pool, s),
        Dep::With(items) => {
            let mut it = items.iter();
            let mut acc = it.next().map(|d| satisfying(pool, d)).unwrap_or_default();
            for d in it {
                let p = satisfying(pool, d);
                acc.retain(|x| p.binary_search(x).is_ok());
            }
            acc
        }
        Dep::Without(a, b) => {
            let not = satisfying(pool, b);
            let mut acc = satisfying(pool, a);
            acc.retain(|x| not.binary_search(x).is_err());
            acc
        }
        Dep::Or(items) => {
            let mut acc: Vec<u32> = items.iter().flat_map(|d| satisfying(pool, d)).collect();
            acc.sort_unstable();
            acc.dedup();
            acc
        }
        _ => Vec::new(),
    }
}

/// Every way `chosen` fails to be a valid installation: unmet requirements, conflicts and
/// obsoletes among the chosen packages. Empty means it is a closed, consistent set.
pub fn check_closure(pool: &Pool, chosen: &[u32]) -> Vec<String> {
    use crate::repo::DepKind;
    let set: HashSet<u32> = chosen.iter().copied().collect();
    let mut problems = Vec::new();
    for &p in chosen {
        for d in pool.deps_of(p, DepKind::Requires) {
            if pool.str(d.name).starts_with("rpmlib(") {
                continue;
            }
            match to_dep(pool, d) {
                Ok(dep) if !holds(pool, &dep, &set) => problems.push(format!(
                    "{} requires {}, which nothing chosen provides",
                    pool.nevra(p),
                    pool.dep_text(d)
                )),
                Err(e) => problems.push(format!("{}: {e}", pool.nevra(p))),
                _ => {}
            }
        }
        for d in pool.deps_of(p, DepKind::Conflicts) {
            let Ok(dep) = to_dep(pool, d) else { continue };
            if matches!(dep, Dep::If { .. } | Dep::Unless { .. } | Dep::And(_)) {
                // A conflict on a combination: violated if the combination holds among the
                // other packages.
                let own = pool.packages[p as usize].name;
                let others: HashSet<u32> = set
                    .iter()
                    .copied()
                    .filter(|q| pool.packages[*q as usize].name != own)
                    .collect();
                if holds_in(pool, &dep, &others, true) {
                    problems.push(format!(
                        "{} conflicts with the installed set ({})",
                        pool.nevra(p),
                        pool.dep_text(d)
                    ));
                }
                continue;
            }
            let offenders: Vec<u32> = satisfying(pool, &dep)
                .into_iter()
                .filter(|q| {
                    set.contains(q)
                        && pool.packages[*q as usize].name != pool.packages[p as usize].name
                })
                .collect();
            for q in offenders {
                problems.push(format!(
                    "{} conflicts with {} ({})",
                    pool.nevra(p),
                    pool.nevra(q),
                    pool.dep_text(d)
                ));
            }
        }
        for d in pool.deps_of(p, DepKind::Obsoletes) {
            for &q in chosen {
                if pool.packages[q as usize].name != pool.packages[p as usize].name
                    && pool.name_matches(q, d)
                {
                    problems.push(format!(
                        "{} obsoletes {} ({})",
                        pool.nevra(p),
                        pool.nevra(q),
                        pool.dep_text(d)
                    ));
                }
            }
        }
    }
    problems
}
