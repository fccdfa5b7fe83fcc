//! Transaction order as rpm computes it (lib/order.c): relations from Requires, strongly
//! connected components, a queue ordered by how many packages need each one, loops broken at
//! the members farthest from a Requires(pre).

use std::collections::HashMap;

use super::package::{DepKind, Package, Provide};
use crate::resolve::dep::{self, Dep, Simple};
use crate::resolve::evr::{Evr, Sense, ranges_overlap};

/// The color rpm prefers on x86_64 and aarch64 (64-bit ELF).
const PREFERRED_COLOR: u32 = 2;

/// Whose rules to follow: rpm 4.18 orders by weak dependencies too; rpm 4.20 and later (RPM 6
/// in Azure Linux 4.0) ignore them unless they carry scriptlet flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    Rpm418,
    Rpm6,
}

// rpmsense flags (rpmds.h).
const POSTTRANS: u32 = 1 << 5;
const PREREQ: u32 = 1 << 6;
const PRETRANS: u32 = 1 << 7;
const SCRIPT_PRE: u32 = 1 << 9;
const SCRIPT_POST: u32 = 1 << 10;
const SCRIPT_PREUN: u32 = 1 << 11;
const SCRIPT_POSTUN: u32 = 1 << 12;
const SCRIPT_VERIFY: u32 = 1 << 13;
const MISSINGOK: u32 = 1 << 19;
const RPMLIB: u32 = 1 << 24;
const KEYRING: u32 = 1 << 26;
const CONFIG: u32 = 1 << 28;
const META: u32 = 1 << 29;
const INSTALL_ONLY: u32 = SCRIPT_PRE | SCRIPT_POST | RPMLIB | KEYRING | PRETRANS | POSTTRANS;
const SCRIPTS: u32 = SCRIPT_PRE | SCRIPT_POST | SCRIPT_PREUN | SCRIPT_POSTUN;

/// isUnorderedReq: rpmlib, config, pre/posttrans-only and meta dependencies do not order.
fn unordered(flags: u32) -> bool {
    flags & (RPMLIB | CONFIG | PRETRANS | POSTTRANS | SCRIPT_VERIFY | META) != 0
        && flags & SCRIPTS == 0
}

/// Whether a dependency is a prerequisite for installing (isInstallPreReq, with legacy PreReq
/// meaning %pre).
fn prereq(flags: u32) -> bool {
    let legacy = flags & PREREQ != 0
        && flags & (INSTALL_ONLY | SCRIPTS | SCRIPT_VERIFY | META | MISSINGOK) == 0;
    flags & INSTALL_ONLY != 0 || legacy
}

/// The simple dependencies a dependency orders by, as rpm's addRelation splits rich ones: both
/// sides of `and`/`or`, the first of `with`/`without`, the `then` (and `else`) of
/// `if`/`unless`.
fn atoms(name: &str, flags: u32, evr: &str, out: &mut Vec<Simple>) {
    if !name.starts_with('(') {
        let sense = Sense((flags & 0x0e) as u8);
        let range = (sense.0 != 0 && !evr.is_empty()).then(|| (sense, Evr::parse(evr)));
        out.push(Simple {
            name: name.to_string(),
            range,
        });
        return;
    }
    fn walk(d: &Dep, out: &mut Vec<Simple>) {
        match d {
            Dep::Simple(s) => out.push(s.clone()),
            Dep::And(v) | Dep::Or(v) => v.iter().for_each(|x| walk(x, out)),
            Dep::With(v) => {
                if let Some(first) = v.first() {
                    walk(first, out);
                }
            }
            Dep::Without(a, _) => walk(a, out),
            Dep::If {
                then, otherwise, ..
            }
            | Dep::Unless {
                then, otherwise, ..
            } => {
                walk(then, out);
                if let Some(o) = otherwise {
                    walk(o, out);
                }
            }
        }
    }
    if let Ok(d) = dep::parse(name) {
        walk(&d, out);
    }
}

