//! LDAP distinguished names in their string form (RFC 4514), parsed for the `ldap`
//! capability's "at or below the base DN" check.
//!
//! A DN is parsed into RDNs (leaf first), each a set of attribute type and value pairs
//! (`+` joins several, RFC 4514 §2.2), with escapes resolved (`\,`, `\2c`, RFC 4514 §2.4), so
//! an escaped comma is part of a value and never a separator. Comparison is never looser
//! than the directory server's: attribute types compare case-insensitively with the usual
//! names and their OIDs identified; values compare with ASCII case folded for the attribute
//! types whose equality rule ignores case (`dc`, `cn`, `ou`, ... all `caseIgnoreMatch` or
//! `caseIgnoreIA5Match`), byte for byte otherwise. Where the server would find two names
//! equal and this module would not (non-ASCII case, inner spaces, `#` hex values), the
//! check refuses, which is the safe side.
//!
//! Accepted beyond strict RFC 4514, as servers accept it (RFC 2253 and 1779 habits): blanks
//! around `=`, `,` and `+`. Refused: unescaped `"`, `;`, `<`, `>`, a trailing lone `\`,
//! malformed hex escapes, escapes that do not form UTF-8, empty RDNs and overlong input.

use std::fmt;

/// Longest DN string accepted, bytes.
pub const MAX_DN_BYTES: usize = 4096;
/// Most RDNs in one DN.
pub const MAX_RDNS: usize = 64;

/// Why a DN string is not a DN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnError {
    /// Byte offset in the input where the problem is.
    pub at: usize,
    /// What is wrong there.
    pub reason: &'static str,
}

impl fmt::Display for DnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.at)
    }
}

impl std::error::Error for DnError {}

/// One attribute type and value, normalised for comparison.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Ava {
    /// Lower-case short name when known (`dc`), else the lower-case descriptor or numeric OID.
    attr: String,
    value: Value,
}

/// A value as compared: the unescaped string (case-folded when the attribute ignores case),
/// or the hex of a `#` BER value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Value {
    Text(String),
    Ber(String),
}

/// A parsed distinguished name: RDNs leaf first, each a sorted set of pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistinguishedName {
    rdns: Vec<Vec<Ava>>,
}

impl DistinguishedName {
    /// Parses an RFC 4514 string (the empty string is the root DN).
    pub fn parse(s: &str) -> Result<DistinguishedName, DnError> {
        if s.len() > MAX_DN_BYTES {
            return Err(DnError {
                at: MAX_DN_BYTES,
                reason: "DN longer than 4096 bytes",
            });
        }
        Parser {
            s: s.as_bytes(),
            i: 0,
        }
        .dn()
    }

    /// Number of RDNs (0 for the root DN).
    pub fn len(&self) -> usize {
        self.rdns.len()
    }

    /// Whether this is the root DN (no RDN).
    pub fn is_empty(&self) -> bool {
        self.rdns.is_empty()
    }

    /// True when `self` is `base` or an entry below it.
    pub fn is_within(&self, base: &DistinguishedName) -> bool {
        self.rdns.len() >= base.rdns.len()
            && self.rdns[self.rdns.len() - base.rdns.len()..] == base.rdns[..]
    }
}

/// Attribute types whose equality matching rule ignores case (RFC 4519, RFC 4524), with
/// their OIDs, so that `0.9.2342.19200300.100.1.25=x` is `dc=x`.
const CASE_IGNORING: &[(&str, &str)] = &[
    ("cn", "2.5.4.3"),
    ("sn", "2.5.4.4"),
    ("serialnumber", "2.5.4.5"),
    ("c", "2.5.4.6"),
    ("l", "2.5.4.7"),
    ("st", "2.5.4.8"),
    ("street", "2.5.4.9"),
    ("o", "2.5.4.10"),
    ("ou", "2.5.4.11"),
    ("title", "2.5.4.12"),
    ("gn", "2.5.4.42"),
    ("givenname", "2.5.4.42"),
    ("uid", "0.9.2342.19200300.100.1.1"),
    ("mail", "0.9.2342.19200300.100.1.3"),
    ("dc", "0.9.2342.19200300.100.1.25"),
];

