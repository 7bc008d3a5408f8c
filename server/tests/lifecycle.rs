//! The binary's life cycle: bad configuration stops start-up with a clear message, and
//! SIGTERM lets in-flight requests finish before the process exits.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fhir-notary"))
}

#[test]
fn invalid_configuration_stops_start_up_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = binary()
        .args(["serve", "--database-url", "mysql://localhost/fhir"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("database URL must start with postgres://"),
        "{stderr}"
    );

    let out = binary()
        .args(["serve", "--listen", "not-an-address"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));

    let out = binary()
        .args(["serve", "--log-level", "info,=[broken"])
        .env("FHIR_NOTARY_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid --log-level"));

    let out = binary()
        .args(["serve", "--seal-interval-ms", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a zero seal interval is refused");
}

fn read_http(stream: &mut TcpStream) -> String {
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

#[test]
fn sigterm_drains_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let token = String::from_utf8(
        binary()
            .args(["token", "--role", "admin"])
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let mut child = binary()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--shutdown-timeout",
            "10",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            if read_http(&mut s).starts_with("HTTP/1.1 200") {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A create whose body is still arriving when SIGTERM comes.
    let body = br#"{"resourceType":"Patient","name":[{"family":"InFlight"}]}"#;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /fhir/Patient HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        token.trim(),
        body.len()
    )
    .unwrap();
    stream.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(&body[10..]).unwrap();
    let response = read_http(&mut stream);
    assert!(
        response.starts_with("HTTP/1.1 201"),
        "in-flight request was cut: {response:?}"
    );

    // And the process then exits cleanly; new connections are refused meanwhile.
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit:?}");
}
