//! The solver: RPM semantics on resolvo — capabilities, rich dependencies, conflicts, obsoletes,
//! install-only packages, arch and repository-priority rules, weak dependencies in a second pass.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt::Display;

use indexmap::IndexSet;
use resolvo::DenseIndex;
use resolvo::{
    Candidates, Condition, ConditionId, ConditionalRequirement, Dependencies, DependencyProvider,
    Interner, KnownDependencies, LogicalOperator, NameId, Problem, Requirement, SolvableId, Solver,
    SolverCache, StringId, UnsolvableOrCancelled, VersionSetId, VersionSetUnionId,
};

use super::dep::{Dep, Simple};
use super::eval::{entry_holds, entry_satisfying, providers, satisfying, to_dep};
use crate::definition::Arch;
use crate::glob;
use crate::repo::Pool;
use crate::repo::pool::{DepKind, GroupReq};
use crate::repo::strings::Sid;

/// What to resolve.
#[derive(Debug, Clone)]
pub struct Request {
    /// Names, `name.arch`, provides (`name >= 1`), file paths and `@group`s to install.
    pub install: Vec<String>,
    /// Globs of package names never considered.
    pub exclude: Vec<String>,
    /// Names that must not be installed (the definition's `packages.remove`).
    pub remove: Vec<String>,
    /// Per repository (by index in the pool): globs never taken from it.
    pub repo_excludes: Vec<Vec<String>>,
    pub arch: Arch,
    pub weak_deps: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no package matches `{spec}`{hint}")]
    NoMatch { spec: String, hint: String },
    #[error("{0}")]
    BadSpec(String),
    #[error("the request cannot be satisfied:\n{explanation}")]
    Unsolvable { explanation: String },
}

/// The result: the packages to install.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// Pool indexes, sorted by name, then arch.
    pub packages: Vec<u32>,
    /// Things worth telling the user (skipped group members, obsoleted requests…).
    pub notes: Vec<String>,
}

const INSTALLONLY_NAMES: &[&str] = &[
    "kernel",
    "kernel-core",
    "kernel-modules",
    "kernel-modules-core",
    "kernel-modules-extra",
    "kernel-devel",
    "kernel-uki-virt",
];
const INSTALLONLY_PROVIDES: &[&str] = &[
    "installonlypkg(kernel)",
    "installonlypkg(kernel-module)",
    "installonlypkg(vm)",
    "multiversion(kernel)",
];

/// Architectures that are another arch's "multilib" companions, only used when asked for.
fn multilib_arches(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::X86_64 => &["i686", "i586", "i486", "i386", "athlon"],
        Arch::Aarch64 => &[],
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum NameKey {
    /// A package name; the flag marks multilib packages, which may sit beside native ones.
    Pkg(Sid, bool),
    /// Nothing provides this: a name with no candidates, for messages.
    Missing(String),
    /// A virtual package standing for "none of these is installed" (index into `virtuals`).
    Not(usize),
}

/// A set of solvables of one name, with a label for messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct VsKey {
    name: NameId,
    label: String,
}

struct Provider<'p> {
    pool: &'p Pool,
    arch: Arch,
    /// Solvable index → pool package.
    solvables: Vec<u32>,
    /// Pool package → solvable (u32::MAX if not an allowed arch).
    of_pkg: Vec<u32>,
    /// Why a solvable may not be chosen.
    excluded: Vec<Option<String>>,
    /// Solver names: `2 * sid + multilib` for package names (no table needed); names for
    /// messages and virtual packages come after `2 * strings.len()`, kept here.
    extra_names: RefCell<Vec<(NameKey, Vec<SolvableId>)>>,
    /// Candidates of package names, computed when first asked for.
    candidates: RefCell<std::collections::HashMap<NameId, Vec<SolvableId>>>,
    version_sets: RefCell<IndexSet<VsKey>>,
    vs_members: RefCell<Vec<Vec<SolvableId>>>,
    unions: RefCell<Vec<Vec<VersionSetId>>>,
    conditions: RefCell<Vec<Condition>>,
    strings: RefCell<IndexSet<String>>,
    notes: RefCell<Vec<String>>,
    /// Virtual solvables after the real ones: each forbids a set of packages, so "not X" can be
    /// required (resolvo has no negative literals). (label, forbidden packages, its name)
    virtuals: RefCell<Vec<(String, Vec<u32>, NameId)>>,
}

fn arch_rank(arch: &str, native: &str) -> u8 {
    if arch == native {
        0
    } else if arch == "noarch" {
        1
    } else {
        2
    }
}

impl<'p> Provider<'p> {
    fn new(pool: &'p Pool, req: &Request) -> Self {
        let native = req.arch.rpm_name();
        let multi = multilib_arches(req.arch);
        let mut solvables = Vec::new();
        let mut of_pkg = vec![u32::MAX; pool.packages.len()];
        let mut excluded = Vec::new();
        let no_excludes = req.exclude.is_empty()
            && req.remove.is_empty()
            && req.repo_excludes.iter().all(Vec::is_empty);
        for (i, p) in pool.packages.iter().enumerate() {
            let arch = pool.str(p.arch);
            let is_multi = multi.contains(&arch);
            if !(arch == native || arch == "noarch" || is_multi) {
                continue;
            }
            of_pkg[i] = solvables.len() as u32;
            solvables.push(i as u32);
            if no_excludes {
                excluded.push(None);
                continue;
            }
            let name = pool.str(p.name);
            let reason = if let Some(g) = req.exclude.iter().find(|g| glob::matches(g, name)) {
                Some(format!("excluded by `{g}`"))
            } else if req.remove.iter().any(|r| r == name) {
                Some("removed by packages.remove".to_string())
            } else {
                req.repo_excludes
                    .get(p.repo as usize)
                    .and_then(|globs| globs.iter().find(|g| glob::matches(g, name)))
                    .map(|g| {
                        format!(
                            "excluded from repository `{}` by `{g}`",
                            pool.repos[p.repo as usize].id
                        )
                    })
            };
            excluded.push(reason);
        }
        // dnf prunes each name to its best repository priority: the others are not candidates.
        // (Only needed when the repositories' priorities differ.)
        if pool
            .repos
            .windows(2)
            .any(|w| w[0].priority != w[1].priority)
        {
            let mut best: std::collections::HashMap<Sid, u8> = std::collections::HashMap::new();
            for (s, &pkg) in solvables.iter().enumerate() {
                if excluded[s].is_none() {
                    let p = &pool.packages[pkg as usize];
                    let prio = pool.repos[p.repo as usize].priority;
                    let e = best.entry(p.name).or_insert(prio);
                    *e = (*e).min(prio);
                }
            }
            for (s, &pkg) in solvables.iter().enumerate() {
                let p = &pool.packages[pkg as usize];
                let repo = &pool.repos[p.repo as usize];
                if excluded[s].is_none() && best.get(&p.name).is_some_and(|&b| repo.priority > b) {
                    excluded[s] = Some(format!(
                        "repository `{}` has a lower priority ({}) than another that has this package",
                        repo.id, repo.priority
                    ));
                }
            }
        }
        Provider {
            pool,
            arch: req.arch,
            solvables,
            of_pkg,
            excluded,
            extra_names: RefCell::new(Vec::new()),
            candidates: RefCell::new(std::collections::HashMap::new()),
            version_sets: RefCell::new(IndexSet::new()),
            vs_members: RefCell::new(Vec::new()),
            unions: RefCell::new(Vec::new()),
            conditions: RefCell::new(Vec::new()),
            strings: RefCell::new(IndexSet::new()),
            notes: RefCell::new(Vec::new()),
            virtuals: RefCell::new(Vec::new()),
        }
    }