/// The canonical spelling of an attribute type and whether its values ignore case.
fn attribute(t: &str) -> (String, bool) {
    let lower = t.to_ascii_lowercase();
    match CASE_IGNORING
        .iter()
        .find(|(name, oid)| *name == lower || *oid == lower)
    {
        // `gn` and `givenname` are one type: name it by its OID's first short name.
        Some((_, oid)) => {
            let name = CASE_IGNORING
                .iter()
                .find(|(_, o)| o == oid)
                .map_or(lower.as_str(), |(n, _)| n);
            (name.to_owned(), true)
        }
        None => (lower, false),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err<T>(&self, reason: &'static str) -> Result<T, DnError> {
        Err(DnError { at: self.i, reason })
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn blanks(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    fn dn(mut self) -> Result<DistinguishedName, DnError> {
        let mut rdns = Vec::new();
        self.blanks();
        if self.peek().is_none() {
            return Ok(DistinguishedName { rdns });
        }
        loop {
            if rdns.len() == MAX_RDNS {
                return self.err("more than 64 RDNs");
            }
            rdns.push(self.rdn()?);
            match self.peek() {
                None => return Ok(DistinguishedName { rdns }),
                Some(b',') => self.i += 1,
                Some(_) => return self.err("expected `,` between RDNs"),
            }
        }
    }

    fn rdn(&mut self) -> Result<Vec<Ava>, DnError> {
        let mut avas = vec![self.ava()?];
        while self.peek() == Some(b'+') {
            self.i += 1;
            avas.push(self.ava()?);
        }
        avas.sort();
        avas.dedup();
        Ok(avas)
    }

    /// `attributeType "=" attributeValue`, blanks allowed around both.
    fn ava(&mut self) -> Result<Ava, DnError> {
        self.blanks();
        let start = self.i;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            self.i += 1;
        }
        let t = std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default();
        if !attribute_type_ok(t) {
            self.i = start;
            return self.err("expected an attribute type (a name or a numeric OID)");
        }
        self.blanks();
        if self.peek() != Some(b'=') {
            return self.err("expected `=` after the attribute type");
        }
        self.i += 1;
        self.blanks();
        let (attr, ignore_case) = attribute(t);
        let value = if self.peek() == Some(b'#') {
            self.i += 1;
            Value::Ber(self.hexstring()?)
        } else {
            let v = self.string()?;
            Value::Text(if ignore_case {
                v.to_ascii_lowercase()
            } else {
                v
            })
        };
        self.blanks();
        match self.peek() {
            None | Some(b',') | Some(b'+') => Ok(Ava { attr, value }),
            Some(_) => self.err("unexpected character after the value"),
        }
    }

    /// `"#" 1*hexpair`: the BER encoding, kept as lower-case hex.
    fn hexstring(&mut self) -> Result<String, DnError> {
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_hexdigit()) {
            self.i += 1;
        }
        let hex = &self.s[start..self.i];
        if hex.is_empty() || !hex.len().is_multiple_of(2) {
            return self.err("a `#` value needs pairs of hex digits");
        }
        Ok(String::from_utf8_lossy(hex).to_ascii_lowercase())
    }

    /// The string form of a value with its escapes resolved; stops before an unescaped
    /// `,` or `+` (or the end), unescaped trailing blanks dropped.
    fn string(&mut self) -> Result<String, DnError> {
        let mut out = Vec::new();
        // Bytes of `out` that came from escapes: trailing blanks among them are kept.
        let mut kept = 0;
        loop {
            match self.peek() {
                None | Some(b',') | Some(b'+') => break,
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(
                            c @ (b'\\' | b'"' | b'+' | b',' | b';' | b'<' | b'>' | b' ' | b'#'
                            | b'='),
                        ) => {
                            out.push(c);
                            self.i += 1;
                        }
                        Some(h) if h.is_ascii_hexdigit() => {
                            let pair = self.s.get(self.i..self.i + 2).unwrap_or_default();
                            let byte = std::str::from_utf8(pair)
                                .ok()
                                .filter(|p| p.len() == 2)
                                .and_then(|p| u8::from_str_radix(p, 16).ok());
                            match byte {
                                Some(b) => out.push(b),
                                None => return self.err("`\\` needs two hex digits"),
                            }
                            self.i += 2;
                        }
                        Some(_) => return self.err("`\\` escapes a character that needs none"),
                        None => return self.err("a DN cannot end with a lone `\\`"),
                    }
                    kept = out.len();
                }
                Some(b'"' | b';' | b'<' | b'>' | 0) => {
                    return self.err("unescaped `\"`, `;`, `<`, `>` or NUL in a value");
                }
                Some(b) => {
                    out.push(b);
                    self.i += 1;
                }
            }
        }
        while out.len() > kept && out.last() == Some(&b' ') {
            out.pop();
        }
        String::from_utf8(out).or_else(|_| self.err("the value's escapes are not UTF-8"))
    }
}

