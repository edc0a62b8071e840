//! A bounded, namespace-aware XML reader (quick-xml's `NsReader`) that turns a request body
//! into a small element tree, and the escaping of everything the plugin writes.
//!
//! Before any parsing the body is checked for its size and refused when it holds a document
//! type declaration or an entity declaration (`<!DOCTYPE`, `<!ENTITY`, in any case). While
//! parsing, the depth, the number of elements, the attributes per element and the text per
//! element are bounded; only the five predefined entities and character references are
//! resolved. Elements and attributes are matched by namespace URI and local name, never by
//! prefix. Every error says where (line and column, or the element) and why.

use std::borrow::Cow;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::{NsReader, XmlVersion};

/// The bounds a parse enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Size of the whole body in bytes.
    pub max_bytes: usize,
    /// Nesting depth of elements (the root is depth 1).
    pub max_depth: usize,
    /// Number of elements in the document.
    pub max_elements: usize,
    /// Attributes (namespace declarations included) on one element.
    pub max_attributes: usize,
    /// Text of one element, or the value of one attribute, in bytes.
    pub max_text_bytes: usize,
}

impl Limits {
    /// The bounds of a SOAP request: 4 MiB, depth 32, 20 000 elements, 32 attributes per
    /// element, 64 KiB of text per element.
    pub const REQUEST: Limits = Limits {
        max_bytes: 4 * 1024 * 1024,
        max_depth: 32,
        max_elements: 20_000,
        max_attributes: 32,
        max_text_bytes: 64 * 1024,
    };
}

/// An element with its namespace URI, local name, attributes, children and text (all text
/// and CDATA directly inside it, concatenated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Namespace URI; none for an element in no namespace.
    pub ns: Option<String>,
    /// Local name (without prefix).
    pub name: String,
    /// Attributes, namespace declarations left out.
    pub attributes: Vec<Attribute>,
    pub children: Vec<Element>,
    pub text: String,
    /// Where the start tag begins (1-based).
    pub line: usize,
    pub column: usize,
}

/// One attribute, by namespace URI and local name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub ns: Option<String>,
    pub name: String,
    pub value: String,
}

impl Element {
    /// True when the element has this namespace URI and local name.
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns.as_deref() == Some(ns) && self.name == name
    }

    /// The value of the attribute with this namespace (none: unqualified) and local name.
    pub fn attribute(&self, ns: Option<&str>, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.ns.as_deref() == ns && a.name == name)
            .map(|a| a.value.as_str())
    }

    /// The name for messages: `local` for an element in `ns_default`, otherwise
    /// `{namespace}local` (or `local (no namespace)`).
    pub fn display_name(&self, ns_default: &str) -> String {
        match self.ns.as_deref() {
            Some(ns) if ns == ns_default => self.name.clone(),
            Some(ns) => format!("{{{ns}}}{}", self.name),
            None => format!("{} (no namespace)", self.name),
        }
    }
}

/// What kind of problem a parse found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmlErrorKind {
    /// Not well-formed, not UTF-8, an undeclared prefix or an unknown entity.
    Malformed,
    /// A document type or entity declaration.
    Doctype,
    /// A bound of [`Limits`] was exceeded.
    Limit,
}

