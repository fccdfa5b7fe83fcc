//! A thin streaming layer over quick-xml for repository metadata: start and end tags with
//! unescaped attributes, and text with entity and character references resolved.

use std::io::BufRead;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// The tag name of a start tag, as bytes.
pub fn tag<'a>(e: &'a BytesStart<'_>) -> &'a [u8] {
    e.name().0.as_bytes()
}

/// What the metadata parsers see.
pub enum Item<'a> {
    Start(&'a BytesStart<'a>, bool),
    End(&'a [u8]),
    Eof,
}

pub struct XmlStream<R: BufRead> {
    reader: Reader<R>,
    buf: Vec<u8>,
    text: String,
    /// An element that was empty (`<a/>`) produces a Start followed by a synthetic End.
    pending_end: Option<Vec<u8>>,
}

pub type XmlError = String;

impl<R: BufRead> XmlStream<R> {
    pub fn new(input: R) -> Self {
        let mut reader = Reader::from_reader(input);
        reader.config_mut().trim_text(false);
        XmlStream {
            reader,
            buf: Vec::with_capacity(4096),
            text: String::new(),
            pending_end: None,
        }
    }

    /// Byte position in the (decompressed) input, for error messages.
    pub fn position(&self) -> u64 {
        self.reader.buffer_position()
    }

    /// The text collected since the last start tag (only meaningful at an end tag).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Calls `f` for each start and end tag until the end of the document. Text between tags is
    /// collected and available through `text()` when the end tag arrives.
    pub fn for_each<F>(&mut self, mut f: F) -> Result<(), XmlError>
    where
        F: FnMut(&mut Ctx, Item<'_>) -> Result<(), XmlError>,
    {
        loop {
            if let Some(name) = self.pending_end.take() {
                let mut ctx = Ctx { text: &self.text };
                f(&mut ctx, Item::End(&name))?;
                self.text.clear();
                continue;
            }
            self.buf.clear();
            let event = self
                .reader
                .read_event_into(&mut self.buf)
                .map_err(|e| format!("{e} at byte {}", self.reader.buffer_position()))?;
            match event {
                Event::Start(ref e) => {
                    self.text.clear();
                    let mut ctx = Ctx { text: "" };
                    f(&mut ctx, Item::Start(e, false))?;
                }
                Event::Empty(ref e) => {
                    self.text.clear();
                    let mut ctx = Ctx { text: "" };
                    f(&mut ctx, Item::Start(e, true))?;
                    self.pending_end = Some(tag(e).to_vec());
                }
                Event::End(ref e) => {
                    let mut ctx = Ctx { text: &self.text };
                    f(&mut ctx, Item::End(e.name().0.as_bytes()))?;
                    self.text.clear();
                }
                Event::Text(ref t) => self.text.push_str(&t.xml10_content()),
                Event::CData(ref t) => self.text.push_str(&t.xml10_content()),
                Event::GeneralRef(ref r) => {
                    if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
                        self.text.push(c);
                    } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(r) {
                        self.text.push_str(s);
                    } else {
                        return Err(format!("unknown entity `&{};`", &**r));
                    }
                }
                Event::Eof => {
                    let mut ctx = Ctx { text: "" };
                    return f(&mut ctx, Item::Eof);
                }
                _ => {}
            }
        }
    }
}

/// Context handed to the callback: the text of the element being closed.
pub struct Ctx<'a> {
    pub text: &'a str,
}

/// An attribute's unescaped value, if present.
pub fn attr(e: &BytesStart<'_>, name: &[u8]) -> Result<Option<String>, XmlError> {
    for a in e.attributes() {
        let a = a.map_err(|err| err.to_string())?;
        if a.key.0.as_bytes() == name {
            return a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map(|v| Some(v.into_owned()))
                .map_err(|err| err.to_string());
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_text_with_entities() {
        let xml = r#"<a x="1 &amp; 2"><b>fish &amp; chips &#x41;</b><c/></a>"#;
        let mut s = XmlStream::new(xml.as_bytes());
        let mut seen = Vec::new();
        s.for_each(|ctx, item| {
            match item {
                Item::Start(e, empty) => {
                    seen.push(format!(
                        "<{}{}>",
                        String::from_utf8_lossy(tag(e)),
                        if empty { "/" } else { "" }
                    ));
                    if let Some(v) = attr(e, b"x")? {
                        seen.push(v);
                    }
                }
                Item::End(n) => seen.push(format!("</{}>{}", String::from_utf8_lossy(n), ctx.text)),
                Item::Eof => seen.push("eof".into()),
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                "<a>",
                "1 & 2",
                "<b>",
                "</b>fish & chips A",
                "<c/>",
                "</c>",
                "</a>",
                "eof"
            ]
        );
    }

    #[test]
    fn malformed_xml_is_an_error() {
        let mut s = XmlStream::new("<a><b></a>".as_bytes());
        assert!(s.for_each(|_, _| Ok(())).is_err());
    }
}