/// `descr` (a letter, then letters, digits, hyphens) or `numericoid` (RFC 4512 §1.4).
fn attribute_type_ok(t: &str) -> bool {
    let b = t.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() => {
            t.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        }
        Some(c) if c.is_ascii_digit() => {
            let parts: Vec<&str> = t.split('.').collect();
            parts.len() >= 2
                && parts.iter().all(|p| {
                    !p.is_empty()
                        && p.bytes().all(|c| c.is_ascii_digit())
                        && (p.len() == 1 || !p.starts_with('0'))
                })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(s: &str) -> DistinguishedName {
        DistinguishedName::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn within(d: &str, base: &str) -> bool {
        dn(d).is_within(&dn(base))
    }

    /// The examples of RFC 4514 §4 parse, with the structure they describe.
    #[test]
    fn rfc_4514_examples() {
        assert_eq!(dn("UID=jsmith,DC=example,DC=net").len(), 3);
        let multi = dn("OU=Sales+CN=J.  Smith,DC=example,DC=net");
        assert_eq!(multi.len(), 3);
        assert_eq!(multi.rdns[0].len(), 2);
        // An escaped comma stays in the value: three RDNs, not four.
        let comma = dn("CN=James \\\"Jim\\\" Smith\\, III,DC=example,DC=net");
        assert_eq!(comma.len(), 3);
        assert_eq!(
            comma.rdns[0][0].value,
            Value::Text("james \"jim\" smith, iii".into())
        );
        let cr = dn("CN=Before\\0dAfter,DC=example,DC=net");
        assert_eq!(cr.rdns[0][0].value, Value::Text("before\rafter".into()));
        let ber = dn("1.3.6.1.4.1.1466.0=#04024869");
        assert_eq!(ber.rdns[0][0].value, Value::Ber("04024869".into()));
        let lucius = dn("CN=Lu\\C4\\8Di\\C4\\87");
        assert_eq!(lucius.rdns[0][0].value, Value::Text("lučić".into()));
    }

    #[test]
    fn escapes_case_blanks_and_oids_compare_as_the_server_would() {
        let base = "ou=People, dc=Example,dc=com";
        assert!(within("OU=people,DC=example,DC=com", base));
        assert!(within("uid=ada,ou=people,dc=example,dc=com", base));
        assert!(within("uid=ada , ou = people ,dc=example,  dc=com  ", base));
        assert!(within("uid=ada,ou=Peop\\6ce,dc=example,dc=com", base));
        assert!(within("uid=a\\,b,ou=people,dc=example,dc=com", base));
        assert!(within(
            "uid=ada,ou=people,0.9.2342.19200300.100.1.25=example,DC=com",
            base
        ));
        assert!(within("cn=a+uid=b,ou=people,dc=example,dc=com", base));
        assert!(!within("ou=services,dc=example,dc=com", base));
        assert!(!within("uid=x,ou=otherpeople,dc=example,dc=com", base));
        assert!(!within("dc=com", base));
        // The escaped comma makes one RDN whose value contains `ou=people`.
        assert!(!within("ou=evil\\,ou=people,dc=example,dc=com", base));
        assert!(!within("ou=evil\\2cou=people,dc=example,dc=com", base));
        // Multi-valued RDNs: a set, order-free, but not a subset.
        assert!(within(
            "cn=x,ou=a+cn=b,dc=example,dc=com",
            "cn=b+ou=a,dc=example,dc=com"
        ));
        assert!(!within(
            "cn=x,ou=a+cn=b,dc=example,dc=com",
            "ou=a,dc=example,dc=com"
        ));
        // An escaped trailing blank is part of the value.
        assert!(!within("uid=x,ou=people\\ ,dc=example,dc=com", base));
        // Case matters for attribute types not known to ignore it.
        assert!(!within("x=A,dc=example,dc=com", "x=a,dc=example,dc=com"));
        assert!(within("X=A,dc=example,dc=com", "x=A,dc=example,dc=com"));
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in [
            "cn=a,,dc=com",
            ",dc=com",
            "dc=com,",
            "cn",
            "=x",
            "cn=a\\",
            "cn=a\\2",
            "cn=a\\zz",
            "cn=a\\q",
            "cn=\"quoted,dc=example\",dc=com",
            "cn=a;dc=example,dc=com",
            "cn=a<b",
            "cn=\\ff\\fe",
            "cn=#0g",
            "cn=#123",
            "1.02.3=x",
            "1=x",
            "c n=x",
            "-cn=x",
        ] {
            assert!(DistinguishedName::parse(bad).is_err(), "{bad} is malformed");
        }
        let long = "cn=x,".repeat(MAX_RDNS) + "dc=com";
        assert!(DistinguishedName::parse(&long).is_err());
        assert!(DistinguishedName::parse(&"a".repeat(MAX_DN_BYTES + 1)).is_err());
        assert!(dn("").is_empty());
        assert!(dn("  ").is_empty());
    }
}
