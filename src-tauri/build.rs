//! The app's Tauri config lives at the workspace root (`../tauri.conf.json`), so the
//! build script is pointed at it explicitly instead of a copy in this folder.

fn main() {
    // tauri-build does not always notice edited capability files; this makes cargo rerun it.
    println!("cargo:rerun-if-changed=capabilities");
    let attributes = tauri_build::Attributes::new()
        .config_path("../tauri.conf.json")
        .capabilities_path_pattern("./capabilities/**/*");
    if let Err(error) = tauri_build::try_build(attributes) {
        // A build script reports failure by exiting non-zero; printing the cause is all we can add.
        eprintln!("tauri-build failed: {error:#}");
        std::process::exit(1);
    }
}