/// Why a body was refused: a complete English sentence, with the place when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    pub kind: XmlErrorKind,
    pub message: String,
    /// The element concerned, when the problem is tied to one.
    pub element: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl XmlError {
    fn at(kind: XmlErrorKind, text: &[u8], offset: usize, what: impl Into<String>) -> Self {
        let (line, column) = line_column(text, offset);
        XmlError {
            kind,
            message: format!("{} (line {line}, column {column})", what.into()),
            element: None,
            line: Some(line),
            column: Some(column),
        }
    }

    fn in_element(mut self, element: &str) -> Self {
        self.element = Some(element.to_string());
        self
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(text: &[u8], offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    // Count characters, not bytes: skip UTF-8 continuation bytes.
    let column = before[line_start..]
        .iter()
        .filter(|&&b| (b & 0xC0) != 0x80)
        .count()
        + 1;
    (line, column)
}

/// The byte offset of the first `<!DOCTYPE` or `<!ENTITY` (ASCII case-insensitive).
fn find_declaration(body: &[u8]) -> Option<(usize, &'static str)> {
    const NEEDLES: [&[u8]; 2] = [b"<!doctype", b"<!entity"];
    body.windows(9).enumerate().find_map(|(i, w)| {
        NEEDLES.iter().find_map(|n| {
            w[..n.len()]
                .eq_ignore_ascii_case(n)
                .then_some((i, if n.len() == 9 { "DOCTYPE" } else { "ENTITY" }))
        })
    })
}

/// Parses `body` into its root element within `limits`.
pub fn parse(body: &[u8], limits: &Limits) -> Result<Element, XmlError> {
    if body.len() > limits.max_bytes {
        return Err(XmlError {
            kind: XmlErrorKind::Limit,
            message: format!(
                "the request body has {} bytes; at most {} are accepted",
                body.len(),
                limits.max_bytes
            ),
            element: None,
            line: None,
            column: None,
        });
    }
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    // `<!ENTITY` cannot appear outside a DOCTYPE, but is refused on its own too.
    if let Some((offset, what)) = find_declaration(body) {
        return Err(XmlError::at(
            XmlErrorKind::Doctype,
            body,
            offset,
            format!("a {what} declaration is not allowed in a SOAP message"),
        ));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        XmlError::at(
            XmlErrorKind::Malformed,
            body,
            e.valid_up_to(),
            "the request body is not valid UTF-8",
        )
    })?;
    Parser {
        text,
        limits,
        reader: NsReader::from_str(text),
        stack: Vec::new(),
        root: None,
        elements: 0,
        cursor: Cursor::default(),
    }
    .run()
}

struct Parser<'a> {
    text: &'a str,
    limits: &'a Limits,
    reader: NsReader<&'a [u8]>,
    stack: Vec<Element>,
    root: Option<Element>,
    elements: usize,
    cursor: Cursor,
}

/// Line and column of a moving byte offset, advanced incrementally so that positioning every
/// element costs one pass over the text in total (element starts only move forward).
#[derive(Debug)]
struct Cursor {
    offset: usize,
    line: usize,
    column: usize,
}

impl Default for Cursor {
    fn default() -> Self {
        Cursor {
            offset: 0,
            line: 1,
            column: 1,
        }
    }
}

impl Cursor {
    fn advance(&mut self, text: &[u8], offset: usize) -> (usize, usize) {
        let offset = offset.min(text.len());
        if offset < self.offset {
            return line_column(text, offset);
        }
        for &b in &text[self.offset..offset] {
            if b == b'\n' {
                self.line += 1;
                self.column = 1;
            } else if (b & 0xC0) != 0x80 {
                self.column += 1;
            }
        }
        self.offset = offset;
        (self.line, self.column)
    }
}

impl<'a> Parser<'a> {
    fn err(&self, kind: XmlErrorKind, offset: u64, what: impl Into<String>) -> XmlError {
        XmlError::at(
            kind,
            self.text.as_bytes(),
            usize::try_from(offset).unwrap_or(usize::MAX),
            what,
        )
    }

