//! primary.xml, streamed: each `<package>` becomes a compact record with its dependencies and
//! primary file list, without ever holding the document (60 000 packages fit in tens of MiB).

use std::io::BufRead;

use super::pool::{DEP_KINDS, DepEntry, DepKind, FLAG_PRE, FLAG_RICH, Package, RepoData};
use super::xml::{Item, XmlError, XmlStream, attr, tag};
use crate::resolve::evr::Sense;

/// Parses primary.xml into `data`. Returns the number of packages read.
pub fn parse(input: impl BufRead, data: &mut RepoData) -> Result<usize, XmlError> {
    let mut xml = XmlStream::new(input);
    let mut pkg: Option<Package> = None;
    // Dependencies of the package being read, by kind, until it is complete.
    let mut deps: [Vec<DepEntry>; DEP_KINDS] = Default::default();
    let mut files = Vec::new();
    let mut kind: Option<DepKind> = None;
    let mut count = 0;
    let mut declared: Option<usize> = None;
    let mut saw_root = false;

    xml.for_each(|ctx, item| {
        match item {
            Item::Start(e, _) => match tag(e) {
                b"metadata" => {
                    saw_root = true;
                    declared = attr(e, b"packages")?.and_then(|n| n.parse().ok());
                }
                b"package" => {
                    pkg = Some(Package::default());
                    for d in deps.iter_mut() {
                        d.clear();
                    }
                    files.clear();
                }
                name => {
                    let Some(p) = pkg.as_mut() else { return Ok(()) };
                    let s = &mut data.strings;
                    match name {
                        b"version" => {
                            p.epoch = parse_epoch(attr(e, b"epoch")?.as_deref())?;
                            p.version = s.intern(&attr(e, b"ver")?.unwrap_or_default());
                            p.release = s.intern(&attr(e, b"rel")?.unwrap_or_default());
                        }
                        b"checksum" => {
                            p.checksum_type = s.intern(&attr(e, b"type")?.unwrap_or_default());
                        }
                        b"time" => {
                            p.build_time =
                                attr(e, b"build")?.and_then(|t| t.parse().ok()).unwrap_or(0);
                        }
                        b"size" => {
                            p.size = attr(e, b"package")?
                                .and_then(|t| t.parse().ok())
                                .unwrap_or(0);
                            p.installed_size = attr(e, b"installed")?
                                .and_then(|t| t.parse().ok())
                                .unwrap_or(0);
                        }
                        b"location" => {
                            p.location = s.intern(&attr(e, b"href")?.unwrap_or_default());
                        }
                        b"rpm:entry" => {
                            if let Some(k) = kind {
                                deps[k as usize].push(entry(e, data)?);
                            }
                        }
                        other => kind = DepKind::from_tag(other).or(kind),
                    }
                }
            },
            Item::End(name) => {
                let Some(p) = pkg.as_mut() else { return Ok(()) };
                let s = &mut data.strings;
                match name {
                    b"name" => p.name = s.intern(ctx.text.trim()),
                    b"arch" => p.arch = s.intern(ctx.text.trim()),
                    b"checksum" => p.checksum = s.intern(ctx.text.trim()),
                    b"summary" => p.summary = s.intern(ctx.text.trim()),
                    b"url" => p.url = s.intern(ctx.text.trim()),
                    b"rpm:license" => p.license = s.intern(ctx.text.trim()),
                    b"rpm:vendor" => p.vendor = s.intern(ctx.text.trim()),
                    b"rpm:sourcerpm" => p.sourcerpm = s.intern(ctx.text.trim()),
                    b"file" => files.push(s.intern(ctx.text.trim())),
                    b"package" => {
                        let mut p = pkg.take().expect("inside a package");
                        if p.name.is_empty() || p.arch.is_empty() || p.version.is_empty() {
                            return Err("a <package> without name, arch or version".into());
                        }
                        let mut start = data.deps.len() as u32;
                        for (k, list) in deps.iter().enumerate() {
                            p.deps[k] = start;
                            data.deps.extend_from_slice(list);
                            start += list.len() as u32;
                        }
                        p.deps[DEP_KINDS] = start;
                        p.files = [
                            data.files.len() as u32,
                            (data.files.len() + files.len()) as u32,
                        ];
                        data.files.extend_from_slice(&files);
                        data.packages.push(p);
                        count += 1;
                    }
                    other if DepKind::from_tag(other).is_some() => kind = None,
                    _ => {}
                }
            }
            Item::Eof => {
                if !saw_root {
                    return Err("not a primary.xml document (no <metadata>)".into());
                }
                if pkg.is_some() {
                    return Err("the document ends inside a <package> (truncated?)".into());
                }
                if let Some(n) = declared
                    && n != count
                {
                    return Err(format!(
                        "declares {n} packages but has {count} (truncated?)"
                    ));
                }
            }
        }
        Ok(())
    })?;
    Ok(count)
}