    fn is_virtual(&self, s: SolvableId) -> bool {
        s.to_index() >= self.solvables.len()
    }

    fn is_excluded(&self, s: SolvableId) -> bool {
        self.excluded.get(s.to_index()).is_some_and(Option::is_some)
    }

    /// A virtual solvable that, when installed, keeps every package of `pkgs` out.
    fn not_solvable(&self, pkgs: &[u32], label: &str) -> SolvableId {
        let mut virtuals = self.virtuals.borrow_mut();
        if let Some(i) = virtuals
            .iter()
            .position(|(l, p, _)| l == label && p == pkgs)
        {
            return SolvableId::from_index(self.solvables.len() + i);
        }
        let i = virtuals.len();
        let s = SolvableId::from_index(self.solvables.len() + i);
        let n = self.extra_name(NameKey::Not(i), vec![s]);
        virtuals.push((label.to_string(), pkgs.to_vec(), n));
        s
    }

    /// The first index after the package names.
    fn names_base(&self) -> usize {
        2 * self.pool.strings.len()
    }

    fn extra_name(&self, key: NameKey, cands: Vec<SolvableId>) -> NameId {
        let mut extra = self.extra_names.borrow_mut();
        if let Some(i) = extra.iter().position(|(k, _)| *k == key) {
            return NameId::from_index(self.names_base() + i);
        }
        extra.push((key, cands));
        NameId::from_index(self.names_base() + extra.len() - 1)
    }

    fn name_key(&self, name: NameId) -> Option<NameKey> {
        let i = name.to_index();
        if i < self.names_base() {
            return Some(NameKey::Pkg(Sid((i / 2) as u32), i % 2 == 1));
        }
        self.extra_names
            .borrow()
            .get(i - self.names_base())
            .map(|(k, _)| k.clone())
    }

    fn is_multi(&self, pkg: u32) -> bool {
        multilib_arches(self.arch).contains(&self.pool.str(self.pool.packages[pkg as usize].arch))
    }

    /// Every solvable of a name, in pool order.
    fn candidates_of(&self, name: NameId) -> Vec<SolvableId> {
        match self.name_key(name) {
            Some(NameKey::Pkg(sid, multi)) => {
                if let Some(c) = self.candidates.borrow().get(&name) {
                    return c.clone();
                }
                let c: Vec<SolvableId> = self
                    .pool
                    .by_name(sid)
                    .filter(|&q| self.is_multi(q) == multi)
                    .filter_map(|q| self.solvable_of(q))
                    .collect();
                self.candidates.borrow_mut().insert(name, c.clone());
                c
            }
            Some(_) => self.extra_names.borrow()[name.to_index() - self.names_base()]
                .1
                .clone(),
            None => Vec::new(),
        }
    }

    fn pkg(&self, s: SolvableId) -> u32 {
        self.solvables[s.to_index()]
    }

    fn solvable_of(&self, pkg: u32) -> Option<SolvableId> {
        let s = self.of_pkg[pkg as usize];
        (s != u32::MAX).then(|| SolvableId::from_index(s as usize))
    }

    fn name_of_solvable(&self, s: SolvableId) -> NameId {
        if self.is_virtual(s) {
            return self.virtuals.borrow()[s.to_index() - self.solvables.len()].2;
        }
        let pkg = self.pkg(s);
        let p = &self.pool.packages[pkg as usize];
        NameId::from_index(2 * p.name.0 as usize + usize::from(self.is_multi(pkg)))
    }

    fn missing_name(&self, label: &str) -> NameId {
        self.extra_name(NameKey::Missing(label.to_string()), Vec::new())
    }

    fn intern_string(&self, s: String) -> StringId {
        StringId(self.strings.borrow_mut().insert_full(s).0 as u32)
    }

    fn version_set(&self, name: NameId, label: String, members: Vec<SolvableId>) -> VersionSetId {
        let mut sets = self.version_sets.borrow_mut();
        let (idx, new) = sets.insert_full(VsKey { name, label });
        if new {
            let mut m = members;
            m.sort_unstable();
            self.vs_members.borrow_mut().push(m);
        }
        VersionSetId(idx as u32)
    }

    /// Groups packages (pool indexes) into one version set per solver name.
    fn sets_for(&self, pkgs: &[u32], label: &str) -> Vec<VersionSetId> {
        let mut groups: Vec<(NameId, Vec<SolvableId>)> = Vec::new();
        for &p in pkgs {
            let Some(s) = self.solvable_of(p) else {
                continue;
            };
            let n = self.name_of_solvable(s);
            match groups.iter_mut().find(|(gn, _)| *gn == n) {
                Some((_, v)) => v.push(s),
                None => groups.push((n, vec![s])),
            }
        }
        // The order the solver tries alternatives in (policy, as in libsolv/dnf): a package
        // named like the capability first (libsystemd0 for `libsystemd0`, not a replacement
        // that also provides it), native arch before noarch before multilib, then by name.
        let simple = !label.starts_with('(') && !label.contains(" or ");
        let cap = label.split_whitespace().next().filter(|_| simple);
        groups.sort_by(|(_, a), (_, b)| {
            let key = |v: &Vec<SolvableId>| {
                let p = &self.pool.packages[self.pkg(v[0]) as usize];
                let name = self.pool.str(p.name);
                (
                    cap != Some(name),
                    arch_rank(self.pool.str(p.arch), self.arch.rpm_name()),
                    name,
                )
            };
            key(a).cmp(&key(b))
        });
        groups
            .into_iter()
            .map(|(n, members)| self.version_set(n, label.to_string(), members))
            .collect()
    }

    /// A requirement on "any of these packages"; an empty list becomes a requirement nothing
    /// can meet, labelled for the explanation.
    fn requirement(&self, pkgs: &[u32], label: &str) -> Requirement {
        self.requirement_with(pkgs, &[], label)
    }

