//! The `liveloop-server` binary: flags, environment, Unix sockets, start-up validation and
//! graceful shutdown.

// Test code: indexing JSON values (Null when absent) and failing loudly are intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use liveloop_e2e::{ChildGuard, free_port, temp_dir, wait_for, workspace_bin};

fn server() -> Result<Command> {
    let mut cmd = Command::new(workspace_bin("liveloop-server")?);
    cmd.env_remove("ADDR")
        .env_remove("RTC_CONFIG_JSON")
        .env_remove("WS_ALLOWED_ORIGINS")
        .env_remove("MATCHMAKING_ADDR");
    Ok(cmd)
}

fn http_get_tcp(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn help_explains_every_option() -> Result<()> {
    let out = server()?.arg("--help").output()?;
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout)?;
    for needle in [
        "--only",
        "--matchmaking-addr",
        "--rooms-addr",
        "[env: ADDR=]",
        "--allowed-origins",
        "[env: WS_ALLOWED_ORIGINS=]",
        "--rtc-config-json",
        "[env: RTC_CONFIG_JSON=]",
        "--queue-capacity",
        "--max-connections-per-ip",
        "[env: MAX_CONNECTIONS_PER_IP=]",
        "--handshakes-per-ip-per-sec",
        "--status-names",
        "unix:/path",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
    Ok(())
}

#[test]
fn invalid_rtc_config_stops_the_server_with_a_message() -> Result<()> {
    for (json, says) in [
        ("{oops", "not valid JSON"),
        (
            r#"{"iceServers":[{"urls":"turn:t:3478"}]}"#,
            "username and credential",
        ),
    ] {
        let out = server()?
            .env("RTC_CONFIG_JSON", json)
            .args([
                "--rooms-addr",
                "127.0.0.1:0",
                "--matchmaking-addr",
                "127.0.0.1:0",
            ])
            .output()?;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("RTC_CONFIG_JSON is invalid") && err.contains(says),
            "{err}"
        );
    }
    let out = server()?.env("ADDR", "nowhere").output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid listen address"));
    Ok(())
}

#[test]
fn rooms_on_a_unix_socket_and_graceful_sigterm() -> Result<()> {
    let dir = temp_dir("unix")?;
    let sock = dir.join("rooms.sock");
    let mut guard = ChildGuard::spawn(
        "liveloop-server",
        server()?
            .args(["--only", "rooms"])
            .env("ADDR", format!("unix:{}", sock.display()))
            .stderr(Stdio::piped()),
    )?;
    let reply = wait_for("the unix socket", Duration::from_secs(10), || {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    })?;
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.ends_with("ok"),
        "{reply}"
    );

    // SIGTERM: a clean exit (status 0) with a log line saying so.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(guard.child.id())?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    let status = wait_for("exit after SIGTERM", Duration::from_secs(10), || {
        guard.child.try_wait().ok().flatten()
    })?;
    assert!(status.success(), "{status:?}");
    let mut log = String::new();
    guard
        .child
        .stderr
        .take()
        .context("stderr")?
        .read_to_string(&mut log)?;
    assert!(log.contains("shutting down"), "{log}");
    Ok(())
}

#[test]
fn both_services_from_flags() -> Result<()> {
    let (mm, rooms) = (free_port()?, free_port()?);
    let _guard = ChildGuard::spawn(
        "liveloop-server",
        server()?
            .args([
                "--matchmaking-addr",
                &format!("127.0.0.1:{mm}"),
                "--rooms-addr",
                &format!("127.0.0.1:{rooms}"),
            ])
            .stderr(Stdio::null()),
    )?;
    let health = wait_for("rooms", Duration::from_secs(10), || {
        http_get_tcp(rooms, "/healthz")
    })?;
    assert!(health.ends_with("ok"), "{health}");
    let root = wait_for("matchmaking", Duration::from_secs(10), || {
        http_get_tcp(mm, "/")
    })?;
    assert!(root.contains(r#""status":"OK""#), "{root}");
    let status = http_get_tcp(mm, "/api/status").unwrap_or_default();
    assert!(status.contains(r#""queue":{"size":0}"#), "{status}");
    Ok(())
}