    fn run(mut self) -> Result<Element, XmlError> {
        loop {
            let start = self.reader.buffer_position();
            let (resolved, event) = match self.reader.read_resolved_event() {
                Ok((r, e)) => (resolved_ns(r), e),
                Err(e) => {
                    let at = self.reader.error_position();
                    return Err(self.err(
                        XmlErrorKind::Malformed,
                        at,
                        format!("the request is not well-formed XML: {e}"),
                    ));
                }
            };
            match event {
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let empty = matches!(event, Event::Empty(_));
                    let element = self.open(start, resolved, e)?;
                    if empty {
                        self.close(element, start)?;
                    } else {
                        self.stack.push(element);
                    }
                }
                Event::End(_) => {
                    let element = self.stack.pop().ok_or_else(|| {
                        self.err(XmlErrorKind::Malformed, start, "unexpected end tag")
                    })?;
                    self.close(element, start)?;
                }
                Event::Text(t) => {
                    let content = t.xml10_content();
                    self.text_content(&content, start)?;
                }
                Event::CData(c) => {
                    let content = c.xml10_content();
                    self.text_content(&content, start)?;
                }
                Event::GeneralRef(r) => {
                    let resolved: Cow<'_, str> = match r.resolve_char_ref() {
                        Ok(Some(c)) => Cow::Owned(c.to_string()),
                        Ok(None) => match quick_xml::escape::resolve_predefined_entity(&r) {
                            Some(s) => Cow::Borrowed(s),
                            None => {
                                return Err(self.err(
                                    XmlErrorKind::Malformed,
                                    start,
                                    format!(
                                        "the entity `&{};` is not defined (only the five predefined entities and character references are)",
                                        &*r
                                    ),
                                ));
                            }
                        },
                        Err(e) => {
                            return Err(self.err(
                                XmlErrorKind::Malformed,
                                start,
                                format!("bad character reference `&{};`: {e}", &*r),
                            ));
                        }
                    };
                    if self.stack.is_empty() {
                        return Err(self.err(
                            XmlErrorKind::Malformed,
                            start,
                            "a reference outside the root element",
                        ));
                    }
                    self.text_content(&resolved, start)?;
                }
                Event::Decl(d) => {
                    if let Some(Ok(encoding)) = d.encoding()
                        && !(encoding.eq_ignore_ascii_case("utf-8")
                            || encoding.eq_ignore_ascii_case("utf8"))
                    {
                        return Err(self.err(
                            XmlErrorKind::Malformed,
                            start,
                            format!(
                                "the XML declaration names the encoding `{}`; only UTF-8 is accepted",
                                &*encoding
                            ),
                        ));
                    }
                }
                Event::DocType(_) => {
                    return Err(self.err(
                        XmlErrorKind::Doctype,
                        start,
                        "a DOCTYPE declaration is not allowed in a SOAP message",
                    ));
                }
                Event::PI(_) => {
                    return Err(self.err(
                        XmlErrorKind::Malformed,
                        start,
                        "a processing instruction is not allowed in a SOAP message",
                    ));
                }
                Event::Comment(_) => {}
                Event::Eof => break,
            }
        }
        if let Some(open) = self.stack.last() {
            let at = self.reader.buffer_position();
            return Err(self
                .err(
                    XmlErrorKind::Malformed,
                    at,
                    format!("the element `{}` is not closed", open.name),
                )
                .in_element(&open.name));
        }
        self.root.ok_or_else(|| XmlError {
            kind: XmlErrorKind::Malformed,
            message: "the request body holds no XML element".into(),
            element: None,
            line: None,
            column: None,
        })
    }

    fn open(
        &mut self,
        start: u64,
        ns: Result<Option<String>, String>,
        e: &quick_xml::events::BytesStart<'_>,
    ) -> Result<Element, XmlError> {
        let name = e.local_name().as_ref().to_string();
        if self.root.is_some() && self.stack.is_empty() {
            return Err(self.err(
                XmlErrorKind::Malformed,
                start,
                format!("a second root element `{name}` follows the first"),
            ));
        }
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(self
                .err(
                    XmlErrorKind::Limit,
                    start,
                    format!(
                        "the request has more than {} elements",
                        self.limits.max_elements
                    ),
                )
                .in_element(&name));
        }
        if self.stack.len() + 1 > self.limits.max_depth {
            return Err(self
                .err(
                    XmlErrorKind::Limit,
                    start,
                    format!(
                        "the element `{name}` is nested deeper than {} levels",
                        self.limits.max_depth
                    ),
                )
                .in_element(&name));
        }
        let ns = ns.map_err(|prefix| {
            self.err(
                XmlErrorKind::Malformed,
                start,
                format!("the namespace prefix `{prefix}` of `{name}` is not declared"),
            )
            .in_element(&name)
        })?;
        let mut attributes = Vec::new();
        for (count, attribute) in e.attributes().enumerate() {
            if count >= self.limits.max_attributes {
                return Err(self
                    .err(
                        XmlErrorKind::Limit,
                        start,
                        format!(
                            "the element `{name}` has more than {} attributes",
                            self.limits.max_attributes
                        ),
                    )
                    .in_element(&name));
            }
            let a = attribute.map_err(|err| {
                self.err(
                    XmlErrorKind::Malformed,
                    start,
                    format!("bad attribute on `{name}`: {err}"),
                )
                .in_element(&name)
            })?;
            let key = a.key.as_ref();
            if key == "xmlns" || key.starts_with("xmlns:") {
                continue;
            }
            if a.value.len() > self.limits.max_text_bytes {
                return Err(self
                    .err(
                        XmlErrorKind::Limit,
                        start,
                        format!(
                            "an attribute of `{name}` is longer than {} bytes",
                            self.limits.max_text_bytes
                        ),
                    )
                    .in_element(&name));
            }
            let (resolved, local) = self.reader.resolver().resolve_attribute(a.key);
            let attr_ns = resolved_ns(resolved).map_err(|prefix| {
                self.err(
                    XmlErrorKind::Malformed,
                    start,
                    format!("the namespace prefix `{prefix}` of an attribute of `{name}` is not declared"),
                )
                .in_element(&name)
            })?;
            let local = local.as_ref().to_string();
            let value = a
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|err| {
                    self.err(
                        XmlErrorKind::Malformed,
                        start,
                        format!("bad value of the attribute `{local}` of `{name}`: {err}"),
                    )
                    .in_element(&name)
                })?
                .into_owned();
            attributes.push(Attribute {
                ns: attr_ns,
                name: local,
                value,
            });
        }
        let (line, column) = self.cursor.advance(
            self.text.as_bytes(),
            usize::try_from(start).unwrap_or(usize::MAX),
        );
        Ok(Element {
            ns,
            name,
            attributes,
            children: Vec::new(),
            text: String::new(),
            line,
            column,
        })
    }

    fn close(&mut self, element: Element, start: u64) -> Result<(), XmlError> {
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(element),
            None => {
                if self.root.is_some() {
                    return Err(self.err(
                        XmlErrorKind::Malformed,
                        start,
                        "a second root element follows the first",
                    ));
                }
                self.root = Some(element);
            }
        }
        Ok(())
    }

    fn text_content(&mut self, content: &str, start: u64) -> Result<(), XmlError> {
        let max = self.limits.max_text_bytes;
        match self.stack.last_mut() {
            Some(top) => {
                if top.text.len() + content.len() > max {
                    let name = top.name.clone();
                    return Err(self
                        .err(
                            XmlErrorKind::Limit,
                            start,
                            format!("the text of `{name}` is longer than {max} bytes"),
                        )
                        .in_element(&name));
                }
                top.text.push_str(content);
                Ok(())
            }
            None if content.trim().is_empty() => Ok(()),
            None => Err(self.err(
                XmlErrorKind::Malformed,
                start,
                "text outside the root element",
            )),
        }
    }
}