    /// "any of these packages, or any of these virtual solvables".
    fn requirement_with(&self, pkgs: &[u32], virtuals: &[SolvableId], label: &str) -> Requirement {
        // "None of these" first: when a conflict can be lifted by installing nothing, that is
        // what dnf does too.
        let mut sets: Vec<VersionSetId> = virtuals
            .iter()
            .map(|v| self.version_set(self.name_of_solvable(*v), label.to_string(), vec![*v]))
            .collect();
        sets.extend(self.sets_for(pkgs, label));
        match sets.len() {
            0 => Requirement::Single(self.version_set(
                self.missing_name(label),
                label.to_string(),
                Vec::new(),
            )),
            1 => Requirement::Single(sets[0]),
            _ => {
                let mut unions = self.unions.borrow_mut();
                unions.push(sets);
                Requirement::Union(VersionSetUnionId((unions.len() - 1) as u32))
            }
        }
    }

    /// A requirement's label, saying why nothing can meet it when that is so: nothing provides
    /// it, only other versions are available, or only other architectures.
    fn label_for(&self, text: String, name: Sid, pkgs: &[u32]) -> String {
        let pool = self.pool;
        if pkgs.iter().any(|&p| self.solvable_of(p).is_some()) {
            return text;
        }
        if !pkgs.is_empty() {
            let arches: Vec<&str> = pkgs
                .iter()
                .map(|&p| pool.str(pool.packages[p as usize].arch))
                .collect();
            return format!("{text} (provided only for {})", arches.join(", "));
        }
        let mut others: Vec<String> = pool
            .providers_raw(name)
            .iter()
            .map(|&(p, _)| pool.nevra(p))
            .collect();
        others.sort();
        others.dedup();
        match others.len() {
            0 => format!("{text} (nothing provides it)"),
            n if n <= 4 => format!("{text} (available: {})", others.join(", ")),
            n => format!(
                "{text} (available: {} and {} more)",
                others[..3].join(", "),
                n - 3
            ),
        }
    }

    fn condition(&self, c: Condition) -> ConditionId {
        let mut conds = self.conditions.borrow_mut();
        conds.push(c);
        ConditionId::new((conds.len() - 1) as u32)
    }

    /// "some package of these is installed" as a condition.
    fn condition_on(&self, pkgs: &[u32], label: &str) -> ConditionId {
        let sets = self.sets_for(pkgs, label);
        let sets = if sets.is_empty() {
            vec![self.version_set(self.missing_name(label), label.to_string(), Vec::new())]
        } else {
            sets
        };
        let mut ids = sets
            .into_iter()
            .map(|vs| self.condition(Condition::Requirement(vs)));
        let first = ids.next().expect("at least one set");
        ids.fold(first, |acc, c| {
            self.condition(Condition::Binary(LogicalOperator::Or, acc, c))
        })
    }

    fn cond_of(&self, dep: &Dep) -> Result<ConditionId, String> {
        Ok(match dep {
            Dep::Simple(_) | Dep::With(_) | Dep::Without(..) => {
                self.condition_on(&satisfying(self.pool, dep), &dep.to_string())
            }
            Dep::And(items) | Dep::Or(items) => {
                let op = if matches!(dep, Dep::And(_)) {
                    LogicalOperator::And
                } else {
                    LogicalOperator::Or
                };
                let mut it = items.iter();
                let first = self.cond_of(it.next().ok_or("empty expression")?)?;
                let mut acc = first;
                for d in it {
                    let c = self.cond_of(d)?;
                    acc = self.condition(Condition::Binary(op, acc, c));
                }
                acc
            }
            _ => return Err(format!("`{dep}` as a condition")),
        })
    }

    /// A dependency as clauses: each "one of these alternatives", maybe under a condition.
    fn clauses(&self, dep: &Dep) -> Result<Vec<Clause>, String> {
        Ok(match dep {
            Dep::Simple(_) | Dep::With(_) | Dep::Without(..) => vec![Clause {
                cond: None,
                alts: vec![(satisfying(self.pool, dep), dep.to_string())],
            }],
            Dep::And(items) => {
                let mut out = Vec::new();
                for d in items {
                    out.extend(self.clauses(d)?);
                }
                out
            }
            Dep::Or(items) => {
                // (a and b) or c = (a or c) and (b or c): distribute, unconditioned only.
                let mut acc: Vec<Clause> = vec![Clause {
                    cond: None,
                    alts: Vec::new(),
                }];
                for d in items {
                    let cl = self.clauses(d)?;
                    if cl.iter().any(|c| c.cond.is_some()) {
                        return Err(format!("conditional `{d}` inside an `or`"));
                    }
                    let mut next = Vec::new();
                    for a in &acc {
                        for c in &cl {
                            let mut alts = a.alts.clone();
                            alts.extend(c.alts.iter().cloned());
                            next.push(Clause { cond: None, alts });
                        }
                    }
                    if next.len() > 64 {
                        return Err(format!("`{dep}` is too large to expand"));
                    }
                    acc = next;
                }
                acc
            }
            Dep::If {
                then,
                cond,
                otherwise,
            } => {
                let c = self.cond_of(cond)?;
                let mut out = Vec::new();
                for mut cl in self.clauses(then)? {
                    cl.cond = Some(match cl.cond {
                        Some(inner) => {
                            self.condition(Condition::Binary(LogicalOperator::And, inner, c))
                        }
                        None => c,
                    });
                    out.push(cl);
                }
                if let Some(o) = otherwise {
                    // `else o`: o unless cond, i.e. cond or o.
                    let alt = (satisfying(self.pool, cond), cond.to_string());
                    for mut cl in self.clauses(o)? {
                        cl.alts.push(alt.clone());
                        out.push(cl);
                    }
                }
                out
            }
            Dep::Unless {
                then,
                cond,
                otherwise,
            } => {
                let alt = (satisfying(self.pool, cond), cond.to_string());
                let mut out = Vec::new();
                for mut cl in self.clauses(then)? {
                    cl.alts.push(alt.clone());
                    out.push(cl);
                }
                if let Some(o) = otherwise {
                    let c = self.cond_of(cond)?;
                    for mut cl in self.clauses(o)? {
                        cl.cond = Some(match cl.cond {
                            Some(inner) => {
                                self.condition(Condition::Binary(LogicalOperator::And, inner, c))
                            }
                            None => c,
                        });
                        out.push(cl);
                    }
                }
                out
            }
        })
    }

    /// `dep` (or its negation) in conjunctive normal form over package-set literals.
    /// `conflict` picks rpm's meaning of `if`/`unless` without `else` in Conflicts.
    fn cnf(&self, dep: &Dep, neg: bool) -> Result<Vec<Vec<Lit>>, String> {
        self.cnf_in(dep, neg, false)
    }

