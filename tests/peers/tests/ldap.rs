//! Self-tests of the private slapd: TLS, paging, bulk load, changes while running, restart,
//! and a connection cut mid-page by the proxy.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use lockgate_test_peers::{CutProxy, LdapPerson, Slapd, TestCa};

fn people(n: usize) -> impl Iterator<Item = LdapPerson> {
    (0..n).map(|i| {
        LdapPerson::new(&format!("u{i:06}"), &format!("Given{i}"), &format!("Sn{i}"))
            .mail(&format!("u{i:06}@example.com"))
            .department(&format!("D{}", i % 10))
    })
}

/// `ldapsearch` bound as the service account, trusting `ca`; `extra` goes before the filter.
fn ldapsearch(slapd: &Slapd, url: &str, ca: &Path, extra: &[&str], filter: &str) -> Output {
    Command::new("ldapsearch")
        .env("LDAPTLS_CACERT", ca)
        .env("LDAPTLS_REQCERT", "demand")
        .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-o", "nettimeout=5"])
        .args([
            "-H",
            url,
            "-D",
            slapd.bind_dn(),
            "-w",
            slapd.bind_password(),
        ])
        .args(["-b", slapd.base_dn()])
        .args(extra)
        .arg(filter)
        .args(["uid", "mail", "modifyTimestamp"])
        .output()
        .expect("run ldapsearch")
}

fn count(output: &Output, prefix: &str) -> usize {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .count()
}

