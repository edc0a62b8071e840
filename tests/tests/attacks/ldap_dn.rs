//! Escaping the `ldap` capability's base DN: a plugin's search base must be the directory's
//! base DN or below it (`lockgate_host::dn`, RFC 4514). Search bases that only look as if
//! they were below it (escaped and hex-escaped commas, quotes, `;` separators, multi-valued
//! RDNs, malformed escapes) are refused; the same entries spelled in other legitimate ways
//! (case, blanks, hex escapes of plain characters, OIDs) are accepted.

use lockgate_host::dn::DistinguishedName;
use lockgate_tests::attack::Tally;

const BASE: &str = "ou=People,dc=example,dc=com";

/// Whether the containment check lets `dn` through as at or below [`BASE`].
fn accepted(dn: &str) -> bool {
    let base = DistinguishedName::parse(BASE).expect("the base parses");
    DistinguishedName::parse(dn).is_ok_and(|d| d.is_within(&base))
}

#[test]
fn search_bases_outside_the_base_dn_are_refused() {
    let mut tally = Tally::new("ldap base DN");
    for dn in [
        // One RDN whose value holds the base: its parent is dc=example,dc=com.
        r"ou=evil\,ou=People,dc=example,dc=com",
        r"uid=x,ou=evil\,ou=People,dc=example,dc=com",
        r"ou=evil\2cou=People,dc=example,dc=com",
        r"ou=evil\2Cou=People,dc=example,dc=com",
        r"cn=x\\,ou=evil\,ou=People,dc=example,dc=com",
        // Quoted values (RFC 2253) are not RFC 4514 and are refused, not guessed at.
        r#"cn="x,ou=People",dc=example,dc=com"#,
        r#"ou="People",dc=example,dc=com"#,
        // `;` separators (RFC 1779) are refused.
        "uid=x;ou=People,dc=example,dc=com",
        "ou=People;dc=example;dc=com",
        // Multi-valued RDN: a different RDN from `ou=People`.
        "ou=People+cn=x,dc=example,dc=com",
        "uid=x,ou=People+cn=x,dc=example,dc=com",
        // Siblings, parents and look-alikes.
        "ou=Services,dc=example,dc=com",
        "dc=example,dc=com",
        "dc=com",
        "",
        "ou=PeopleX,dc=example,dc=com",
        "uid=x,ou=People,dc=example,dc=com,dc=evil",
        "uid=x,ou=People,dc=example,dc=org",
        r"uid=x,ou=People\ ,dc=example,dc=com",
        r"uid=x,ou=People\00,dc=example,dc=com",
        "uid=x,ou=Peo ple,dc=example,dc=com",
        // Malformed: trailing escape, bad hex, empty RDN, missing `=`, bad OIDs.
        r"uid=x,ou=People,dc=example,dc=com\",
        r"uid=x\,ou=People,dc=example,dc=com\",
        r"uid=x\2,ou=People,dc=example,dc=com",
        r"uid=x\zz,ou=People,dc=example,dc=com",
        r"uid=\ff\fe,ou=People,dc=example,dc=com",
        "uid=x,,ou=People,dc=example,dc=com",
        ",ou=People,dc=example,dc=com",
        "uid,ou=People,dc=example,dc=com",
        "=x,ou=People,dc=example,dc=com",
        "2.5.4.011=People,dc=example,dc=com",
        "uid=x,ou=People,dc=example,dc=com,",
        "uid=<x>,ou=People,dc=example,dc=com",
    ] {
        tally.case(format!("{dn:?}"), !accepted(dn));
    }
    let long = format!("{}{BASE}", "cn=x,".repeat(100));
    tally.case("100 RDNs", !accepted(&long));
    let huge = format!("cn={},{BASE}", "x".repeat(5000));
    tally.case("5000-byte value", !accepted(&huge));
    tally.finish();

    // The same entries spelled otherwise are at or below the base.
    for dn in [
        "ou=People,dc=example,dc=com",
        "OU=people,DC=EXAMPLE,dc=Com",
        "uid=ada,ou=People,dc=example,dc=com",
        "uid=ada , ou = People ,  dc=example,dc=com ",
        r"uid=ada,ou=Peop\6ce,dc=example,dc=com",
        r"uid=ada,ou=\50eople,dc=example,dc=com",
        r"uid=a\,b,ou=People,dc=example,dc=com",
        r"uid=a\2cb,ou=People,dc=example,dc=com",
        "cn=a+uid=b,ou=People,dc=example,dc=com",
        "uid=ada,2.5.4.11=People,0.9.2342.19200300.100.1.25=example,DC=com",
    ] {
        assert!(accepted(dn), "{dn} is below {BASE}");
    }
}