    fn cnf_in(&self, dep: &Dep, neg: bool, conflict: bool) -> Result<Vec<Vec<Lit>>, String> {
        let pool = self.pool;
        let atom = |d: &Dep| {
            let pkgs = satisfying(pool, d);
            let label = d.to_string();
            vec![vec![if neg {
                Lit::Neg(pkgs, label)
            } else {
                Lit::Pos(pkgs, label)
            }]]
        };
        Ok(match dep {
            Dep::Simple(_) | Dep::With(_) | Dep::Without(..) => atom(dep),
            // and: clauses add up; not-and: an or of the negations.
            Dep::And(items) if !neg => items
                .iter()
                .map(|d| self.cnf_in(d, false, conflict))
                .collect::<Result<Vec<_>, _>>()?
                .concat(),
            Dep::And(items) => or_all(
                items
                    .iter()
                    .map(|d| self.cnf_in(d, true, conflict))
                    .collect::<Result<_, _>>()?,
            )?,
            Dep::Or(items) if !neg => or_all(
                items
                    .iter()
                    .map(|d| self.cnf_in(d, false, conflict))
                    .collect::<Result<_, _>>()?,
            )?,
            Dep::Or(items) => items
                .iter()
                .map(|d| self.cnf_in(d, true, conflict))
                .collect::<Result<Vec<_>, _>>()?
                .concat(),
            Dep::If {
                then,
                cond,
                otherwise,
            }
            | Dep::Unless {
                then,
                cond,
                otherwise,
            } => {
                // (a if c else o) = (c ∧ a) ∨ (¬c ∧ o); `unless` swaps c and ¬c. Without
                // `else`, o is true where something is required and false in a conflict (rpm:
                // `Conflicts: (a unless b)` is "a and not b").
                let is_if = matches!(dep, Dep::If { .. });
                let c_pos = self.cnf_in(cond, !is_if, conflict)?; // "c holds", in the swapped sense
                let c_neg = self.cnf_in(cond, is_if, conflict)?; // "c does not hold"
                let t = self.cnf_in(then, neg, conflict)?;

                match (otherwise, neg) {
                    (Some(o), false) => {
                        let mut out = or_cnf(c_neg, t)?;
                        out.extend(or_cnf(c_pos, self.cnf_in(o, false, conflict)?)?);
                        out
                    }
                    (Some(o), true) => {
                        let mut out = or_cnf(c_neg, t)?;
                        out.extend(or_cnf(c_pos, self.cnf_in(o, true, conflict)?)?);
                        out
                    }
                    (None, false) if !conflict => or_cnf(c_neg, t)?,
                    (None, false) => [c_pos, t].concat(),
                    (None, true) if !conflict => [or_cnf(c_neg, t)?, c_pos].concat(),
                    (None, true) => or_cnf(c_neg, t)?,
                }
            }
        })
    }

    /// One clause of literals as a requirement: real packages, or virtual "none of" solvables.
    fn lits_requirement(&self, clause: &[Lit]) -> ConditionalRequirement {
        let mut pkgs = Vec::new();
        let mut virtuals = Vec::new();
        let mut labels = Vec::new();
        for l in clause {
            match l {
                Lit::Pos(p, label) => {
                    pkgs.extend_from_slice(p);
                    labels.push(label.clone());
                }
                Lit::Neg(p, label) => {
                    virtuals.push(self.not_solvable(p, &format!("no {label}")));
                    labels.push(format!("no {label}"));
                }
            }
        }
        pkgs.sort_unstable();
        pkgs.dedup();
        self.requirement_with(&pkgs, &virtuals, &labels.join(" or "))
            .into()
    }

    fn clause_requirement(&self, cl: Clause) -> ConditionalRequirement {
        let mut pkgs: Vec<u32> = cl
            .alts
            .iter()
            .flat_map(|(p, _)| p.iter().copied())
            .collect();
        pkgs.sort_unstable();
        pkgs.dedup();
        let label = cl
            .alts
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join(" or ");
        ConditionalRequirement {
            condition: cl.cond,
            requirement: self.requirement(&pkgs, &label),
        }
    }

    fn is_installonly(&self, name: NameId) -> bool {
        let Some(NameKey::Pkg(sid, _)) = self.name_key(name) else {
            return false;
        };
        if INSTALLONLY_NAMES.contains(&self.pool.str(sid)) {
            return true;
        }
        self.candidates_of(name).iter().any(|s| {
            self.pool
                .deps_of(self.pkg(*s), DepKind::Provides)
                .iter()
                .any(|d| INSTALLONLY_PROVIDES.contains(&self.pool.str(d.name)))
        })
    }

    /// Best first: highest EVR, then native arch over noarch, cheaper repository, pool order.
    fn sort(&self, solvables: &mut [SolvableId]) {
        if solvables.iter().any(|s| self.is_virtual(*s)) {
            return;
        }
        let pool = self.pool;
        let native = self.arch.rpm_name();
        solvables.sort_by(|a, b| {
            let (pa, pb) = (self.pkg(*a), self.pkg(*b));
            let (ra, rb) = (&pool.packages[pa as usize], &pool.packages[pb as usize]);
            pool.evr_cmp(pb, pa)
                .then_with(|| {
                    arch_rank(pool.str(ra.arch), native).cmp(&arch_rank(pool.str(rb.arch), native))
                })
                .then_with(|| {
                    pool.repos[ra.repo as usize]
                        .cost
                        .cmp(&pool.repos[rb.repo as usize].cost)
                })
                .then_with(|| pa.cmp(&pb))
        });
    }

