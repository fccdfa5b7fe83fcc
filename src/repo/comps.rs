//! comps groups (`group`/`group_gz`): which packages `@core` means — mandatory, default,
//! optional and conditional entries.

use std::io::BufRead;

use super::pool::{Group, GroupPackage, GroupReq, RepoData};
use super::xml::{Item, XmlError, XmlStream, attr, tag};

pub fn parse(input: impl BufRead, data: &mut RepoData) -> Result<(), XmlError> {
    let mut xml = XmlStream::new(input);
    let mut group: Option<Group> = None;
    let mut req: Option<(GroupReq, String)> = None;
    let mut depth_in_group = 0usize;
    xml.for_each(|ctx, item| {
        match item {
            Item::Start(e, _) => match tag(e) {
                b"group" => {
                    group = Some(Group::default());
                    depth_in_group = 0;
                }
                b"packagereq" if group.is_some() => {
                    let kind = match attr(e, b"type")?.as_deref() {
                        Some("mandatory") => GroupReq::Mandatory,
                        None | Some("default") => GroupReq::Default,
                        Some("optional") => GroupReq::Optional,
                        Some("conditional") => GroupReq::Conditional,
                        Some(other) => return Err(format!("unknown packagereq type `{other}`")),
                    };
                    req = Some((kind, attr(e, b"requires")?.unwrap_or_default()));
                }
                _ if group.is_some() => depth_in_group += 1,
                _ => {}
            },
            Item::End(name) => match name {
                b"packagereq" => {
                    if let (Some(g), Some((kind, requires))) = (group.as_mut(), req.take()) {
                        g.packages.push(GroupPackage {
                            name: data.strings.intern(ctx.text.trim()),
                            kind,
                            requires: data.strings.intern(&requires),
                        });
                    }
                }
                // Translated names carry xml:lang and come as further <name> elements; the
                // first, untranslated one wins.
                b"id" if group.is_some() => {
                    group.as_mut().expect("checked").id = data.strings.intern(ctx.text.trim())
                }
                b"name" => {
                    if let Some(g) = group.as_mut()
                        && g.name.is_empty()
                    {
                        g.name = data.strings.intern(ctx.text.trim());
                    }
                }
                b"group" => {
                    let g = group.take().expect("inside <group>");
                    if g.id.is_empty() {
                        return Err("a <group> without an <id>".into());
                    }
                    data.groups.push(g);
                }
                _ => {}
            },
            Item::Eof => {}
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_groups() {
        let xml = br#"<comps><group><id>core</id><name>Core</name><name xml:lang="de">Kern</name>
<packagelist><packagereq type="mandatory">bash</packagereq><packagereq>vim</packagereq>
<packagereq type="optional">emacs</packagereq><packagereq type="conditional" requires="gnome">gnome-extra</packagereq>
</packagelist></group><category><id>x</id></category></comps>"#;
        let mut data = RepoData::new();
        parse(&xml[..], &mut data).unwrap();
        assert_eq!(data.groups.len(), 1);
        let g = &data.groups[0];
        assert_eq!(data.strings.get(g.id), "core");
        assert_eq!(data.strings.get(g.name), "Core");
        let kinds: Vec<_> = g
            .packages
            .iter()
            .map(|p| (data.strings.get(p.name), p.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("bash", GroupReq::Mandatory),
                ("vim", GroupReq::Default),
                ("emacs", GroupReq::Optional),
                ("gnome-extra", GroupReq::Conditional)
            ]
        );
        assert_eq!(data.strings.get(g.packages[3].requires), "gnome");
    }
}