/// Whether a provide satisfies a simple dependency (rpmdsCompare).
fn satisfies(p: &Provide, want: &Simple) -> bool {
    let Some((sense, evr)) = &want.range else {
        return true;
    };
    if p.evr.is_empty() || p.flags & 0x0e == 0 {
        return true;
    }
    let pe = Evr::parse(&p.evr);
    ranges_overlap(
        Some((
            Sense((p.flags & 0x0e) as u8),
            pe.epoch,
            &pe.version,
            pe.release.as_deref(),
        )),
        Some((*sense, evr.epoch, &evr.version, evr.release.as_deref())),
    )
}

/// A relation: `pkg` (the requirer, or what is required in the forward list), and whether it
/// is a Requires(pre)-like one.
#[derive(Clone, Copy)]
struct Rel {
    pkg: usize,
    pre: bool,
}

struct Graph {
    /// `rels[q]`: packages requiring q, newest first (rpm's tsi_relations).
    rels: Vec<Vec<Rel>>,
    /// `fwd[p]`: packages p requires, newest first (tsi_forward_relations).
    fwd: Vec<Vec<Rel>>,
    /// How many packages each one still waits for (tsi_count).
    count: Vec<usize>,
    /// How many packages require each one (tsi_qcnt): the queue's priority.
    qcnt: Vec<usize>,
    color: Vec<u32>,
}

fn graph(pkgs: &[Package], rules: Rules) -> Graph {
    let n = pkgs.len();
    // Providers in transaction order, as rpm's added-packages index lists them: each
    // package's provides (with versions; its name = EVR is among them), and its files.
    let mut providers: HashMap<&str, Vec<(usize, Option<&Provide>)>> = HashMap::new();
    for (i, p) in pkgs.iter().enumerate() {
        for pr in &p.provides {
            providers
                .entry(pr.name.as_str())
                .or_default()
                .push((i, Some(pr)));
        }
        if !p.provides.iter().any(|pr| pr.name == p.name) {
            providers
                .entry(p.name.as_str())
                .or_default()
                .push((i, None));
        }
        for f in &p.files {
            let v = providers.entry(f.path.as_str()).or_default();
            if v.last().map(|x| x.0) != Some(i) {
                v.push((i, None));
            }
        }
    }
    let color: Vec<u32> = pkgs
        .iter()
        .map(|p| p.files.iter().fold(0, |c, f| c | f.color))
        .collect();
    let mut g = Graph {
        rels: vec![Vec::new(); n],
        fwd: vec![Vec::new(); n],
        count: vec![0; n],
        qcnt: vec![0; n],
        color,
    };
    for (p, pkg) in pkgs.iter().enumerate() {
        for d in &pkg.order_deps {
            if unordered(d.flags) {
                continue;
            }
            let weak = !matches!(d.kind, DepKind::Requires) || d.flags & MISSINGOK != 0;
            let mut pre = prereq(d.flags);
            if weak {
                match rules {
                    Rules::Rpm418 => pre = false,
                    // Ordering hints stay as they are; other weak ones only when a scriptlet
                    // needs them, and then as plain relations.
                    Rules::Rpm6 if d.kind == DepKind::OrderWith => {}
                    Rules::Rpm6 if pre => pre = false,
                    Rules::Rpm6 => continue,
                }
            }
            let reversed = matches!(d.kind, DepKind::Supplements | DepKind::Enhances);
            let mut wanted = Vec::new();
            atoms(&d.name, d.flags, &d.evr, &mut wanted);
            for want in wanted {
                let Some(all) = providers.get(want.name.as_str()) else {
                    continue;
                };
                let mut cands: Vec<usize> = Vec::new();
                for (c, pr) in all {
                    if pr.is_none_or(|pr| satisfies(pr, &want)) && !cands.contains(c) {
                        cands.push(*c);
                    }
                }
                if cands.is_empty() {
                    continue;
                }
                // rpmalSatisfiesDepend: the preferred color scores, being self-provided scores,
                // else the first provider.
                let mut best = None;
                let mut best_score = 0;
                for &c in &cands {
                    let score = 2 * u32::from(g.color[c] == PREFERRED_COLOR) + u32::from(c == p);
                    if score > best_score {
                        best_score = score;
                        best = Some(c);
                    }
                }
                let q = best.unwrap_or(cands[0]);
                if q == p {
                    continue;
                }
                let (p, q) = if reversed { (q, p) } else { (p, q) };
                // All of p's relations are added together, so a repeat is q's newest one.
                if let Some(r) = g.rels[q].first_mut()
                    && r.pkg == p
                {
                    r.pre |= pre;
                    if let Some(f) = g.fwd[p].iter_mut().find(|f| f.pkg == q) {
                        f.pre |= pre;
                    }
                    continue;
                }
                g.count[p] += 1;
                g.qcnt[q] += 1;
                g.rels[q].insert(0, Rel { pkg: p, pre });
                g.fwd[p].insert(0, Rel { pkg: q, pre });
            }
        }
    }
    g
}