    fn dependencies(&self, s: SolvableId) -> Dependencies {
        let pool = self.pool;
        if self.is_virtual(s) {
            let (label, forbidden, _) =
                self.virtuals.borrow()[s.to_index() - self.solvables.len()].clone();
            let mut known = KnownDependencies::default();
            let mut by_name: Vec<(NameId, Vec<u32>)> = Vec::new();
            for v in forbidden {
                let Some(vs) = self.solvable_of(v) else {
                    continue;
                };
                let n = self.name_of_solvable(vs);
                match by_name.iter_mut().find(|(gn, _)| *gn == n) {
                    Some((_, list)) => list.push(v),
                    None => by_name.push((n, vec![v])),
                }
            }
            for (n, bad) in by_name {
                let allowed: Vec<SolvableId> = self
                    .candidates_of(n)
                    .into_iter()
                    .filter(|c| !bad.contains(&self.pkg(*c)))
                    .collect();
                known
                    .constrains
                    .push(self.version_set(n, label.clone(), allowed));
            }
            return Dependencies::Known(known);
        }
        let pkg = self.pkg(s);
        let own_name = pool.packages[pkg as usize].name;
        let mut known = KnownDependencies::default();
        for d in pool.deps_of(pkg, DepKind::Requires) {
            let name = pool.str(d.name);
            // rpmlib() capabilities are provided by rpm itself.
            if name.starts_with("rpmlib(") {
                continue;
            }
            if !d.is_rich() {
                let pkgs = pool.what_provides(d);
                let label = self.label_for(pool.dep_text(d), d.name, &pkgs);
                known
                    .requirements
                    .push(self.requirement(&pkgs, &label).into());
                continue;
            }
            let dep = match to_dep(pool, d) {
                Ok(dep) => dep,
                Err(e) => {
                    let msg = format!("kiln cannot read its dependency `{name}` ({e})");
                    return Dependencies::Unknown(self.intern_string(msg));
                }
            };
            // Conditions where resolvo has them (clearer explanations); the general encoding
            // with "none of" literals for what they cannot say.
            let compiled = self
                .clauses(&dep)
                .map(|cl| {
                    cl.into_iter()
                        .map(|c| self.clause_requirement(c))
                        .collect::<Vec<_>>()
                })
                .or_else(|_| {
                    self.cnf(&dep, false)
                        .map(|cnf| cnf.iter().map(|c| self.lits_requirement(c)).collect())
                });
            match compiled {
                Ok(reqs) => known.requirements.extend(reqs),
                Err(why) => {
                    let msg = format!("kiln cannot evaluate its dependency `{name}` ({why})");
                    return Dependencies::Unknown(self.intern_string(msg));
                }
            }
        }
        // Conflicts and obsoletes: whatever matches must not be installed beside this package.
        let mut forbid = |victims: Vec<u32>, label: String| {
            let mut by_name: Vec<(NameId, Vec<u32>)> = Vec::new();
            for v in victims {
                if pool.packages[v as usize].name == own_name {
                    continue;
                }
                let Some(vs) = self.solvable_of(v) else {
                    continue;
                };
                let n = self.name_of_solvable(vs);
                match by_name.iter_mut().find(|(gn, _)| *gn == n) {
                    Some((_, list)) => list.push(v),
                    None => by_name.push((n, vec![v])),
                }
            }
            for (n, bad) in by_name {
                let allowed: Vec<SolvableId> = self
                    .candidates_of(n)
                    .into_iter()
                    .filter(|c| !bad.contains(&self.pkg(*c)))
                    .collect();
                known
                    .constrains
                    .push(self.version_set(n, format!("not {label}"), allowed));
            }
        };
        for d in pool.deps_of(pkg, DepKind::Conflicts) {
            if !d.is_rich() {
                forbid(
                    pool.what_provides(d),
                    format!("conflicting with {}", pool.dep_text(d)),
                );
                continue;
            }
            let Ok(dep) = to_dep(pool, d) else { continue };
            match &dep {
                Dep::Simple(_) | Dep::With(_) | Dep::Without(..) | Dep::Or(_) => forbid(
                    satisfying(pool, &dep),
                    format!("conflicting with {}", pool.dep_text(d)),
                ),
                // Other forms: the negation of the expression must hold while this is installed.
                _ => match self.cnf_in(&dep, true, true) {
                    Ok(cnf) => known
                        .requirements
                        .extend(cnf.iter().map(|c| self.lits_requirement(c))),
                    Err(why) => self.notes.borrow_mut().push(format!(
                        "{}: ignoring the conflict `{}` ({why})",
                        pool.nevra(pkg),
                        pool.str(d.name)
                    )),
                },
            }
        }
        for d in pool.deps_of(pkg, DepKind::Obsoletes) {
            let victims: Vec<u32> = pool
                .by_name(d.name)
                .filter(|&v| pool.name_matches(v, d))
                .collect();
            forbid(victims, format!("obsoleted by {}", pool.nevra(pkg)));
        }
        Dependencies::Known(known)
    }
}

struct Clause {
    cond: Option<ConditionId>,
    alts: Vec<(Vec<u32>, String)>,
}

/// A literal of the general encoding: some package of the set is installed, or none is.
#[derive(Clone)]
enum Lit {
    Pos(Vec<u32>, String),
    Neg(Vec<u32>, String),
}

/// Clauses limit for expanding `or`s of `and`s; real dependencies stay far below.
const MAX_CLAUSES: usize = 256;

/// (a1 and a2) or (b1 and b2) = every pairing, each an `or`.
fn or_cnf(a: Vec<Vec<Lit>>, b: Vec<Vec<Lit>>) -> Result<Vec<Vec<Lit>>, String> {
    if a.len() * b.len() > MAX_CLAUSES {
        return Err("too large to expand".into());
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in &a {
        for y in &b {
            out.push(x.iter().chain(y).cloned().collect());
        }
    }
    Ok(out)
}

fn or_all(parts: Vec<Vec<Vec<Lit>>>) -> Result<Vec<Vec<Lit>>, String> {
    let mut acc = vec![Vec::new()];
    for p in parts {
        acc = or_cnf(acc, p)?;
    }
    Ok(acc)
}

impl Interner for Provider<'_> {
    type NameId = NameId;
    type SolvableId = SolvableId;

    fn display_solvable(&self, solvable: SolvableId) -> impl Display + '_ {
        if self.is_virtual(solvable) {
            return self.virtuals.borrow()[solvable.to_index() - self.solvables.len()]
                .0
                .clone();
        }
        self.pool.nevra(self.pkg(solvable))
    }

    fn display_merged_solvables(&self, solvables: &[SolvableId]) -> impl Display + '_ {
        let mut v: Vec<String> = solvables
            .iter()
            .map(|s| self.display_solvable(*s).to_string())
            .collect();
        v.sort();
        v.dedup();
        v.join(", ")
    }

    fn display_name(&self, name: NameId) -> impl Display + '_ {
        match self.name_key(name) {
            Some(NameKey::Pkg(sid, false)) => self.pool.str(sid).to_string(),
            Some(NameKey::Pkg(sid, true)) => format!("{} (multilib)", self.pool.str(sid)),
            Some(NameKey::Missing(label)) => label,
            Some(NameKey::Not(i)) => self.virtuals.borrow()[i].0.clone(),
            None => "?".to_string(),
        }
    }

    fn display_version_set(&self, version_set: VersionSetId) -> impl Display + '_ {
        let (name, label) = {
            let sets = self.version_sets.borrow();
            let key = &sets[version_set.0 as usize];
            (key.name, key.label.clone())
        };
        // A request by name needs no repetition: `fx-app (fx-app)` reads as `fx-app (any)`.
        if self.display_name(name).to_string() == label {
            return "(any version)".to_string();
        }
        format!("({label})")
    }

    fn display_string(&self, string_id: StringId) -> impl Display + '_ {
        self.strings.borrow()[string_id.0 as usize].clone()
    }

    fn version_set_name(&self, version_set: VersionSetId) -> NameId {
        self.version_sets.borrow()[version_set.0 as usize].name
    }

    fn solvable_name(&self, solvable: SolvableId) -> NameId {
        self.name_of_solvable(solvable)
    }

    fn version_sets_in_union(&self, u: VersionSetUnionId) -> impl Iterator<Item = VersionSetId> {
        self.unions.borrow()[u.0 as usize].clone().into_iter()
    }

    fn resolve_condition(&self, condition: ConditionId) -> Condition {
        self.conditions.borrow()[condition.as_u32() as usize].clone()
    }
}

