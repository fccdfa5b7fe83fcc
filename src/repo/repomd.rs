//! repodata/repomd.xml: which metadata files a repository has, where, and their checksums.

use super::xml::{Item, XmlError, XmlStream, attr, tag};

/// One `<data>` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataFile {
    pub kind: String,
    pub href: String,
    pub checksum_type: String,
    pub checksum: String,
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct Repomd {
    pub revision: String,
    pub files: Vec<DataFile>,
}

impl Repomd {
    pub fn parse(text: &[u8]) -> Result<Repomd, XmlError> {
        let mut out = Repomd::default();
        let mut current: Option<DataFile> = None;
        let mut saw_root = false;
        let mut xml = XmlStream::new(text);
        xml.for_each(|ctx, item| {
            match item {
                Item::Start(e, _) => match tag(e) {
                    b"repomd" => saw_root = true,
                    b"data" => {
                        current = Some(DataFile {
                            kind: attr(e, b"type")?.unwrap_or_default(),
                            ..Default::default()
                        })
                    }
                    b"location" => {
                        if let Some(d) = current.as_mut() {
                            d.href = attr(e, b"href")?.unwrap_or_default();
                        }
                    }
                    b"checksum" => {
                        if let Some(d) = current.as_mut() {
                            d.checksum_type = attr(e, b"type")?.unwrap_or_default();
                        }
                    }
                    _ => {}
                },
                Item::End(name) => match name {
                    b"revision" => out.revision = ctx.text.trim().to_string(),
                    b"checksum" => {
                        if let Some(d) = current.as_mut() {
                            d.checksum = ctx.text.trim().to_ascii_lowercase();
                        }
                    }
                    b"size" => {
                        if let Some(d) = current.as_mut() {
                            d.size = ctx.text.trim().parse().ok();
                        }
                    }
                    b"data" => {
                        let d = current.take().expect("inside <data>");
                        if d.href.is_empty() || d.checksum.is_empty() {
                            return Err(format!(
                                "<data type=\"{}\"> lacks a location or checksum",
                                d.kind
                            ));
                        }
                        out.files.push(d);
                    }
                    _ => {}
                },
                Item::Eof => {
                    if !saw_root {
                        return Err("not a repomd.xml document (no <repomd>)".into());
                    }
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The first entry of any of `kinds`, in the order given (e.g. `primary_zck` is not read;
    /// `group_gz` before `group`).
    pub fn find(&self, kinds: &[&str]) -> Option<&DataFile> {
        kinds
            .iter()
            .find_map(|k| self.files.iter().find(|f| f.kind == *k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_data_entries() {
        let xml = br#"<?xml version="1.0"?><repomd xmlns="http://linux.duke.edu/metadata/repo"><revision>17</revision>
<data type="primary"><checksum type="sha256">ABC</checksum><location href="repodata/p.xml.gz"/><size>10</size></data>
<data type="group_gz"><checksum type="sha256">def</checksum><location href="repodata/c.xml.gz"/></data></repomd>"#;
        let r = Repomd::parse(xml).unwrap();
        assert_eq!(r.revision, "17");
        let p = r.find(&["primary"]).unwrap();
        assert_eq!(
            (p.href.as_str(), p.checksum.as_str(), p.size),
            ("repodata/p.xml.gz", "abc", Some(10))
        );
        assert_eq!(r.find(&["group_gz", "group"]).unwrap().kind, "group_gz");
        assert!(Repomd::parse(b"<x/>").is_err());
        assert!(Repomd::parse(b"<repomd><data type=\"primary\"></data></repomd>").is_err());
    }
}
