//! The LiveLoop desktop app.
// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    if let Err(error) = liveloop::run() {
        eprintln!("liveloop: {error:#}");
        std::process::exit(1);
    }
}
