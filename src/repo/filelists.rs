//! filelists.xml, streamed, read only when a file dependency is not in primary's file list:
//! only the paths asked for are kept.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;

use super::xml::{Item, XmlError, XmlStream, attr, tag};

/// For each wanted path, the packages (by `pkgid` checksum) whose file list holds it.
pub fn find(
    input: impl BufRead,
    wanted: &BTreeSet<String>,
) -> Result<BTreeMap<String, Vec<String>>, XmlError> {
    let mut xml = XmlStream::new(input);
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut pkgid = String::new();
    let mut saw_root = false;
    xml.for_each(|ctx, item| {
        match item {
            Item::Start(e, _) => match tag(e) {
                b"filelists" => saw_root = true,
                b"package" => pkgid = attr(e, b"pkgid")?.unwrap_or_default(),
                _ => {}
            },
            Item::End(b"file") => {
                let path = ctx.text.trim();
                if wanted.contains(path) {
                    let list = out.entry(path.to_string()).or_default();
                    if list.last() != Some(&pkgid) {
                        list.push(pkgid.clone());
                    }
                }
            }
            Item::End(_) => {}
            Item::Eof => {
                if !saw_root {
                    return Err("not a filelists.xml document (no <filelists>)".into());
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_wanted_paths() {
        let xml = br#"<filelists packages="2"><package pkgid="aa" name="a" arch="noarch"><file>/usr/share/a/x</file><file type="dir">/usr/share/a</file></package>
<package pkgid="bb" name="b" arch="noarch"><file>/usr/share/a/x</file><file>/etc/b</file></package></filelists>"#;
        let wanted: BTreeSet<String> = ["/usr/share/a/x".to_string(), "/nope".to_string()].into();
        let found = find(&xml[..], &wanted).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found["/usr/share/a/x"], ["aa", "bb"]);
    }
}