impl DependencyProvider for Provider<'_> {
    async fn filter_candidates(
        &self,
        candidates: &[SolvableId],
        version_set: VersionSetId,
        inverse: bool,
    ) -> Vec<SolvableId> {
        let members = self.vs_members.borrow();
        let m = &members[version_set.0 as usize];
        candidates
            .iter()
            .copied()
            .filter(|c| m.binary_search(c).is_ok() != inverse)
            .collect()
    }

    async fn get_candidates(&self, name: NameId) -> Option<Candidates<SolvableId>> {
        let cands = self.candidates_of(name);
        if cands.is_empty() {
            return None;
        }
        let excluded = cands
            .iter()
            .filter_map(|s| {
                self.excluded
                    .get(s.to_index())
                    .cloned()
                    .flatten()
                    .map(|why| (*s, self.intern_string(why)))
            })
            .collect();
        Some(Candidates {
            candidates: cands,
            excluded,
            allow_multiple: self.is_installonly(name),
            ..Candidates::default()
        })
    }

    async fn sort_candidates(&self, _solver: &SolverCache<Self>, solvables: &mut [SolvableId]) {
        self.sort(solvables);
    }

    async fn get_dependencies(&self, solvable: SolvableId) -> Dependencies {
        self.dependencies(solvable)
    }
}

/// Resolves a request against a pool.
pub fn resolve(pool: &Pool, req: &Request) -> Result<Resolution, ResolveError> {
    // Multilib packages are candidates, under names of their own; the native arch is always
    // tried first, so they come in only when asked for or needed (like dnf).
    let provider = Provider::new(pool, req);
    let mut notes = Vec::new();
    let roots = root_requirements(&provider, req, &mut notes)?;
    let mut solver = Solver::new(provider);

    // Weak dependencies: resolvo's soft requirements can be undone by later ones, so kiln does
    // what libsolv does in effect: it adds the recommended (or supplementing) packages as
    // requirements, all at once, and when that fails finds by bisection the ones that cannot
    // be installed and leaves them out. New packages bring new recommendations: repeat.
    let mut chosen = solve_with(&mut solver, &roots, &[])?;
    let mut accepted: Vec<SolvableId> = Vec::new();
    let mut tried: HashSet<SolvableId> = HashSet::new();
    let mut rounds = 0;
    while req.weak_deps && rounds < MAX_WEAK_ROUNDS {
        rounds += 1;
        let more: Vec<SolvableId> = weak_candidates(solver.provider(), &chosen, &accepted)
            .into_iter()
            .filter(|s| tried.insert(*s))
            .collect();
        if more.is_empty() {
            break;
        }
        let mut best = None;
        add_installable(&mut solver, &roots, &mut accepted, &more, &mut best);
        if let Some(sol) = best {
            chosen = sol;
        }
    }
    let provider = solver.provider();
    let mut packages: Vec<u32> = chosen
        .iter()
        .filter(|s| !provider.is_virtual(**s))
        .map(|s| provider.pkg(*s))
        .collect();
    packages.sort_by(|a, b| {
        let (pa, pb) = (&pool.packages[*a as usize], &pool.packages[*b as usize]);
        pool.str(pa.name)
            .cmp(pool.str(pb.name))
            .then_with(|| pool.str(pa.arch).cmp(pool.str(pb.arch)))
            .then_with(|| pool.evr_cmp(*a, *b))
    });
    packages.dedup();
    notes.extend(provider.notes.borrow().iter().cloned());
    Ok(Resolution { packages, notes })
}

/// How many times new weak dependencies are looked for (each round adds the recommendations
/// of what the previous one added).
const MAX_WEAK_ROUNDS: usize = 32;

/// Solves the roots plus "exactly these packages".
fn solve_with(
    solver: &mut Solver<Provider<'_>>,
    roots: &[ConditionalRequirement],
    extra: &[SolvableId],
) -> Result<Vec<SolvableId>, ResolveError> {
    let reqs = with_exact(solver.provider(), roots, extra);
    match solver.solve(Problem::new().requirements(reqs)) {
        Ok(s) => Ok(s),
        Err(UnsolvableOrCancelled::Unsolvable(conflict)) => Err(ResolveError::Unsolvable {
            explanation: conflict
                .display_user_friendly(solver)
                .to_string()
                .trim_end()
                .to_string(),
        }),
        Err(UnsolvableOrCancelled::Cancelled(_)) => Err(ResolveError::Unsolvable {
            explanation: "resolution was cancelled".into(),
        }),
    }
}

/// As `solve_with`, without explaining a failure (bisection fails often; explaining is costly).
fn try_solve(
    solver: &mut Solver<Provider<'_>>,
    roots: &[ConditionalRequirement],
    extra: &[SolvableId],
) -> Option<Vec<SolvableId>> {
    let reqs = with_exact(solver.provider(), roots, extra);
    solver.solve(Problem::new().requirements(reqs)).ok()
}

/// The roots plus a requirement on exactly each of `extra`.
fn with_exact(
    p: &Provider<'_>,
    roots: &[ConditionalRequirement],
    extra: &[SolvableId],
) -> Vec<ConditionalRequirement> {
    let mut reqs = roots.to_vec();
    for s in extra {
        let n = p.name_of_solvable(*s);
        let label = p.display_solvable(*s).to_string();
        reqs.push(Requirement::Single(p.version_set(n, label, vec![*s])).into());
    }
    reqs
}

/// Adds as many of `cands` to `accepted` as can be installed together with it: all at once if
/// possible, otherwise each half in turn (so k failures cost about k·log n solves).
fn add_installable(
    solver: &mut Solver<Provider<'_>>,
    roots: &[ConditionalRequirement],
    accepted: &mut Vec<SolvableId>,
    cands: &[SolvableId],
    best: &mut Option<Vec<SolvableId>>,
) {
    if cands.is_empty() {
        return;
    }
    let mut trial = accepted.clone();
    trial.extend_from_slice(cands);
    if let Some(sol) = try_solve(solver, roots, &trial) {
        *accepted = trial;
        *best = Some(sol);
        return;
    }
    if cands.len() == 1 {
        return;
    }
    let (a, b) = cands.split_at(cands.len() / 2);
    add_installable(solver, roots, accepted, a, best);
    add_installable(solver, roots, accepted, b, best);
}

