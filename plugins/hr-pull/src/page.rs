//! One page of the HR system's answer, JSON or SOAP, read within bounds: size, nesting depth
//! and number of values or elements are checked (a SOAP page's DOCTYPE is refused before
//! the parser sees the text), then the items, the next-page indicator and the server's
//! watermark token are taken from their configured paths. Items come out as JSON values
//! either way, so one mapping serves both formats.

use quick_xml::Reader;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

/// Most bytes of one page (the host's `limits.http_response_bytes`, 4 MiB by default, is
/// usually reached first).
pub const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// Deepest nesting of JSON containers or XML elements.
pub const MAX_DEPTH: usize = 32;
/// Most JSON values (counted as `{`, `[` and `,` outside strings, plus one) or XML
/// elements in one page.
pub const MAX_VALUES: usize = 200_000;
/// Most attributes (namespace declarations included) on one XML element.
pub const MAX_ATTRIBUTES: usize = 32;

/// What a page holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Value>,
    /// The next-page indicator as text: none when it is absent, null, false or empty.
    pub next: Option<String>,
    /// The server's watermark token (`watermark_path`), when asked for and present.
    pub token: Option<String>,
}

/// The text of a scalar: strings trimmed, numbers and booleans as written; none for null.
/// An array or an object is not a value of a field: `Err` names what was found.
pub fn scalar(value: &Value) -> Result<Option<String>, &'static str> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.trim().to_owned())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Array(_) => Err("an array"),
        Value::Object(_) => Err("an object"),
    }
}

/// The value at a dotted path: object members by name, array elements by index.
pub fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut at = value;
    for segment in path {
        at = match at {
            Value::Object(map) => map.get(segment)?,
            Value::Array(list) => list.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

fn shown(path: &[String]) -> String {
    path.join(".")
}

/// The next-page indicator at `path` as text (`true` for a boolean true).
fn indicator(root: &Value, path: &[String], key: &str) -> Result<Option<String>, String> {
    match lookup(root, path) {
        None | Some(Value::Bool(false)) => Ok(None),
        Some(v) => match scalar(v) {
            Ok(Some(s)) if s.is_empty() => Ok(None),
            Ok(s) => Ok(s),
            Err(found) => Err(format!(
                "`{}` ({key}) must be a string, number or boolean, found {found}",
                shown(path)
            )),
        },
    }
}

/// Refuses a JSON text that is too large, too deep or has too many values, before parsing.
fn check_json(body: &[u8]) -> Result<(), String> {
    if body.len() > MAX_PAGE_BYTES {
        return Err(format!("{} bytes, more than {MAX_PAGE_BYTES}", body.len()));
    }
    let (mut depth, mut values) = (0usize, 1usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                values += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} levels"));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' => values += 1,
            _ => {}
        }
        if values > MAX_VALUES {
            return Err(format!("more than {MAX_VALUES} values"));
        }
    }
    Ok(())
}

/// Reads a JSON page: the list at `items`, the indicator at `next`, the token at `token`.
pub fn json(
    body: &[u8],
    items: &[String],
    next: Option<&[String]>,
    token: Option<&[String]>,
) -> Result<Page, String> {
    check_json(body)?;
    let root: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let list = match lookup(&root, items) {
        Some(Value::Array(list)) => list.clone(),
        Some(other) => {
            return Err(format!(
                "`{}` (items) must be an array, found {}",
                shown(items),
                kind(other)
            ));
        }
        None => return Err(format!("no `{}` (items) in the answer", shown(items))),
    };
    Ok(Page {
        items: list,
        next: next
            .map(|p| indicator(&root, p, "next"))
            .transpose()?
            .flatten(),
        token: token
            .map(|p| indicator(&root, p, "watermark_path"))
            .transpose()?
            .flatten(),
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An XML element: local names only (prefixes and namespace declarations are dropped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The element as a JSON value: a leaf is its trimmed text (null with `xsi:nil="true"`);
    /// otherwise an object of `@attribute` members and child elements (repeated names
    /// become arrays).
    pub fn to_value(&self) -> Value {
        let nil = self
            .attributes
            .iter()
            .any(|(k, v)| k == "nil" && v.trim() == "true");
        if nil {
            return Value::Null;
        }
        if self.children.is_empty() && self.attributes.is_empty() {
            return Value::String(self.text.trim().to_owned());
        }
        let mut map = Map::new();
        for (k, v) in &self.attributes {
            map.insert(format!("@{k}"), Value::String(v.clone()));
        }
        for child in &self.children {
            let value = child.to_value();
            match map.get_mut(&child.name) {
                Some(Value::Array(list)) => list.push(value),
                Some(existing) => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, value]);
                }
                None => {
                    map.insert(child.name.clone(), value);
                }
            }
        }
        if self.children.is_empty() && !self.text.trim().is_empty() {
            map.insert("#text".into(), Value::String(self.text.trim().to_owned()));
        }
        Value::Object(map)
    }
}

