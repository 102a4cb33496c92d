//! Just enough of the W3C WebDriver protocol to drive the app through tauri-driver.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A WebDriver session against the app window.
#[derive(Debug)]
pub struct Session {
    base: String,
    id: String,
    agent: ureq::Agent,
}

/// An element handle.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Session {
    /// Opens a session that launches `application` (tauri-driver's `tauri:options`).
    ///
    /// # Errors
    /// When the driver refuses or the app does not start.
    pub fn start(driver_port: u16, application: &Path) -> Result<Self> {
        Self::start_with_args(driver_port, application, &[])
    }

    /// [`Session::start`], passing `args` to the application.
    ///
    /// # Errors
    /// When the driver refuses or the app does not start.
    pub fn start_with_args(driver_port: u16, application: &Path, args: &[&str]) -> Result<Self> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        let base = format!("http://127.0.0.1:{driver_port}");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "wry",
            "tauri:options": {"application": application, "args": args},
        }}});
        let mut s = Self {
            base,
            id: String::new(),
            agent,
        };
        let value = s.call("POST", "/session", Some(caps))?;
        s.id = value["sessionId"]
            .as_str()
            .context("no sessionId in the new-session reply")?
            .to_owned();
        Ok(s)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut response = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, body) => self
                .agent
                .post(&url)
                .send_json(body.unwrap_or_else(|| json!({}))),
        }
        .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let reply: Value = response
            .body_mut()
            .read_json()
            .with_context(|| format!("{method} {path}: reply is not JSON"))?;
        if !status.is_success() {
            bail!("{method} {path} failed with {status}: {}", reply["value"]);
        }
        Ok(reply["value"].clone())
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.id)
    }

    /// # Errors
    /// On a driver error.
    pub fn title(&self) -> Result<String> {
        Ok(self
            .call("GET", &self.session_path("/title"), None)?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// The first element matching a CSS selector.
    ///
    /// # Errors
    /// When nothing matches.
    pub fn find(&self, css: &str) -> Result<Element> {
        let v = self.call(
            "POST",
            &self.session_path("/element"),
            Some(json!({"using": "css selector", "value": css})),
        )?;
        let id = v[ELEMENT_KEY]
            .as_str()
            .with_context(|| format!("no element for {css}: {v}"))?;
        Ok(Element(id.to_owned()))
    }

    /// # Errors
    /// On a driver error.
    pub fn click(&self, el: &Element) -> Result<()> {
        self.call(
            "POST",
            &self.session_path(&format!("/element/{}/click", el.0)),
            None,
        )
        .map(drop)
    }

    /// # Errors
    /// On a driver error.
    pub fn text(&self, el: &Element) -> Result<String> {
        Ok(self
            .call(
                "GET",
                &self.session_path(&format!("/element/{}/text", el.0)),
                None,
            )?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// # Errors
    /// On a driver error.
    pub fn displayed(&self, el: &Element) -> Result<bool> {
        Ok(self
            .call(
                "GET",
                &self.session_path(&format!("/element/{}/displayed", el.0)),
                None,
            )?
            .as_bool()
            .unwrap_or(false))
    }

    /// Runs synchronous JavaScript in the page and returns its result.
    ///
    /// # Errors
    /// On a script or driver error.
    pub fn execute(&self, script: &str, args: &[Value]) -> Result<Value> {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Saves a PNG of the window to `path`.
    ///
    /// # Errors
    /// When the driver cannot take it or the file cannot be written.
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let b64 = self.call("GET", &self.session_path("/screenshot"), None)?;
        let png = decode_base64(b64.as_str().unwrap_or_default())?;
        std::fs::write(path, png).with_context(|| format!("cannot write {}", path.display()))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.id.is_empty() {
            let _ = self.call("DELETE", &self.session_path(""), None);
        }
    }
}

/// Standard base64 (the screenshot encoding).
fn decode_base64(text: &str) -> Result<Vec<u8>> {
    use base64::Engine as _;
    let text: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .context("screenshot is not base64")
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64() {
        assert_eq!(
            super::decode_base64("aGVsbG8g\nd29ybGQ=").ok(),
            Some(b"hello world".to_vec())
        );
        assert!(super::decode_base64("a*b").is_err());
    }
}
