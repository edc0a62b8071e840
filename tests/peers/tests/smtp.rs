//! Self-tests of the SMTP peer: plain delivery and the magic recipients over a raw TCP
//! dialogue, STARTTLS with AUTH through Python's smtplib, and a drop after DATA.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use lockgate_test_peers::{SmtpOptions, SmtpPeer};

/// A minimal SMTP client over a plain TCP stream.
struct Dialogue {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Dialogue {
    fn open(peer: &SmtpPeer) -> (Dialogue, u16, String) {
        let stream = TcpStream::connect(peer.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut dialogue = Dialogue {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        let (code, text) = dialogue.reply();
        (dialogue, code, text)
    }

    /// Reads one (possibly multi-line) reply.
    fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            assert!(
                self.reader.read_line(&mut line).unwrap() > 0,
                "connection closed"
            );
            text.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return (line[..3].parse().unwrap(), text);
            }
        }
    }

    fn send(&mut self, command: &str) -> (u16, String) {
        self.writer
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }
}

const MESSAGE: &str = "From: gateway@example.com\r\nTo: ok@example.com\r\nSubject: Key ready\r\n\r\nYour key is ready.\r\n..leading dot\r\n";

#[test]
fn plain_delivery_and_magic_recipients() {
    let peer = SmtpPeer::start(SmtpOptions::default());
    let (mut smtp, code, banner) = Dialogue::open(&peer);
    assert_eq!(code, 220, "{banner}");
    let (code, ehlo) = smtp.send("EHLO client.test");
    assert_eq!(code, 250);
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(smtp.send("MAIL FROM:<gateway@example.com>").0, 250);
    assert_eq!(smtp.send("RCPT TO:<ok@example.com>").0, 250);
    let (code, text) = smtp.send("RCPT TO:<tempfail@example.com>");
    assert_eq!((code, text.trim_end()), (451, "451 4.3.0 try later"));
    let (code, text) = smtp.send("RCPT TO:<reject@example.com>");
    assert_eq!((code, text.trim_end()), (550, "550 5.1.1 no such user"));
    assert_eq!(smtp.send("RCPT TO:<second@example.org>").0, 250);
    assert_eq!(smtp.send("DATA").0, 354);
    smtp.writer.write_all(MESSAGE.as_bytes()).unwrap();
    assert_eq!(smtp.send(".").0, 250);
    assert_eq!(smtp.send("QUIT").0, 221);

    let mails = peer.wait_for(1, Duration::from_secs(5));
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].mail_from, "gateway@example.com");
    assert_eq!(mails[0].rcpt_tos, ["ok@example.com", "second@example.org"]);
    assert!(
        mails[0].raw.starts_with("From: gateway@example.com\r\n"),
        "{:?}",
        mails[0].raw
    );
    assert!(
        mails[0].raw.contains("\r\n.leading dot\r\n"),
        "dot-unstuffed: {:?}",
        mails[0].raw
    );

    let dir = peer.dir().to_owned();
    drop(peer);
    assert!(!dir.exists(), "the temporary directory is removed");
}

#[test]
fn drop_after_data_closes_without_an_answer() {
    let peer = SmtpPeer::start(SmtpOptions::default());
    let (mut smtp, _, _) = Dialogue::open(&peer);
    smtp.send("EHLO client.test");
    assert_eq!(smtp.send("MAIL FROM:<gateway@example.com>").0, 250);
    assert_eq!(smtp.send("RCPT TO:<drop-after-data@example.com>").0, 250);
    assert_eq!(smtp.send("DATA").0, 354);
    smtp.writer
        .write_all(format!("{MESSAGE}.\r\n").as_bytes())
        .unwrap();
    let mut rest = Vec::new();
    let _ = smtp.reader.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "no answer expected: {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert!(peer.messages().is_empty());

    // The peer keeps serving.
    let (mut smtp, code, _) = Dialogue::open(&peer);
    assert_eq!(code, 220);
    assert_eq!(smtp.send("NOOP").0, 250);
}

#[test]
fn starttls_required_with_auth() {
    let peer = SmtpPeer::start(SmtpOptions {
        require_starttls: true,
        auth: Some(("mailer".to_owned(), "s3cret".to_owned())),
    });

    // Without STARTTLS nothing goes.
    let (mut smtp, _, _) = Dialogue::open(&peer);
    smtp.send("EHLO client.test");
    assert_eq!(smtp.send("MAIL FROM:<gateway@example.com>").0, 530);

    let send = |user: &str, password: &str| {
        Command::new(std::env::var("LOCKGATE_TEST_PYTHON").unwrap_or("python3".into()))
            .arg("-c")
            .arg(SMTPLIB_CLIENT)
            .arg(peer.port().to_string())
            .arg(peer.ca_pem_path())
            .arg(user)
            .arg(password)
            .output()
            .unwrap()
    };
    let refused = send("mailer", "wrong");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("535"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let sent = send("mailer", "s3cret");
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let mails = peer.wait_for(1, Duration::from_secs(5));
    assert_eq!(mails[0].rcpt_tos, ["ok@example.com"]);
    assert!(
        mails[0].raw.contains("Subject: over STARTTLS"),
        "{}",
        mails[0].raw
    );
}

/// smtplib over STARTTLS, verifying the certificate against the test CA and the IP address.
const SMTPLIB_CLIENT: &str = r#"
import smtplib, ssl, sys
port, ca, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
with smtplib.SMTP("127.0.0.1", port, timeout=5) as s:
    s.starttls(context=ssl.create_default_context(cafile=ca))
    s.login(user, password)
    s.sendmail("gateway@example.com", ["ok@example.com"],
               "Subject: over STARTTLS\r\n\r\nHello.\r\n")
"#;
