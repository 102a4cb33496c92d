//! Tauri commands: each one translates arguments to a domain call and back.

use tauri::State;

use crate::{AppError, AppState, Servers, Settings, settings};

/// Version and the signaling servers in use.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    pub version: &'static str,
    pub servers: Servers,
}

#[tauri::command]
pub fn app_status(state: State<'_, AppState>) -> AppStatus {
    AppStatus {
        version: env!("CARGO_PKG_VERSION"),
        servers: state.servers.clone(),
    }
}

#[tauri::command]
pub fn get_settings(state: State<'_, AppState>) -> Settings {
    crate::lock(&state.settings).clone()
}

/// Validates and persists the settings. Server changes apply at the next start.
#[tauri::command]
pub fn save_settings(
    state: State<'_, AppState>,
    settings: settings::Settings,
) -> Result<Settings, AppError> {
    let settings = settings.validated()?;
    settings.save(&state.settings_path)?;
    *crate::lock(&state.settings) = settings.clone();
    Ok(settings)
}
