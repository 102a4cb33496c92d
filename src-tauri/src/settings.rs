//! The user's settings, persisted as JSON in the app's configuration folder.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::AppError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    /// The name others see.
    pub display_name: String,
    /// Matchmaking server base URL; empty means the built-in one.
    pub matchmaking_url: String,
    /// Room server base URL; empty means the built-in one.
    pub rooms_url: String,
    /// The built-in servers listen on this computer only (loopback), not on the network.
    pub built_in_this_computer_only: bool,
    /// The built-in servers' ports (matchmaking, rooms), chosen at the first launch and kept so
    /// that a shared link stays valid; 0: not chosen yet.
    pub built_in_ports: [u16; 2],
    /// The built-in room service's HTTPS port (for browser guests), kept as the others; 0: not
    /// chosen yet.
    pub built_in_https_port: u16,
    /// Device ids from the pickers; empty means the system default.
    pub camera: String,
    pub microphone: String,
    pub speaker: String,
    /// Where recordings go; empty means `Videos/LiveLoop` in the home folder.
    pub recording_dir: String,
    /// Your picture (a small JPEG data URL taken from the camera), or empty.
    pub avatar: String,
    /// Private mode in random chat (on by default: a stranger never learns your address) and
    /// in rooms (off by default: you know who is there, and a direct path is faster): relay
    /// candidates only, through the server's TURN relay; without one it cannot apply.
    pub private_random: bool,
    pub private_rooms: bool,
    /// The microphone's processing, each part on by default as in every calling app; the
    /// in-call audio menu changes them too, and they are remembered.
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    pub auto_gain: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            display_name: String::new(),
            matchmaking_url: String::new(),
            rooms_url: String::new(),
            built_in_this_computer_only: false,
            built_in_ports: [0, 0],
            built_in_https_port: 0,
            camera: String::new(),
            microphone: String::new(),
            speaker: String::new(),
            recording_dir: String::new(),
            avatar: String::new(),
            private_random: true,
            private_rooms: false,
            echo_cancellation: true,
            noise_suppression: true,
            auto_gain: true,
        }
    }
}

impl Settings {
    /// The microphone's processing these settings ask for.
    #[must_use]
    pub fn audio_processing(&self) -> liveloop_media::processing::ProcessingSettings {
        liveloop_media::processing::ProcessingSettings {
            echo_cancellation: self.echo_cancellation,
            noise_suppression: self.noise_suppression,
            auto_gain: self.auto_gain,
        }
    }

    /// Reads the settings file; a missing or unreadable file gives the defaults (and a log
    /// line), never a failed start.
    #[must_use]
    pub fn load(path: &Path) -> Self {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "settings file unreadable; using defaults");
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }

    /// Trims and checks every field.
    ///
    /// # Errors
    /// [`AppError::InvalidSetting`] naming the field.
    pub fn validated(mut self) -> Result<Self, AppError> {
        self.display_name = self.display_name.trim().to_owned();
        if self.display_name.chars().count() > 64 {
            return Err(AppError::InvalidSetting(
                "the display name is longer than 64 characters".into(),
            ));
        }
        for (label, url) in [
            ("matchmaking", &mut self.matchmaking_url),
            ("room", &mut self.rooms_url),
        ] {
            *url = url.trim().trim_end_matches('/').to_owned();
            let ok = url.is_empty()
                || ["http://", "https://"]
                    .iter()
                    .any(|p| url.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
            if !ok {
                return Err(AppError::InvalidSetting(format!(
                    "the {label} server must be empty (built-in) or an http(s):// address"
                )));
            }
        }
        for id in [&mut self.camera, &mut self.microphone, &mut self.speaker] {
            *id = id.trim().to_owned();
            if id.len() > 512 {
                return Err(AppError::InvalidSetting("a device id is too long".into()));
            }
        }
        if !(self.avatar.is_empty()
            || (self.avatar.starts_with("data:image/jpeg;base64,")
                && self.avatar.len() <= 64 * 1024))
        {
            return Err(AppError::InvalidSetting(
                "the picture must be a JPEG data URL of at most 64 KB".into(),
            ));
        }
        self.recording_dir = self.recording_dir.trim().to_owned();
        if !self.recording_dir.is_empty() && !Path::new(&self.recording_dir).is_absolute() {
            return Err(AppError::InvalidSetting(
                "the recording folder must be a full path (or empty for the default)".into(),
            ));
        }
        Ok(self)
    }

    /// Writes the settings atomically (temporary file, then rename).
    ///
    /// # Errors
    /// When the folder or file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), AppError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_trims_and_refuses_bad_urls() {
        let s = Settings {
            display_name: "  Ada ".into(),
            matchmaking_url: "http://h:3000/".into(),
            ..Settings::default()
        };
        let v = s.validated().ok();
        assert_eq!(v.as_ref().map(|s| s.display_name.as_str()), Some("Ada"));
        assert_eq!(
            v.as_ref().map(|s| s.matchmaking_url.as_str()),
            Some("http://h:3000")
        );
        for bad in ["ftp://x", "http://", "localhost:3000"] {
            let s = Settings {
                rooms_url: bad.into(),
                ..Settings::default()
            };
            assert!(s.validated().is_err(), "{bad}");
        }
        let relative = Settings {
            recording_dir: "videos".into(),
            ..Settings::default()
        };
        assert!(relative.validated().is_err());
        let absolute = Settings {
            recording_dir: " /tmp/rec ".into(),
            ..Settings::default()
        };
        assert_eq!(
            absolute.validated().ok().map(|s| s.recording_dir),
            Some("/tmp/rec".into())
        );
    }

    #[test]
    fn save_then_load_round_trips_and_bad_files_give_defaults() {
        let dir = std::env::temp_dir().join(format!("liveloop-settings-{}", std::process::id()));
        let path = dir.join("settings.json");
        let s = Settings {
            display_name: "Ada".into(),
            ..Settings::default()
        };
        assert!(s.save(&path).is_ok());
        assert_eq!(Settings::load(&path), s);
        assert!(std::fs::write(&path, "{not json").is_ok());
        assert_eq!(Settings::load(&path), Settings::default());
        // A settings file from before private mode: on in random chat, off in rooms.
        assert!(std::fs::write(&path, r#"{"displayName":"Ada"}"#).is_ok());
        let old = Settings::load(&path);
        assert!(old.private_random && !old.private_rooms);
        let _ = std::fs::remove_dir_all(dir);
    }
}