/// Strongly connected components over the "is required by" relations, as rpm's detectSCCs
/// (Tarjan, started from each package in transaction order). `scc[i]`: 1 for a package in no
/// loop, 2.. for loops; `members[k]` in the order rpm records them; `ext[k]`: how many outside
/// packages loop k still waits for.
struct Sccs {
    scc: Vec<usize>,
    members: Vec<Vec<usize>>,
    ext: Vec<usize>,
}

fn sccs(g: &Graph) -> Sccs {
    let n = g.count.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut done = vec![false; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut scc = vec![0usize; n];
    let mut members: Vec<Vec<usize>> = vec![Vec::new(), Vec::new()];
    let mut ext: Vec<usize> = vec![0, 0];
    let mut next = 0;
    for start in 0..n {
        if index[start] != usize::MAX {
            continue;
        }
        // (node, position in its relation list)
        let mut work: Vec<(usize, usize)> = vec![(start, 0)];
        index[start] = next;
        low[start] = next;
        next += 1;
        stack.push(start);
        while let Some(&mut (v, ref mut pos)) = work.last_mut() {
            if let Some(r) = g.rels[v].get(*pos) {
                *pos += 1;
                let w = r.pkg;
                if done[w] {
                    continue;
                }
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    work.push((w, 0));
                } else {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] != index[v] {
                continue;
            }
            let at = stack.iter().rposition(|&x| x == v).expect("on the stack");
            let comp: Vec<usize> = stack.drain(at..).collect();
            for &m in &comp {
                done[m] = true;
            }
            if comp.len() == 1 {
                scc[v] = 1;
                continue;
            }
            let k = members.len();
            let mut count = 0;
            for &m in &comp {
                scc[m] = k;
            }
            let mut internal = 0;
            for &m in &comp {
                count += g.count[m];
                internal += g.rels[m]
                    .iter()
                    .filter(|r| r.pkg != m && scc[r.pkg] == k)
                    .count();
            }
            count -= internal;
            members.push(comp);
            ext.push(count);
        }
    }
    Sccs { scc, members, ext }
}

/// The order state: the main queue (rpm's linked list from the current package on) and what
/// has been collected.
struct Sorter<'g> {
    g: &'g Graph,
    count: Vec<usize>,
    scc: Vec<usize>,
    ext: Vec<usize>,
    members: Vec<Vec<usize>>,
    collected: Vec<bool>,
    out: Vec<usize>,
}

