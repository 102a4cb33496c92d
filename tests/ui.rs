//! The app window, driven through tauri-driver + WebKitWebDriver (needs a display: the test
//! command runs the suite under Xvfb).

// Test code: indexing JSON values (Null when absent) and failing loudly are intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::time::Duration;

use anyhow::{Result, ensure};
use liveloop_e2e::webdriver::Session;
use liveloop_e2e::{ChildGuard, artifacts_dir, wait_for};

fn open_app(label: &str) -> Result<(ChildGuard, Session, std::path::PathBuf)> {
    liveloop_e2e::app::open_app(label, &[], None)
}

#[test]
fn window_opens_navigates_and_talks_to_rust() -> Result<()> {
    let (_driver, s, config_dir) = open_app("ui-smoke")?;
    assert_eq!(s.title()?, "LiveLoop");

    // The page asked Rust for the server status: the embedded services answered on loopback.
    let status = wait_for("the page to load", Duration::from_secs(20), || {
        s.find("#server-status").ok()
    })?;
    let text = wait_for("the server status", Duration::from_secs(20), || {
        s.text(&status).ok().filter(|t| t.starts_with("Ready"))
    })?;
    assert!(
        text.contains("built-in servers") && text.contains("http://127.0.0.1:"),
        "{text}"
    );

    // Clicking Settings swaps the view.
    let home = s.find("#home-view")?;
    let settings = s.find("#settings-view")?;
    assert!(s.displayed(&home)? && !s.displayed(&settings)?);
    s.click(&s.find("#nav-settings")?)?;
    wait_for("the settings view", Duration::from_secs(5), || {
        s.displayed(&settings).ok().filter(|d| *d)
    })?;
    assert!(!s.displayed(&home)?);
    assert_eq!(
        s.execute("return document.body.dataset.view", &[])?,
        "settings"
    );

    // A bad server address is refused with a message and nothing is written (the file holds
    // only what the app kept at its start: the built-in servers' ports).
    let before = std::fs::read_to_string(config_dir.join("settings.json")).ok();
    s.execute(
        "document.getElementById('rooms-url').value = 'localhost:8080'",
        &[],
    )?;
    s.click(&s.find("#save-settings")?)?;
    let toast = s.find("#toast")?;
    let message = wait_for("the error toast", Duration::from_secs(5), || {
        s.text(&toast).ok().filter(|t| !t.is_empty())
    })?;
    assert!(message.contains("http(s)://"), "{message}");
    assert_eq!(
        std::fs::read_to_string(config_dir.join("settings.json")).ok(),
        before
    );
    assert!(!before.unwrap_or_default().contains("localhost:8080"));

    // Private mode (issue 21): on in random chat, off in rooms by default; switched on for
    // rooms, it is kept.
    let private = s.execute(
        "return [document.getElementById('private-random').checked, \
         document.getElementById('private-rooms').checked]",
        &[],
    )?;
    assert_eq!(private, serde_json::json!([true, false]), "{private}");
    s.execute(
        "document.getElementById('rooms-url').value = ''; \
         document.getElementById('private-rooms').checked = true",
        &[],
    )?;
    s.click(&s.find("#save-settings")?)?;
    wait_for(
        "private mode in rooms saved",
        Duration::from_secs(5),
        || {
            std::fs::read_to_string(config_dir.join("settings.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .filter(|v| v["privateRooms"] == true && v["privateRandom"] == true)
        },
    )?;

    // The microphone's processing (issue 19): each part on by default; a switch is kept.
    let processing = s.execute(
        "return ['set-aec', 'set-ns', 'set-agc'].map((id) => document.getElementById(id).checked)",
        &[],
    )?;
    assert_eq!(
        processing,
        serde_json::json!([true, true, true]),
        "{processing}"
    );
    s.click(&s.find("#set-agc")?)?;
    s.click(&s.find("#save-settings")?)?;
    wait_for("automatic gain off saved", Duration::from_secs(5), || {
        std::fs::read_to_string(config_dir.join("settings.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .filter(|v| v["autoGain"] == false && v["echoCancellation"] == true)
    })?;

    let shot = artifacts_dir()?.join("ui-settings.png");
    s.screenshot(&shot)?;
    ensure!(
        std::fs::metadata(&shot)?.len() > 1000,
        "screenshot is empty"
    );
    eprintln!("screenshot of the app window: {}", shot.display());

    // Back home, the display name is saved to the settings file.
    s.click(&s.find("#nav-home")?)?;
    s.execute(
        "document.getElementById('display-name').value = '  Ada Lovelace '",
        &[],
    )?;
    s.click(&s.find("#save-name")?)?;
    let saved = wait_for("the name in settings.json", Duration::from_secs(5), || {
        std::fs::read_to_string(config_dir.join("settings.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .filter(|v| v["displayName"] == "Ada Lovelace")
    })?;
    // The built-in servers' ports, kept from the start, are still there.
    assert!(
        saved["builtInPorts"]
            .as_array()
            .is_some_and(|p| p.iter().all(|p| p.as_u64().is_some_and(|p| p > 0))),
        "{saved}"
    );
    let greeting = s.find("#greeting-name")?;
    wait_for("the greeting", Duration::from_secs(5), || {
        s.text(&greeting)
            .ok()
            .filter(|t| t.contains("Ada Lovelace"))
    })?;
    let shot = artifacts_dir()?.join("ui-home.png");
    s.screenshot(&shot)?;
    eprintln!("screenshot of the app window: {}", shot.display());
    Ok(())
}

/// Issue 17: the room link row of a room on the built-in servers (an https link naming this
/// computer on the network), and Home's *Nearby* with a room another host on the network
/// lists (here a `liveloop-cli host` on this computer: mDNS reaches it as it would reach
/// another computer), joined in one click. Screenshots of both go to the artifacts.
#[test]
fn the_room_link_names_this_computer_and_home_lists_a_room_nearby() -> Result<()> {
    let mut cmd = std::process::Command::new(liveloop_e2e::workspace_bin("liveloop-cli")?);
    cmd.args(["host", "--list-room", "shown-nearby", "--seconds", "120"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _host = ChildGuard::spawn("nearby host", &mut cmd)?;
    let env = [
        ("LIVELOOP_VIDEO", "synthetic:320x180@15"),
        ("LIVELOOP_AUDIO", "synthetic"),
    ];
    let (_driver, s, _config_dir) = liveloop_e2e::app::open_app("ui-nearby", &env, None)?;
    let view = |v: &str| -> Result<()> {
        wait_for(&format!("the {v} view"), Duration::from_secs(20), || {
            (s.execute("return document.body.dataset.view", &[]).ok()? == v).then_some(())
        })
    };
    view("home")?;

    // A room of our own: its link is https, on this computer's network address.
    s.click(&s.find("#create-room")?)?;
    view("call")?;
    let link = wait_for("the room link", Duration::from_secs(10), || {
        let v = s
            .execute("return document.getElementById('room-link').value", &[])
            .ok()?;
        v.as_str().filter(|l| !l.is_empty()).map(str::to_owned)
    })?;
    ensure!(
        link.starts_with("https://") && !link.contains("127.0.0.1") && link.contains("/r/"),
        "the room link: {link}"
    );
    let note = s.text(&s.find("#room-link-note")?)?;
    ensure!(note.contains("your network"), "{note}");
    ensure!(
        s.displayed(&s.find("#room-listed-row")?)?,
        "no switch to list the room"
    );
    s.screenshot(&artifacts_dir()?.join("ui-room-link.png"))?;
    s.click(&s.find("#btn-hangup")?)?;
    view("home")?;

    // Nearby: the host's listed room, joined in one click (a server we have not set up: the
    // app asks first).
    let card = s.find("#nearby-card")?;
    wait_for("the room nearby", Duration::from_secs(15), || {
        let shown = s.displayed(&card).ok()? && s.text(&card).ok()?.contains("shown-nearby");
        shown.then_some(())
    })?;
    s.screenshot(&artifacts_dir()?.join("ui-home-nearby.png"))?;
    s.click(&s.find("#nearby-list button")?)?;
    let join = s.find("#link-join")?;
    let asked = wait_for(
        "the join prompt or the call",
        Duration::from_secs(10),
        || {
            if s.displayed(&join).ok()? {
                return Some(true);
            }
            let v = s.execute("return document.body.dataset.view", &[]).ok()?;
            (v == "call").then_some(false)
        },
    )?;
    eprintln!("asked before joining: {asked}");
    if asked {
        s.click(&join)?;
    }
    view("call")?;
    let title = s.text(&s.find("#call-title")?)?;
    ensure!(title.contains("shown-nearby"), "{title}");
    Ok(())
}