/// Packages the chosen set recommends (not yet satisfied) or that supplement it.
fn weak_candidates(p: &Provider, chosen: &[SolvableId], soft: &[SolvableId]) -> Vec<SolvableId> {
    let pool = p.pool;
    let set: HashSet<u32> = chosen
        .iter()
        .filter(|s| !p.is_virtual(**s))
        .map(|s| p.pkg(*s))
        .collect();
    let mut out: Vec<SolvableId> = Vec::new();
    // A candidate that clashes directly with the chosen set (another version of it is chosen,
    // or a conflict or obsolete between them) can never be added: leave it out here, where it
    // is cheap, instead of letting a failed solve find it.
    let mut forbidden: HashSet<u32> = HashSet::new();
    let chosen_names: HashSet<NameId> = chosen
        .iter()
        .filter(|s| !p.is_virtual(**s))
        .map(|s| p.name_of_solvable(*s))
        .collect();
    for &q in &set {
        let own = pool.packages[q as usize].name;
        for d in pool.deps_of(q, DepKind::Conflicts) {
            forbidden.extend(
                entry_satisfying(pool, d)
                    .into_iter()
                    .filter(|v| pool.packages[*v as usize].name != own),
            );
        }
        for d in pool.deps_of(q, DepKind::Obsoletes) {
            forbidden.extend(
                pool.by_name(d.name)
                    .filter(|&v| pool.packages[v as usize].name != own && pool.name_matches(v, d)),
            );
        }
    }
    let clashes = |s: SolvableId| -> bool {
        let c = p.pkg(s);
        let n = p.name_of_solvable(s);
        if forbidden.contains(&c) || (chosen_names.contains(&n) && !p.is_installonly(n)) {
            return true;
        }
        let own = pool.packages[c as usize].name;
        let conflicts = pool.deps_of(c, DepKind::Conflicts).iter().any(|d| {
            entry_satisfying(pool, d)
                .iter()
                .any(|v| set.contains(v) && pool.packages[*v as usize].name != own)
        });
        let obsoletes = pool.deps_of(c, DepKind::Obsoletes).iter().any(|d| {
            pool.by_name(d.name).any(|v| {
                set.contains(&v) && pool.packages[v as usize].name != own && pool.name_matches(v, d)
            })
        });
        conflicts || obsoletes
    };
    // Candidates of this round must not clash with each other either; one that does waits for
    // the next round (where the one it clashes with is either installed or not).
    let mut batch_forbidden: HashSet<u32> = HashSet::new();
    let mut batch_pkgs: HashSet<u32> = HashSet::new();
    let mut batch_names: HashSet<NameId> = HashSet::new();
    let mut push = |s: SolvableId, out: &mut Vec<SolvableId>| {
        if soft.contains(&s)
            || out.contains(&s)
            || set.contains(&p.pkg(s))
            || p.is_excluded(s)
            || clashes(s)
        {
            return;
        }
        let c = p.pkg(s);
        let n = p.name_of_solvable(s);
        let own = pool.packages[c as usize].name;
        let mut its_conflicts: Vec<u32> = pool
            .deps_of(c, DepKind::Conflicts)
            .iter()
            .flat_map(|d| entry_satisfying(pool, d))
            .filter(|v| pool.packages[*v as usize].name != own)
            .collect();
        for d in pool.deps_of(c, DepKind::Obsoletes) {
            its_conflicts.extend(
                pool.by_name(d.name)
                    .filter(|&v| pool.packages[v as usize].name != own && pool.name_matches(v, d)),
            );
        }
        if batch_forbidden.contains(&c)
            || (batch_names.contains(&n) && !p.is_installonly(n))
            || its_conflicts.iter().any(|v| batch_pkgs.contains(v))
        {
            return;
        }
        batch_forbidden.extend(its_conflicts);
        batch_pkgs.insert(c);
        batch_names.insert(n);
        out.push(s);
    };
    let mut members: Vec<&u32> = set.iter().collect();
    members.sort();
    for &pkg in members {
        for d in pool.deps_of(pkg, DepKind::Recommends) {
            if entry_holds(pool, d, &set) {
                continue;
            }
            // The best provider (of the first alternative that has one).
            let found: Vec<u32> = if d.is_rich() {
                let Ok(dep) = to_dep(pool, d) else { continue };
                first_alternative(&dep)
                    .iter()
                    .flat_map(|s| providers(pool, s))
                    .collect()
            } else {
                pool.what_provides(d)
            };
            let mut cands: Vec<SolvableId> = found
                .into_iter()
                .filter_map(|q| p.solvable_of(q))
                .filter(|s| p.excluded[s.to_index()].is_none())
                .collect();
            p.sort(&mut cands);
            if let Some(best) = cands.first() {
                push(*best, &mut out);
            }
        }
    }
    for (i, s) in p.solvables.iter().enumerate() {
        let sol = SolvableId::from_index(i);
        let sups = pool.deps_of(*s, DepKind::Supplements);
        if sups.is_empty() || set.contains(s) {
            continue;
        }
        if sups.iter().any(|d| entry_holds(pool, d, &set)) {
            push(sol, &mut out);
        }
    }
    out
}

/// The simple dependencies to try for a weak dependency that does not hold.
fn first_alternative(dep: &Dep) -> Vec<Simple> {
    match dep {
        Dep::Simple(s) => vec![s.clone()],
        Dep::Or(items) => items.iter().flat_map(first_alternative).take(1).collect(),
        Dep::And(items) | Dep::With(items) => items.iter().flat_map(first_alternative).collect(),
        Dep::If { then, .. } | Dep::Unless { then, .. } => first_alternative(then),
        Dep::Without(a, _) => first_alternative(a),
    }
}

fn root_requirements(
    p: &Provider,
    req: &Request,
    notes: &mut Vec<String>,
) -> Result<Vec<ConditionalRequirement>, ResolveError> {
    let mut out = Vec::new();
    for spec in &req.install {
        let spec = spec.trim();
        if let Some(group) = spec.strip_prefix('@') {
            out.extend(group_requirements(p, group, notes)?);
            continue;
        }
        out.push(spec_requirement(p, spec, notes)?);
    }
    Ok(out)
}