/// Whether `body` contains `<!DOCTYPE` (ASCII case-insensitive).
fn has_doctype(body: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"<!doctype";
    body.windows(NEEDLE.len())
        .any(|w| w.eq_ignore_ascii_case(NEEDLE))
}

fn start(e: &BytesStart<'_>) -> Result<Element, String> {
    let mut element = Element {
        name: e.local_name().into_inner().to_owned(),
        ..Element::default()
    };
    for (n, attribute) in e.attributes().enumerate() {
        if n >= MAX_ATTRIBUTES {
            return Err(format!(
                "element `{}` has more than {MAX_ATTRIBUTES} attributes",
                element.name
            ));
        }
        let attribute = attribute.map_err(|e| format!("element `{}`: {e}", element.name))?;
        let key = attribute.key;
        if key.0 == "xmlns" || key.prefix().is_some_and(|p| p.into_inner() == "xmlns") {
            continue;
        }
        let value = attribute
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| format!("element `{}`: {e}", element.name))?;
        element
            .attributes
            .push((key.local_name().into_inner().to_owned(), value.into_owned()));
    }
    Ok(element)
}

/// Parses an XML document within the bounds; a DOCTYPE is refused before parsing, entity
/// references other than the five predefined ones and character references are refused.
pub fn xml(body: &[u8]) -> Result<Element, String> {
    if body.len() > MAX_PAGE_BYTES {
        return Err(format!("{} bytes, more than {MAX_PAGE_BYTES}", body.len()));
    }
    if has_doctype(body) {
        return Err("a DOCTYPE is not accepted".into());
    }
    let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_owned())?;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    let at = |reader: &Reader<&[u8]>| reader.buffer_position();
    loop {
        let event = reader.read_event().map_err(|e| {
            format!(
                "not well-formed XML at byte {}: {e}",
                reader.error_position()
            )
        })?;
        match event {
            Event::Start(e) => {
                elements += 1;
                if elements > MAX_VALUES {
                    return Err(format!("more than {MAX_VALUES} elements"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} levels"));
                }
                if root.is_some() {
                    return Err(format!(
                        "content after the root element at byte {}",
                        at(&reader)
                    ));
                }
                stack.push(start(&e)?);
            }
            Event::Empty(e) => {
                elements += 1;
                if elements > MAX_VALUES {
                    return Err(format!("more than {MAX_VALUES} elements"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} levels"));
                }
                let element = start(&e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None if root.is_none() => root = Some(element),
                    None => {
                        return Err(format!(
                            "content after the root element at byte {}",
                            at(&reader)
                        ));
                    }
                }
            }
            Event::End(_) => {
                let Some(element) = stack.pop() else {
                    return Err(format!("unexpected end tag at byte {}", at(&reader)));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => {
                        return Err(format!(
                            "text outside the root element at byte {}",
                            at(&reader)
                        ));
                    }
                }
            }
            Event::CData(c) => match stack.last_mut() {
                Some(top) => top.text.push_str(&c.xml10_content()),
                None => return Err("CDATA outside the root element".into()),
            },
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => match r.xml10_content().as_ref() {
                        "lt" => "<".into(),
                        "gt" => ">".into(),
                        "amp" => "&".into(),
                        "apos" => "'".into(),
                        "quot" => "\"".into(),
                        other => {
                            let name: String = other.chars().take(64).collect();
                            return Err(format!("undefined entity `&{name};`"));
                        }
                    },
                    Err(e) => return Err(format!("bad character reference: {e}")),
                };
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&resolved),
                    None => return Err("a reference outside the root element".into()),
                }
            }
            Event::DocType(_) => return Err("a DOCTYPE is not accepted".into()),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(format!("`{}` is not closed", stack[stack.len() - 1].name));
    }
    root.ok_or_else(|| "no root element".to_owned())
}

/// The element at a dotted path of child names below `from`.
fn descend<'a>(from: &'a Element, path: &[String]) -> Option<&'a Element> {
    path.iter().try_fold(from, |at, name| at.child(name))
}

