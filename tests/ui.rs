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