fn parse_epoch(e: Option<&str>) -> Result<u32, XmlError> {
    match e {
        None | Some("") => Ok(0),
        Some(e) => e.parse().map_err(|_| format!("bad epoch `{e}`")),
    }
}

fn entry(e: &quick_xml::events::BytesStart<'_>, data: &mut RepoData) -> Result<DepEntry, XmlError> {
    let name = attr(e, b"name")?.ok_or("an <rpm:entry> without a name")?;
    let mut flags = 0;
    if name.starts_with('(') {
        flags |= FLAG_RICH;
    }
    if let Some(f) = attr(e, b"flags")? {
        flags |= Sense::from_flags(&f)
            .ok_or_else(|| format!("unknown dependency flags `{f}`"))?
            .0;
    }
    if matches!(attr(e, b"pre")?.as_deref(), Some("1") | Some("true")) {
        flags |= FLAG_PRE;
    }
    let s = &mut data.strings;
    Ok(DepEntry {
        name: s.intern(&name),
        flags,
        epoch: parse_epoch(attr(e, b"epoch")?.as_deref())?,
        version: s.intern(&attr(e, b"ver")?.unwrap_or_default()),
        release: s.intern(&attr(e, b"rel")?.unwrap_or_default()),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::repo::pool::{Pool, RepoInfo};

    pub const PRIMARY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="2">
<package type="rpm">
  <name>foo</name>
  <arch>x86_64</arch>
  <version epoch="1" ver="2.0" rel="3"/>
  <checksum type="sha256" pkgid="YES">abc</checksum>
  <summary>Foo &amp; bar</summary>
  <time file="1" build="1700000000"/>
  <size package="100" installed="200" archive="300"/>
  <location href="Packages/foo-2.0-3.x86_64.rpm"/>
  <format>
    <rpm:license>MIT</rpm:license>
    <rpm:provides>
      <rpm:entry name="foo" flags="EQ" epoch="1" ver="2.0" rel="3"/>
      <rpm:entry name="webserver"/>
    </rpm:provides>
    <rpm:requires>
      <rpm:entry name="/bin/sh" pre="1"/>
      <rpm:entry name="libbar" flags="GE" epoch="0" ver="1.5"/>
      <rpm:entry name="(a or b)"/>
    </rpm:requires>
    <rpm:recommends>
      <rpm:entry name="foo-doc"/>
    </rpm:recommends>
    <file>/usr/bin/foo</file>
  </format>
</package>
<package type="rpm">
  <name>libbar</name>
  <arch>noarch</arch>
  <version epoch="0" ver="1.9" rel="1"/>
  <checksum type="sha256" pkgid="YES">def</checksum>
  <location href="Packages/libbar.rpm"/>
  <format>
    <rpm:provides><rpm:entry name="libbar" flags="EQ" epoch="0" ver="1.9" rel="1"/></rpm:provides>
  </format>
</package>
</metadata>
"#;

    #[test]
    fn parses_packages_and_dependencies() {
        let mut data = RepoData::new();
        assert_eq!(parse(PRIMARY.as_bytes(), &mut data).unwrap(), 2);
        let mut pool = Pool::new();
        pool.add_repo(
            RepoInfo {
                id: "t".into(),
                baseurl: "file:///t".into(),
                priority: 99,
                cost: 1000,
                revision: String::new(),
            },
            data,
        );
        assert_eq!(pool.nevra(0), "foo-1:2.0-3.x86_64");
        assert_eq!(pool.str(pool.packages[0].summary), "Foo & bar");
        let req = pool.deps_of(0, DepKind::Requires);
        assert_eq!(req.len(), 3);
        assert!(req[0].is_pre());
        assert_eq!(pool.dep_text(&req[1]), "libbar >= 1.5");
        assert!(req[2].is_rich());
        assert_eq!(pool.deps_of(0, DepKind::Recommends).len(), 1);
        assert_eq!(pool.deps_of(1, DepKind::Requires).len(), 0);
        // libbar 1.9 provides libbar = 1.9-1, which satisfies >= 1.5.
        assert_eq!(pool.what_provides(&req[1]), vec![1]);
        let sh = pool.strings.lookup("/usr/bin/foo").unwrap();
        assert_eq!(pool.providers_raw(sh).len(), 1);
    }

    #[test]
    fn truncated_and_malformed_documents_are_errors() {
        let cut = &PRIMARY[..PRIMARY.len() / 2];
        assert!(parse(cut.as_bytes(), &mut RepoData::new()).is_err());
        let short = PRIMARY.replace("packages=\"2\"", "packages=\"3\"");
        let err = parse(short.as_bytes(), &mut RepoData::new()).unwrap_err();
        assert!(err.contains("declares 3 packages but has 2"), "{err}");
        assert!(parse("<html></html>".as_bytes(), &mut RepoData::new()).is_err());
    }
}
