//! The MQTT publisher over TLS against a private Mosquitto started by the test with a runtime
//! test CA (`lockgate-test-peers`), client certificates required and a password file: with the
//! CA, the client certificate and the user name and password (from the environment) a QoS 1
//! publish is acknowledged; without the client certificate, with another CA, over plain TCP or
//! with a wrong password the publisher never connects. Missing or unreadable TLS files are
//! refused up front with the key named.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process};
use std::time::Duration;

use lockgate_host::{MqttConfig, MqttPublisher, RumqttPublisher};
use lockgate_test_peers::{TestCa, TlsFiles};

const USER: &str = "lockgate";
const PASSWORD: &str = "tls-test-password";

struct TlsBroker {
    port: u16,
    files: TlsFiles,
    dir: tempdir::Dir,
    child: Child,
}

/// A temporary directory removed on drop (the test's own, no extra crate).
mod tempdir {
    use std::path::{Path, PathBuf};
    pub struct Dir(PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let mut b = [0u8; 6];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
                .unwrap();
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            let p = std::env::temp_dir().join(format!("lockgate-{tag}-{hex}"));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl TlsBroker {
    fn start() -> TlsBroker {
        let dir = tempdir::Dir::new("mqtt-tls");
        let files = TestCa::new().write_to(dir.path());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let passwords = dir.path().join("passwd");
        std::fs::write(&passwords, "").unwrap();
        let status = Process::new("/usr/bin/mosquitto_passwd")
            .arg("-b")
            .arg(&passwords)
            .arg(USER)
            .arg(PASSWORD)
            .status()
            .expect("mosquitto_passwd runs");
        assert!(status.success(), "mosquitto_passwd");
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "user root\nper_listener_settings false\nallow_anonymous false\npassword_file {}\n\
                 listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
                 require_certificate true\n",
                passwords.display(),
                files.ca_pem.display(),
                files.cert_pem.display(),
                files.key_pem.display(),
            ),
        )
        .unwrap();
        let log = dir.path().join("mosquitto.log");
        let mut child = Process::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("/usr/sbin/mosquitto starts");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return TlsBroker {
                    port,
                    files,
                    dir,
                    child,
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the private TLS Mosquitto does not listen on {port}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// A configuration with everything right (password from `env`).
    fn config(&self, name: &str, env: &str) -> MqttConfig {
        MqttConfig {
            host: "localhost".into(),
            port: self.port,
            client_id: format!("lockgate-tls-{name}-{}", std::process::id()),
            tls: true,
            ca_file: Some(self.files.ca_pem.clone()),
            client_cert_file: Some(self.files.client_cert_pem.clone()),
            client_key_file: Some(self.files.client_key_pem.clone()),
            username_env: Some(USER_ENV.into()),
            password_env: Some(env.into()),
            ack_timeout_ms: 5_000,
            ..MqttConfig::default()
        }
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.dir.path();
    }
}

async fn connects(cfg: &MqttConfig, wait: Duration) -> Option<RumqttPublisher> {
    let p = RumqttPublisher::start(cfg).expect("the configuration is valid");
    p.wait_connected(wait).await.then_some(p)
}

const PASSWORD_ENV: &str = "LOCKGATE_TEST_MQTT_TLS_PASSWORD";
const USER_ENV: &str = "LOCKGATE_TEST_MQTT_TLS_USER";

/// Runs the test body in a child process of this test binary with the credentials in its
/// environment (setting variables in this process would need `unsafe`).
#[test]
fn tls_with_client_certificate_and_credentials_from_the_environment() {
    if std::env::var_os(PASSWORD_ENV).is_some() {
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(tls_body());
    }
    let out = Process::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tls_with_client_certificate_and_credentials_from_the_environment",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PASSWORD_ENV, PASSWORD)
        .env(USER_ENV, USER)
        .output()
        .expect("the test binary runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn tls_body() {
    let broker = TlsBroker::start();
    let env = PASSWORD_ENV;
    let good = broker.config("good", env);
    good.preflight().expect("everything is in place");
    let publisher = connects(&good, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| {
            panic!(
                "TLS with the CA, the client certificate and the password connects; broker log:\n{}",
                std::fs::read_to_string(broker.dir.path().join("mosquitto.log")).unwrap_or_default()
            )
        });
    publisher
        .publish("test", "lockgate-tls/events/x", b"hello".to_vec(), 1, false)
        .await
        .expect("a QoS 1 publish over TLS is acknowledged");

    let short = Duration::from_secs(3);
    let mut no_client_cert = broker.config("nocert", env);
    no_client_cert.client_cert_file = None;
    no_client_cert.client_key_file = None;
    assert!(
        connects(&no_client_cert, short).await.is_none(),
        "the broker requires a client certificate"
    );
    let other_ca_dir = tempdir::Dir::new("mqtt-tls-other");
    let other = TestCa::new().write_to(other_ca_dir.path());
    let mut wrong_ca = broker.config("wrongca", env);
    wrong_ca.ca_file = Some(other.ca_pem.clone());
    assert!(
        connects(&wrong_ca, short).await.is_none(),
        "a broker certificate from another CA is not trusted"
    );
    let mut wrong_name = broker.config("wrongname", env);
    wrong_name.host = "127.0.0.2".into();
    assert!(
        connects(&wrong_name, short).await.is_none(),
        "the certificate must name the host"
    );
    let mut plain = broker.config("plain", env);
    plain.tls = false;
    plain.ca_file = None;
    plain.client_cert_file = None;
    plain.client_key_file = None;
    assert!(
        connects(&plain, short).await.is_none(),
        "plain TCP to the TLS listener"
    );
    let mut wrong_password = broker.config("wrongpw", env);
    wrong_password.password_env = None;
    wrong_password.username_env = None;
    wrong_password.username = Some(USER.into());
    wrong_password.password = Some("guess".into());
    assert!(
        connects(&wrong_password, short).await.is_none(),
        "a wrong password is refused"
    );
    drop(publisher);
}

#[test]
fn tls_files_are_checked_up_front() {
    let dir = tempdir::Dir::new("mqtt-tls-files");
    let files = TestCa::new().write_to(dir.path());
    let base = MqttConfig {
        tls: true,
        ca_file: Some(files.ca_pem.clone()),
        client_cert_file: Some(files.client_cert_pem.clone()),
        client_key_file: Some(files.client_key_pem.clone()),
        ..MqttConfig::default()
    };
    base.preflight().unwrap();
    let err = |cfg: MqttConfig| {
        let v = cfg.validate().and_then(|_| cfg.preflight());
        v.unwrap_err().to_string()
    };
    let missing: PathBuf = dir.path().join("nope.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a pem").unwrap();
    let cases: Vec<(MqttConfig, &str)> = vec![
        (
            MqttConfig {
                ca_file: Some(missing.clone()),
                ..base.clone()
            },
            "ca_file",
        ),
        (
            MqttConfig {
                ca_file: Some(garbage.clone()),
                ..base.clone()
            },
            "ca_file",
        ),
        (
            MqttConfig {
                client_cert_file: Some(missing.clone()),
                ..base.clone()
            },
            "client_cert_file",
        ),
        (
            MqttConfig {
                client_key_file: Some(garbage.clone()),
                ..base.clone()
            },
            "client_key_file",
        ),
        (
            MqttConfig {
                client_key_file: None,
                ..base.clone()
            },
            "client_key_file",
        ),
        (
            MqttConfig {
                client_key_file: Some(files.key_pem.clone()),
                ..base.clone()
            },
            "client_cert_file / client_key_file",
        ),
        (
            MqttConfig {
                tls: false,
                ..base.clone()
            },
            "tls = true",
        ),
        (
            MqttConfig {
                username: Some("u".into()),
                password_env: Some("LOCKGATE_TEST_MQTT_UNSET_VARIABLE".into()),
                ..base.clone()
            },
            "password_env `LOCKGATE_TEST_MQTT_UNSET_VARIABLE`",
        ),
        (
            MqttConfig {
                username_env: Some("LOCKGATE_TEST_MQTT_UNSET_USER".into()),
                ..base.clone()
            },
            "username_env `LOCKGATE_TEST_MQTT_UNSET_USER`",
        ),
    ];
    for (cfg, key) in cases {
        let e = err(cfg);
        assert!(e.contains(key), "{key}: {e}");
    }
    let _ = Path::new("/");
}