/// The namespace of a resolved name: `Ok(None)` for no namespace, `Err(prefix)` for an
/// undeclared prefix.
fn resolved_ns(r: ResolveResult<'_>) -> Result<Option<String>, String> {
    match r {
        ResolveResult::Bound(ns) => Ok(Some(ns.as_ref().to_string())),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(prefix) => Err(prefix),
    }
}

/// Escapes text content: `&`, `<`, `>`; characters XML 1.0 cannot carry (C0 controls other
/// than tab, line feed and carriage return, U+FFFE, U+FFFF) become U+FFFD; a carriage
/// return becomes `&#13;` so it survives end-of-line normalisation.
pub fn escape_text(s: &str) -> String {
    escape(s, false)
}

/// Escapes an attribute value: as [`escape_text`], plus `"`, `'`, tab and line feed.
pub fn escape_attr(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            '"' if attribute => out.push_str("&quot;"),
            '\'' if attribute => out.push_str("&apos;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Element, XmlError> {
        parse(s.as_bytes(), &Limits::REQUEST)
    }

    #[test]
    fn namespaces_are_resolved_independently_of_prefixes() {
        let a =
            p(r#"<a:x xmlns:a="urn:n"><a:y b:k="1" xmlns:b="urn:m" plain="2"/></a:x>"#).unwrap();
        let b = p(r#"<x xmlns="urn:n"><y xmlns:z="urn:m" z:k="1" plain="2"/></x>"#).unwrap();
        assert!(a.is("urn:n", "x") && b.is("urn:n", "x"));
        assert!(a.children[0].is("urn:n", "y") && b.children[0].is("urn:n", "y"));
        for e in [&a.children[0], &b.children[0]] {
            assert_eq!(e.attribute(Some("urn:m"), "k"), Some("1"));
            assert_eq!(e.attribute(None, "plain"), Some("2"));
            assert_eq!(
                e.attributes.len(),
                2,
                "xmlns declarations are not attributes"
            );
        }
    }

    #[test]
    fn text_entities_and_cdata_are_resolved() {
        let e = p("<x>a &amp; b &lt;&#x41;&#66;<![CDATA[<c>]]></x>").unwrap();
        assert_eq!(e.text, "a & b <AB<c>");
        let e = p("<x a=\"1 &amp; 2\"/>").unwrap();
        assert_eq!(e.attribute(None, "a"), Some("1 & 2"));
        let err = p("<x>&foo;</x>").unwrap_err();
        assert_eq!(err.kind, XmlErrorKind::Malformed);
        assert!(
            err.message.contains("`&foo;` is not defined"),
            "{}",
            err.message
        );
    }

    #[test]
    fn doctype_and_entities_are_refused_before_parsing() {
        for body in [
            "<!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>",
            "<?xml version=\"1.0\"?>\n<!doctype x SYSTEM \"file:///etc/passwd\"><x/>",
            "<x><!ENTITY y \"z\"></x>",
        ] {
            let err = p(body).unwrap_err();
            assert_eq!(err.kind, XmlErrorKind::Doctype, "{body}");
            assert!(err.message.contains("not allowed"), "{}", err.message);
        }
        let err = p("<?xml version=\"1.0\"?>\n  <!DOCTYPE x><x/>").unwrap_err();
        assert_eq!((err.line, err.column), (Some(2), Some(3)));
    }

    #[test]
    fn malformed_xml_names_line_and_column() {
        let err = p("<a>\n  <b></c>\n</a>").unwrap_err();
        assert_eq!(err.kind, XmlErrorKind::Malformed);
        assert_eq!(err.line, Some(2), "{err:?}");
        assert!(err.message.contains("line 2"), "{}", err.message);
        let err = p("<a><b></a>").unwrap_err();
        assert_eq!(err.kind, XmlErrorKind::Malformed);
        let err = p("<a>").unwrap_err();
        assert!(err.message.contains("`a` is not closed"), "{}", err.message);
        let err = p("<p:a/>").unwrap_err();
        assert!(err.message.contains("prefix `p`"), "{}", err.message);
        let err = p("<a/><b/>").unwrap_err();
        assert!(err.message.contains("second root"), "{}", err.message);
        let err = p("").unwrap_err();
        assert!(err.message.contains("no XML element"), "{}", err.message);
        let err = parse(b"<a>\xff</a>", &Limits::REQUEST).unwrap_err();
        assert!(err.message.contains("UTF-8"), "{}", err.message);
        let err = p("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>").unwrap_err();
        assert!(err.message.contains("ISO-8859-1"), "{}", err.message);
        let err = p("<a><?pi x?></a>").unwrap_err();
        assert!(
            err.message.contains("processing instruction"),
            "{}",
            err.message
        );
    }

    #[test]
    fn limits_are_enforced() {
        let small = Limits {
            max_bytes: 200,
            max_depth: 3,
            max_elements: 5,
            max_attributes: 2,
            max_text_bytes: 10,
        };
        let err = parse(&[b' '; 201], &small).unwrap_err();
        assert_eq!(err.kind, XmlErrorKind::Limit);
        assert!(err.message.contains("201 bytes"), "{}", err.message);
        let err = parse(b"<a><b><c><d/></c></b></a>", &small).unwrap_err();
        assert_eq!(err.kind, XmlErrorKind::Limit);
        assert_eq!(err.element.as_deref(), Some("d"));
        assert!(parse(b"<a><b><c/></b></a>", &small).is_ok());
        let err = parse(b"<a><b/><b/><b/><b/><b/></a>", &small).unwrap_err();
        assert!(
            err.message.contains("more than 5 elements"),
            "{}",
            err.message
        );
        let err = parse(b"<a x='1' y='2' z='3'/>", &small).unwrap_err();
        assert!(
            err.message.contains("more than 2 attributes"),
            "{}",
            err.message
        );
        let err = parse(b"<a>12345678901</a>", &small).unwrap_err();
        assert!(
            err.message.contains("longer than 10 bytes"),
            "{}",
            err.message
        );
        let err = parse(b"<a>123456&amp;7890</a>", &small).unwrap_err();
        assert_eq!(err.kind, XmlErrorKind::Limit);
    }

    #[test]
    fn duplicate_attributes_are_malformed() {
        let err = p("<a x='1' x='2'/>").unwrap_err();
        assert_eq!(err.kind, XmlErrorKind::Malformed);
    }

    #[test]
    fn escaping_covers_markup_quotes_and_controls() {
        assert_eq!(escape_text("a<b>&c\"'"), "a&lt;b&gt;&amp;c\"'");
        assert_eq!(escape_attr("a<\"'&\n"), "a&lt;&quot;&apos;&amp;&#10;");
        assert_eq!(escape_text("x\u{1}y\rz"), "x\u{FFFD}y&#13;z");
        // What is written parses back to the same text.
        let s = "<&>\"' \u{e9}\t";
        let e = p(&format!(
            "<x a=\"{}\">{}</x>",
            escape_attr(s),
            escape_text(s)
        ))
        .unwrap();
        assert_eq!(e.text, s);
        assert_eq!(e.attribute(None, "a"), Some(s));
    }

    #[test]
    fn element_positions_are_exact() {
        let e = p("<a>\n  <b/><c>\n<é/><d/></c></a>").unwrap();
        let pos = |e: &Element| (e.line, e.column);
        assert_eq!(pos(&e), (1, 1));
        assert_eq!(pos(&e.children[0]), (2, 3));
        assert_eq!(pos(&e.children[1]), (2, 7));
        assert_eq!(pos(&e.children[1].children[0]), (3, 1));
        assert_eq!(pos(&e.children[1].children[1]), (3, 5));
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_column("ab\ncé<".as_bytes(), 6), (2, 3));
        assert_eq!(line_column(b"x", 0), (1, 1));
    }
}