fn group_requirements(
    p: &Provider,
    group: &str,
    notes: &mut Vec<String>,
) -> Result<Vec<ConditionalRequirement>, ResolveError> {
    let pool = p.pool;
    let mut members: Vec<(Sid, GroupReq, Sid)> = Vec::new();
    let mut found = false;
    for groups in &pool.groups {
        for g in groups.iter().filter(|g| pool.str(g.id) == group) {
            found = true;
            for gp in &g.packages {
                if matches!(
                    gp.kind,
                    GroupReq::Mandatory | GroupReq::Default | GroupReq::Conditional
                ) && !members.iter().any(|(n, ..)| *n == gp.name)
                {
                    members.push((gp.name, gp.kind, gp.requires));
                }
            }
        }
    }
    if !found {
        let ids: Vec<&str> = pool
            .groups
            .iter()
            .flatten()
            .map(|g| pool.str(g.id))
            .collect();
        let hint = match crate::definition::error::did_you_mean(group, ids.iter().copied()) {
            Some(s) => format!("; did you mean `@{s}`?"),
            None if ids.is_empty() => "; the repositories define no groups".to_string(),
            None => format!(
                "; groups: {}",
                ids.iter()
                    .map(|i| format!("@{i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        return Err(ResolveError::NoMatch {
            spec: format!("@{group}"),
            hint,
        });
    }
    let mut out = Vec::new();
    for (name, kind, requires) in members {
        let pkgs: Vec<u32> = pool
            .by_name(name)
            .filter(|&q| p.solvable_of(q).is_some())
            .collect();
        if pkgs.is_empty()
            || pkgs
                .iter()
                .all(|&q| p.excluded[p.solvable_of(q).expect("filtered").to_index()].is_some())
        {
            // dnf skips group members it cannot find, with a warning.
            notes.push(format!(
                "group @{group}: no installable package `{}`; skipped",
                pool.str(name)
            ));
            continue;
        }
        let requirement = p.requirement(&pkgs, pool.str(name));
        let condition = (kind == GroupReq::Conditional && !requires.is_empty()).then(|| {
            let req_pkgs: Vec<u32> = pool.by_name(requires).collect();
            p.condition_on(&req_pkgs, pool.str(requires))
        });
        out.push(ConditionalRequirement {
            condition,
            requirement,
        });
    }
    Ok(out)
}

fn spec_requirement(
    p: &Provider,
    spec: &str,
    notes: &mut Vec<String>,
) -> Result<ConditionalRequirement, ResolveError> {
    let pool = p.pool;
    let dep = super::dep::parse(spec).map_err(|e| ResolveError::BadSpec(e.to_string()))?;
    let Dep::Simple(simple) = dep else {
        return Err(ResolveError::BadSpec(format!(
            "`{spec}`: list packages, not a rich dependency"
        )));
    };
    // 1. a package name (dnf looks at names first)
    if simple.range.is_none() {
        if let Some(sid) = pool.strings.lookup(&simple.name) {
            let mut pkgs: Vec<u32> = pool
                .by_name(sid)
                .filter(|&q| p.solvable_of(q).is_some())
                .collect();
            // A bare name means the native architecture (or noarch) when there is one, as in
            // dnf; `name.i686` asks for the multilib one.
            let multi = multilib_arches(p.arch);
            let is_multi = |q: u32| multi.contains(&pool.str(pool.packages[q as usize].arch));
            if pkgs.iter().any(|&q| !is_multi(q)) {
                pkgs.retain(|&q| !is_multi(q));
            }
            if !pkgs.is_empty() {
                return Ok(name_requirement(p, &simple.name, pkgs, notes).into());
            }
        }
        // 2. name.arch
        if let Some((name, arch)) = simple.name.rsplit_once('.')
            && let Some(sid) = pool.strings.lookup(name)
        {
            let pkgs: Vec<u32> = pool
                .by_name(sid)
                .filter(|&q| {
                    pool.str(pool.packages[q as usize].arch) == arch && p.solvable_of(q).is_some()
                })
                .collect();
            if !pkgs.is_empty() {
                return Ok(p.requirement(&pkgs, spec).into());
            }
        }
    }
    // 3. a provide or a file path
    let pkgs: Vec<u32> = providers(pool, &simple)
        .into_iter()
        .filter(|&q| p.solvable_of(q).is_some())
        .collect();
    if pkgs.is_empty() {
        // The name exists, but not for this architecture.
        if let Some(sid) = pool.strings.lookup(&simple.name)
            && pool.by_name(sid).next().is_some()
            && pool.by_name(sid).all(|q| p.solvable_of(q).is_none())
        {
            let mut arches: Vec<&str> = pool
                .by_name(sid)
                .map(|q| pool.str(pool.packages[q as usize].arch))
                .collect();
            arches.sort_unstable();
            arches.dedup();
            return Err(ResolveError::NoMatch {
                spec: spec.to_string(),
                hint: format!(" for {}: it exists only for {}", p.arch, arches.join(", ")),
            });
        }
        let names: Vec<&str> = {
            let mut seen = HashSet::new();
            pool.packages
                .iter()
                .map(|pk| pool.str(pk.name))
                .filter(|n| seen.insert(*n))
                .collect()
        };
        let mut others: Vec<String> = pool
            .strings
            .lookup(&simple.name)
            .map(|sid| {
                pool.providers_raw(sid)
                    .iter()
                    .map(|&(q, _)| pool.nevra(q))
                    .collect()
            })
            .unwrap_or_default();
        others.sort();
        others.dedup();
        let hint = if !others.is_empty() {
            format!("; available: {}", others.join(", "))
        } else {
            crate::definition::error::did_you_mean(&simple.name, names.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default()
        };
        return Err(ResolveError::NoMatch {
            spec: spec.to_string(),
            hint,
        });
    }
    Ok(p.requirement(&pkgs, spec).into())
}

/// A request by name. If every candidate is obsoleted by another available package, dnf
/// installs that one instead; so does kiln, and says so.
fn name_requirement(
    p: &Provider,
    name: &str,
    pkgs: Vec<u32>,
    notes: &mut Vec<String>,
) -> Requirement {
    let pool = p.pool;
    let mut best = pkgs
        .iter()
        .filter_map(|&q| p.solvable_of(q))
        .collect::<Vec<_>>();
    p.sort(&mut best);
    if let Some(top) = best.first().map(|s| p.pkg(*s)) {
        let obsoleters: Vec<u32> = p
            .solvables
            .iter()
            .copied()
            .filter(|&o| {
                pool.packages[o as usize].name != pool.packages[top as usize].name
                    && p.excluded[p.solvable_of(o).expect("a solvable").to_index()].is_none()
                    && pool.deps_of(o, DepKind::Obsoletes).iter().any(|d| {
                        d.name == pool.packages[top as usize].name && pool.name_matches(top, d)
                    })
            })
            .collect();
        if !obsoleters.is_empty() {
            let mut o = obsoleters
                .iter()
                .filter_map(|&q| p.solvable_of(q))
                .collect::<Vec<_>>();
            p.sort(&mut o);
            let chosen = p.pkg(o[0]);
            notes.push(format!(
                "`{name}` is obsoleted by `{}`; installing that instead",
                pool.str(pool.packages[chosen as usize].name)
            ));
            let same: Vec<u32> = pool.by_name(pool.packages[chosen as usize].name).collect();
            return p.requirement(&same, pool.str(pool.packages[chosen as usize].name));
        }
    }
    p.requirement(&pkgs, name)
}
