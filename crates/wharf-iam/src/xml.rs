//! A small XML writer for query-protocol responses: elements, escaped text, and
//! IAM's `<List><member>…</member></List>` lists.

use time::OffsetDateTime;
use wharf_meta::Millis;

/// Builds an XML fragment.
#[derive(Debug, Default)]
pub(crate) struct Xml {
    buf: String,
}

impl Xml {
    pub(crate) fn new() -> Xml {
        Xml::default()
    }

    /// `<tag>text</tag>` with `text` escaped.
    pub(crate) fn text(&mut self, tag: &str, text: &str) -> &mut Xml {
        self.buf.push('<');
        self.buf.push_str(tag);
        self.buf.push('>');
        escape_into(&mut self.buf, text);
        self.buf.push_str("</");
        self.buf.push_str(tag);
        self.buf.push('>');
        self
    }

    /// [`Xml::text`] when `text` is set.
    pub(crate) fn opt(&mut self, tag: &str, text: Option<&str>) -> &mut Xml {
        if let Some(t) = text {
            self.text(tag, t);
        }
        self
    }

    /// `<tag>` + what `f` writes + `</tag>`.
    pub(crate) fn elem(&mut self, tag: &str, f: impl FnOnce(&mut Xml)) -> &mut Xml {
        self.buf.push('<');
        self.buf.push_str(tag);
        self.buf.push('>');
        f(self);
        self.buf.push_str("</");
        self.buf.push_str(tag);
        self.buf.push('>');
        self
    }

    /// `<tag><member>…</member>…</tag>`, one member per item.
    pub(crate) fn list<T>(
        &mut self,
        tag: &str,
        items: impl IntoIterator<Item = T>,
        mut f: impl FnMut(&mut Xml, T),
    ) -> &mut Xml {
        self.elem(tag, |x| {
            for item in items {
                x.elem("member", |x| f(x, item));
            }
        })
    }

    /// `<tag><member>text</member>…</tag>`: a list of strings.
    pub(crate) fn strings(&mut self, tag: &str, items: &[String]) -> &mut Xml {
        self.elem(tag, |x| {
            for item in items {
                x.text("member", item);
            }
        })
    }

    /// A timestamp element (ISO 8601, UTC).
    pub(crate) fn time(&mut self, tag: &str, at: Millis) -> &mut Xml {
        self.text(tag, &iso8601(at))
    }

    /// `IsTruncated` and, when truncated, `Marker`.
    pub(crate) fn page(&mut self, next: Option<&str>) -> &mut Xml {
        self.text("IsTruncated", if next.is_some() { "true" } else { "false" });
        self.opt("Marker", next)
    }

    /// Resource tags as `<Tags><member><Key/><Value/></member></Tags>`.
    pub(crate) fn tags(&mut self, tags: &[(String, String)]) -> &mut Xml {
        self.list("Tags", tags, |x, (k, v)| {
            x.text("Key", k).text("Value", v);
        })
    }

    pub(crate) fn finish(self) -> String {
        self.buf
    }
}

/// Escapes text for element content and attribute values. Characters XML 1.0 cannot
/// carry at all (most C0 controls) become U+FFFD.
pub(crate) fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Literal CR would be normalised away by the parser.
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// `2024-05-01T12:00:00Z`: ISO 8601 in UTC to the second, as IAM writes dates.
pub(crate) fn iso8601(at: Millis) -> String {
    let t = OffsetDateTime::from_unix_timestamp(at.div_euclid(1000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    t.format(SECONDS)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

const SECONDS: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_controls() {
        let mut s = String::new();
        escape_into(&mut s, "a<b>&\"c'\r\u{1}\td");
        assert_eq!(s, "a&lt;b&gt;&amp;&quot;c&apos;&#13;\u{FFFD}\td");
    }

    #[test]
    fn writes_lists_and_times() {
        let mut x = Xml::new();
        x.list("Users", ["a", "b&"], |x, n| {
            x.text("UserName", n);
        })
        .time("CreateDate", 1_700_000_000_000)
        .page(None);
        assert_eq!(
            x.finish(),
            "<Users><member><UserName>a</UserName></member><member><UserName>b&amp;</UserName></member></Users>\
             <CreateDate>2023-11-14T22:13:20Z</CreateDate><IsTruncated>false</IsTruncated>"
        );
        assert_eq!(iso8601(1_700_000_000_999), "2023-11-14T22:13:20Z");
    }
}