/// The text of a SOAP indicator (`next`, `watermark_path`): none when absent, empty,
/// `false` or `xsi:nil`.
fn soap_indicator(body: &Element, path: &[String]) -> Option<String> {
    let element = descend(body, path)?;
    match element.to_value() {
        Value::String(s) if s.is_empty() || s == "false" => None,
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// Reads a SOAP 1.1 page: `Envelope` → `Body`, a `Fault` as an error with its code and
/// string, the repeated element at `items` (a path below `Body`, its last name the item
/// element), the indicator at `next` and the token at `token` (paths below `Body`).
pub fn soap(
    body: &[u8],
    items: &[String],
    next: Option<&[String]>,
    token: Option<&[String]>,
) -> Result<Page, String> {
    let envelope = xml(body)?;
    if envelope.name != "Envelope" {
        return Err(format!(
            "the root element is `{}`, not a SOAP `Envelope`",
            envelope.name
        ));
    }
    let body = envelope
        .child("Body")
        .ok_or_else(|| "the SOAP envelope has no `Body`".to_owned())?;
    if let Some(fault) = body.child("Fault") {
        let text = |name: &str| {
            fault
                .child(name)
                .map(|e| e.text.trim().chars().take(200).collect::<String>())
                .unwrap_or_default()
        };
        return Err(format!(
            "SOAP fault `{}`: {}",
            text("faultcode"),
            text("faultstring")
        ));
    }
    let (item_name, parent_path) = items
        .split_last()
        .ok_or_else(|| "`items` is empty".to_owned())?;
    let parent = descend(body, parent_path)
        .ok_or_else(|| format!("no `{}` (items) in the SOAP body", shown(parent_path)))?;
    let list = parent
        .children
        .iter()
        .filter(|c| &c.name == item_name)
        .map(Element::to_value)
        .collect();
    Ok(Page {
        items: list,
        next: next.and_then(|p| soap_indicator(body, p)),
        token: token.and_then(|p| soap_indicator(body, p)),
    })
}

/// The `faultstring` of a SOAP fault answer (HTTP 500), if the body is one.
pub fn soap_fault(body: &[u8]) -> Option<String> {
    match soap(body, &["x".to_owned()], None, None) {
        Err(m) if m.starts_with("SOAP fault") => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Vec<String> {
        s.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn a_json_page_gives_items_next_and_token() {
        let body = br#"{"data":{"items":[{"id":1},{"id":2}]},"next":"c2","wm":"2026-01-01"}"#;
        let page = json(body, &p("data.items"), Some(&p("next")), Some(&p("wm"))).unwrap();
        assert_eq!(page.items, [json!({"id":1}), json!({"id":2})]);
        assert_eq!(page.next.as_deref(), Some("c2"));
        assert_eq!(page.token.as_deref(), Some("2026-01-01"));
        for last in [
            r#"{"items":[],"next":false}"#,
            r#"{"items":[],"next":null}"#,
            r#"{"items":[],"next":""}"#,
            r#"{"items":[]}"#,
        ] {
            assert_eq!(
                json(last.as_bytes(), &p("items"), Some(&p("next")), None)
                    .unwrap()
                    .next,
                None,
                "{last}"
            );
        }
        let more = json(
            br#"{"items":[],"next":true}"#,
            &p("items"),
            Some(&p("next")),
            None,
        )
        .unwrap();
        assert_eq!(more.next.as_deref(), Some("true"));
    }

    #[test]
    fn malformed_json_pages_say_what_is_wrong() {
        let e = |b: &[u8]| json(b, &p("items"), Some(&p("next")), None).unwrap_err();
        assert!(
            e(b"{\"items\": [").starts_with("not JSON"),
            "{}",
            e(b"{\"items\": [")
        );
        assert_eq!(e(br#"{"item":[]}"#), "no `items` (items) in the answer");
        assert_eq!(
            e(br#"{"items":{}}"#),
            "`items` (items) must be an array, found an object"
        );
        assert!(e(br#"{"items":[],"next":{}}"#).contains("found an object"));
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert_eq!(e(deep.as_bytes()), "nested deeper than 32 levels");
        // Brackets inside strings do not count.
        let quoted = format!(r#"{{"items":[],"x":"{}"}}"#, "[".repeat(40));
        assert!(json(quoted.as_bytes(), &p("items"), None, None).is_ok());
        let wide = format!(r#"{{"items":[{}0]}}"#, "0,".repeat(MAX_VALUES));
        assert_eq!(e(wide.as_bytes()), format!("more than {MAX_VALUES} values"));
        let big = vec![b' '; MAX_PAGE_BYTES + 1];
        assert!(e(&big).contains("more than"));
    }

    #[test]
    fn scalars_and_paths() {
        let v = json!({"a":{"b":[" x ", 2, true, null, {}]}});
        assert_eq!(
            scalar(lookup(&v, &p("a.b.0")).unwrap()),
            Ok(Some("x".into()))
        );
        assert_eq!(
            scalar(lookup(&v, &p("a.b.1")).unwrap()),
            Ok(Some("2".into()))
        );
        assert_eq!(
            scalar(lookup(&v, &p("a.b.2")).unwrap()),
            Ok(Some("true".into()))
        );
        assert_eq!(scalar(lookup(&v, &p("a.b.3")).unwrap()), Ok(None));
        assert_eq!(scalar(lookup(&v, &p("a.b.4")).unwrap()), Err("an object"));
        assert!(lookup(&v, &p("a.c")).is_none());
        assert!(lookup(&v, &p("a.b.9")).is_none());
    }

    const SOAP: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <soap:Body>
    <hr:ListResponse xmlns:hr="urn:example:hr">
      <hr:Employees>
        <hr:Employee id="7"><hr:Id>E1</hr:Id><hr:Name><hr:First>Ann &amp; Bo</hr:First></hr:Name><hr:Mail xsi:nil="true"/></hr:Employee>
        <hr:Employee><hr:Id>E2</hr:Id><hr:Phone>1</hr:Phone><hr:Phone>2</hr:Phone><hr:Note><![CDATA[a<b]]>&#x41;</hr:Note></hr:Employee>
      </hr:Employees>
      <hr:HasMore>true</hr:HasMore>
      <hr:Watermark>w1</hr:Watermark>
    </hr:ListResponse>
  </soap:Body>
</soap:Envelope>"#;

    #[test]
    fn a_soap_page_gives_items_as_values() {
        let page = soap(
            SOAP.as_bytes(),
            &p("ListResponse.Employees.Employee"),
            Some(&p("ListResponse.HasMore")),
            Some(&p("ListResponse.Watermark")),
        )
        .unwrap();
        assert_eq!(page.items.len(), 2);
        assert_eq!(
            page.items[0],
            json!({"@id":"7","Id":"E1","Name":{"First":"Ann & Bo"},"Mail":null})
        );
        assert_eq!(page.items[1]["Phone"], json!(["1", "2"]));
        assert_eq!(page.items[1]["Note"], json!("a<bA"));
        assert_eq!(page.next.as_deref(), Some("true"));
        assert_eq!(page.token.as_deref(), Some("w1"));
    }

    #[test]
    fn hostile_or_broken_xml_is_refused() {
        let e = |s: &str| soap(s.as_bytes(), &p("R.E"), None, None).unwrap_err();
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><Envelope><Body>&lol2;</Body></Envelope>"#;
        assert_eq!(e(bomb), "a DOCTYPE is not accepted");
        assert_eq!(e("<!doctype x><x/>"), "a DOCTYPE is not accepted");
        assert_eq!(
            e("<Envelope><Body>&ext;</Body></Envelope>"),
            "undefined entity `&ext;`"
        );
        let deep = format!(
            "<Envelope><Body>{}{}</Body></Envelope>",
            "<a>".repeat(40),
            "</a>".repeat(40)
        );
        assert_eq!(e(&deep), "nested deeper than 32 levels");
        let wide = format!(
            "<Envelope><Body>{}</Body></Envelope>",
            "<a/>".repeat(MAX_VALUES)
        );
        assert_eq!(e(&wide), format!("more than {MAX_VALUES} elements"));
        let attrs: String = (0..40).map(|i| format!(" a{i}=\"1\"")).collect();
        assert!(e(&format!("<Envelope{attrs}/>")).contains("more than 32 attributes"));
        assert!(
            e("<Envelope><Body></Envelope>").starts_with("not well-formed XML"),
            "{}",
            e("<Envelope><Body></Envelope>")
        );
        assert!(
            e("<Envelope><Body>").contains("is not closed"),
            "{}",
            e("<Envelope><Body>")
        );
        assert_eq!(
            e("<Other/>"),
            "the root element is `Other`, not a SOAP `Envelope`"
        );
        assert_eq!(e("<Envelope/>"), "the SOAP envelope has no `Body`");
        assert_eq!(
            e("<Envelope><Body/></Envelope>"),
            "no `R` (items) in the SOAP body"
        );
        assert!(e("<a/><b/>").contains("after the root element"));
        let fault = "<s:Envelope xmlns:s=\"x\"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>bad page</faultstring></s:Fault></s:Body></s:Envelope>";
        assert_eq!(e(fault), "SOAP fault `s:Client`: bad page");
        assert_eq!(
            soap_fault(fault.as_bytes()).unwrap(),
            "SOAP fault `s:Client`: bad page"
        );
        assert!(soap_fault(b"<x/>").is_none());
    }
}