impl Sorter<'_> {
    /// addQ: before the first queued package with as many requirers or fewer; a package of a
    /// non-preferred color (32-bit) only ever goes before packages of its own color.
    fn add_q(&self, p: usize, queue: &mut std::collections::VecDeque<usize>) {
        let color = self.g.color[p];
        let tail = color != 0 && color != PREFERRED_COLOR;
        let mut at = queue.len();
        for (k, &q) in queue.iter().enumerate() {
            if tail && color != self.g.color[q] {
                continue;
            }
            if self.g.qcnt[q] <= self.g.qcnt[p] {
                at = k;
                break;
            }
        }
        queue.insert(at, p);
    }

    /// collectTE: `q` goes next; what it frees joins `queue` (or `outer` when `q` is in a loop
    /// and they are not).
    fn collect_te(
        &mut self,
        q: usize,
        queue: &mut std::collections::VecDeque<usize>,
        mut outer: Option<&mut std::collections::VecDeque<usize>>,
    ) {
        self.out.push(q);
        let q_scc = self.scc[q];
        for r in &self.g.rels[q] {
            let p = r.pkg;
            if self.collected[p] || p == q {
                continue;
            }
            self.count[p] -= 1;
            if self.count[p] == 0 {
                match outer.as_deref_mut() {
                    Some(o) if q_scc > 1 && q_scc != self.scc[p] => self.add_q(p, o),
                    _ => self.add_q(p, queue),
                }
            }
            let p_scc = self.scc[p];
            if p_scc > 1 && p_scc != q_scc {
                self.ext[p_scc] -= 1;
                if self.ext[p_scc] == 0 {
                    match outer.as_deref_mut() {
                        Some(o) => self.add_q(p, o),
                        None => self.add_q(p, queue),
                    }
                }
            }
        }
        self.collected[q] = true;
    }

    /// collectSCC: break the loop `p` belongs to. Members get their distance along Requires
    /// from members with a Requires(pre) inside the loop; the farthest goes first, then what it
    /// frees, and so on.
    fn collect_scc(&mut self, p: usize, outer: &mut std::collections::VecDeque<usize>) {
        let k = self.scc[p];
        let members = self.members[k].clone();
        const INF: usize = usize::MAX;
        let mut dist: HashMap<usize, usize> = HashMap::new();
        let mut bfs: Vec<usize> = Vec::new();
        for &m in &members {
            dist.insert(m, INF);
            if let Some(r) = self.g.fwd[m].iter().find(|r| r.pre && self.scc[r.pkg] == k) {
                if r.pkg != m {
                    dist.insert(m, 0);
                    bfs.push(m);
                } else {
                    dist.insert(m, INF / 2);
                }
            }
        }
        if bfs.is_empty() {
            bfs.extend(members.iter().copied().filter(|m| dist[m] != INF));
        }
        let mut i = 0;
        while i < bfs.len() {
            let t = bfs[i];
            i += 1;
            let d = dist[&t];
            for r in &self.g.fwd[t] {
                if self.scc[r.pkg] != k {
                    continue;
                }
                if dist[&r.pkg] > d.saturating_add(1) {
                    dist.insert(r.pkg, d + 1);
                    bfs.push(r.pkg);
                }
            }
        }
        loop {
            let mut best = None;
            let mut best_score = 0;
            for &m in &members {
                if self.collected[m] {
                    continue;
                }
                if dist[&m] >= best_score {
                    best = Some(m);
                    best_score = dist[&m];
                }
            }
            let Some(best) = best else { break };
            let mut inner = std::collections::VecDeque::new();
            inner.push_back(best);
            while let Some(q) = inner.pop_front() {
                self.collect_te(q, &mut inner, Some(outer));
            }
        }
    }
}

/// The order RPM 6 installs `pkgs` in (indexes into `pkgs`, whose order is the transaction
/// order ties fall back on, as the order packages were added to rpm's transaction).
pub fn order(pkgs: &[Package]) -> Vec<usize> {
    order_with(pkgs, Rules::Rpm6)
}