fn ok(output: Output) -> Output {
    assert!(
        output.status.success(),
        "ldapsearch failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn paged_search_over_starttls_and_ldaps() {
    let slapd = Slapd::start(people(250));
    let ca = slapd.ca_pem_path();
    println!("slapd start: {:?}", slapd.start_time());

    let paged = ["-E", "pr=100/noprompt"];
    let starttls = ok(ldapsearch(
        &slapd,
        &slapd.ldap_url(),
        ca,
        &["-ZZ", paged[0], paged[1]],
        "(objectClass=inetOrgPerson)",
    ));
    assert_eq!(count(&starttls, "dn: uid="), 250);
    assert_eq!(count(&starttls, "modifyTimestamp: "), 250);
    let ldaps = ok(ldapsearch(
        &slapd,
        &slapd.ldaps_url(),
        ca,
        &paged,
        "(uid=u000042)",
    ));
    let text = String::from_utf8_lossy(&ldaps.stdout);
    assert!(
        text.contains("dn: uid=u000042,ou=people,dc=example,dc=com"),
        "{text}"
    );
    assert!(text.contains("mail: u000042@example.com"), "{text}");

    // Another CA is not trusted: the certificate really is checked.
    let other = tempfile::tempdir().unwrap();
    let other_ca = TestCa::new().write_to(other.path()).ca_pem;
    let refused = ldapsearch(&slapd, &slapd.ldaps_url(), &other_ca, &[], "(uid=u000001)");
    assert!(!refused.status.success());
    let refused = ldapsearch(
        &slapd,
        &slapd.ldap_url(),
        &other_ca,
        &["-ZZ"],
        "(uid=u000001)",
    );
    assert!(!refused.status.success());

    // Anonymous clients see no one.
    let anonymous = Command::new("ldapsearch")
        .args([
            "-x",
            "-LLL",
            "-H",
            &slapd.ldap_url(),
            "-b",
            slapd.base_dn(),
            "(uid=*)",
        ])
        .output()
        .unwrap();
    assert_eq!(count(&anonymous, "dn:"), 0);
}

#[test]
fn bulk_load_of_100_000_entries() {
    let started = Instant::now();
    let slapd = Slapd::start(people(100_000));
    println!(
        "100 000 entries: LDIF + slapadd {:?}, slapd start {:?}, Slapd::start total {:?}",
        slapd.load_time(),
        slapd.start_time(),
        started.elapsed()
    );
    let searched = Instant::now();
    let all = ok(ldapsearch(
        &slapd,
        &slapd.ldap_url(),
        slapd.ca_pem_path(),
        &["-E", "pr=1000/noprompt"],
        "(objectClass=inetOrgPerson)",
    ));
    assert_eq!(count(&all, "dn: uid="), 100_000);
    println!("paged search of 100 000 entries: {:?}", searched.elapsed());
}

#[test]
fn add_modify_delete_and_restart() {
    let mut slapd = Slapd::start(people(3));
    let ca = slapd.ca_pem_path().to_owned();
    let url = slapd.ldap_url();

    let anna = LdapPerson::new("anna", "Änna", "Berg")
        .mail("anna@example.com")
        .telephone("+49 30 1234")
        .department("R&D")
        .preferred_language("de")
        .attr("employeeNumber", "E-1001");
    slapd.add(&anna);
    let found = slapd.search("(uid=anna)", &[]);
    assert!(found.contains("givenName:: w4RubmE="), "{found}"); // "Änna", base64
    assert!(found.contains("departmentNumber: R&D"), "{found}");
    assert!(found.contains("preferredLanguage: de"), "{found}");
    assert!(found.contains("employeeNumber: E-1001"), "{found}");
    assert_eq!(
        count(&ok(ldapsearch(&slapd, &url, &ca, &[], "(uid=anna)")), "dn:"),
        1
    );

    slapd.modify_mail("anna", "anna.berg@example.com");
    slapd.modify(
        "u000001",
        "telephoneNumber",
        &["+1 555 0100", "+1 555 0101"],
    );
    slapd.modify("anna", "telephoneNumber", &[]);
    let found = slapd.search("(uid=anna)", &["mail", "telephoneNumber", "modifiersName"]);
    assert!(found.contains("mail: anna.berg@example.com"), "{found}");
    assert!(!found.contains("telephoneNumber"), "{found}");
    assert!(
        found.contains("modifiersName: cn=admin,dc=example,dc=com"),
        "{found}"
    );
    assert_eq!(
        slapd
            .search("(telephoneNumber=+1 555 0101)", &["uid"])
            .matches("uid: u000001")
            .count(),
        1
    );

    slapd.delete("u000002");
    assert!(slapd.search("(uid=u000002)", &[]).is_empty());

    let ports = (slapd.ldap_port(), slapd.ldaps_port());
    slapd.stop();
    assert!(!slapd.is_running());
    assert!(
        !ldapsearch(&slapd, &url, &ca, &[], "(uid=anna)")
            .status
            .success()
    );
    slapd.start_again();
    assert!(slapd.is_running());
    assert_eq!(ports, (slapd.ldap_port(), slapd.ldaps_port()));
    println!("slapd restart: {:?}", slapd.start_time());
    let all = ok(ldapsearch(&slapd, &slapd.ldaps_url(), &ca, &[], "(uid=*)"));
    assert_eq!(count(&all, "dn: uid="), 3); // 3 loaded + anna - u000002
    assert!(String::from_utf8_lossy(&all.stdout).contains("mail: anna.berg@example.com"));

    let dir = slapd.dir().to_owned();
    drop(slapd);
    assert!(!dir.exists(), "the temporary directory is removed");
}

#[test]
fn proxy_cuts_a_paged_search_mid_page() {
    let slapd = Slapd::start(people(2_000));
    let proxy = CutProxy::start(([127, 0, 0, 1], slapd.ldap_port()).into());
    let url = format!("ldap://127.0.0.1:{}", proxy.port());
    let ca = slapd.ca_pem_path();
    let paged = ["-E", "pr=100/noprompt"];

    let whole = ok(ldapsearch(&slapd, &url, ca, &paged, "(uid=*)"));
    assert_eq!(count(&whole, "dn: uid="), 2_000);
    assert_eq!(proxy.cuts(), 0);

    // Roughly a hundred bytes per entry: 25 000 bytes end in the third page or so.
    proxy.cut_after_bytes(25_000);
    let cut = ldapsearch(&slapd, &url, ca, &paged, "(uid=*)");
    assert!(
        !cut.status.success(),
        "the search must fail when the connection is cut"
    );
    let partial = count(&cut, "dn: uid=");
    assert!(
        partial > 100 && partial < 2_000,
        "{partial} entries before the cut"
    );
    assert_eq!(proxy.cuts(), 1);

    // The budget was one-shot: the next search goes through.
    let again = ok(ldapsearch(&slapd, &url, ca, &paged, "(uid=*)"));
    assert_eq!(count(&again, "dn: uid="), 2_000);
    assert_eq!(proxy.connections(), 3);
}