/// The order under a given rpm's rules.
pub fn order_with(pkgs: &[Package], rules: Rules) -> Vec<usize> {
    let g = graph(pkgs, rules);
    let Sccs { scc, members, ext } = sccs(&g);
    let mut s = Sorter {
        count: g.count.clone(),
        g: &g,
        scc,
        ext,
        members,
        collected: vec![false; pkgs.len()],
        out: Vec::with_capacity(pkgs.len()),
    };
    let mut queue = std::collections::VecDeque::new();
    for p in 0..pkgs.len() {
        if s.count[p] == 0 {
            s.add_q(p, &mut queue);
        }
    }
    for k in 2..s.members.len() {
        if s.ext[k] == 0 {
            let first = s.members[k][0];
            s.add_q(first, &mut queue);
        }
    }
    while let Some(q) = queue.pop_front() {
        if s.collected[q] {
            continue;
        }
        if s.scc[q] > 1 {
            s.collect_scc(q, &mut queue);
        } else {
            s.collect_te(q, &mut queue, None);
        }
    }
    // Anything left (cannot happen with a consistent graph) keeps the transaction order.
    for p in 0..pkgs.len() {
        if !s.collected[p] {
            s.out.push(p);
        }
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn pkg(name: &str, requires: &[(&str, bool)]) -> Package {
        Package {
            path: PathBuf::new(),
            name: name.into(),
            epoch: 0,
            version: "1".into(),
            release: "1".into(),
            arch: "noarch".into(),
            build_time: 0,
            files: Vec::new(),
            pretrans: None,
            pre: None,
            post: None,
            posttrans: None,
            triggers: Vec::new(),
            file_triggers: Vec::new(),
            trans_file_triggers: Vec::new(),
            info: Default::default(),
            order_deps: requires
                .iter()
                .map(|(r, p)| crate::install::package::OrderDep {
                    name: r.to_string(),
                    flags: if *p { SCRIPT_PRE } else { 0 },
                    evr: String::new(),
                    kind: DepKind::Requires,
                })
                .collect(),
            provides: vec![Provide {
                name: name.into(),
                flags: 0,
                evr: String::new(),
            }],
            payload_compressor: String::new(),
        }
    }

    fn names(p: &[Package], o: &[usize]) -> Vec<String> {
        o.iter().map(|&i| p[i].name.clone()).collect()
    }

    #[test]
    fn dependencies_come_first() {
        let p = vec![
            pkg("app", &[("lib", false), ("/bin/sh", true)]),
            pkg("lib", &[("setup", true)]),
            pkg("setup", &[]),
            pkg("shell", &[]),
        ];
        let mut p = p;
        p[3].provides.push(Provide {
            name: "/bin/sh".into(),
            flags: 0,
            evr: String::new(),
        });
        // Ready packages wanted by as many others go last-added-first, as in rpm's addQ.
        assert_eq!(names(&p, &order(&p)), ["shell", "setup", "lib", "app"]);
    }

    #[test]
    fn loops_keep_pre_edges() {
        // filesystem needs setup before its scriptlets; setup needs filesystem (plain): the
        // plain edge is dropped, setup goes first.
        let p = vec![
            pkg("filesystem", &[("setup", true)]),
            pkg("setup", &[("filesystem", false)]),
        ];
        assert_eq!(names(&p, &order(&p)), ["setup", "filesystem"]);
        let p = vec![
            pkg("a", &[("b", false)]),
            pkg("b", &[("a", false)]),
            pkg("c", &[("a", false)]),
        ];
        // No Requires(pre) in the loop: rpm starts with its last recorded member.
        assert_eq!(names(&p, &order(&p)), ["b", "a", "c"]);
    }

    #[test]
    fn rich_dependencies_order_too() {
        let p = vec![pkg("x", &[("(y or z)", false)]), pkg("y", &[])];
        assert_eq!(names(&p, &order(&p)), ["y", "x"]);
    }
}
