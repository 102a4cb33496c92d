//! The one error type commands return; the UI shows `message`.

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    #[error("{0}")]
    InvalidSetting(String),
    #[error("could not save settings: {0}")]
    Save(#[from] std::io::Error),
}

impl Serialize for AppError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let kind = match self {
            Self::InvalidSetting(_) => "invalidSetting",
            Self::Save(_) => "save",
        };
        let mut st = s.serialize_struct("AppError", 2)?;
        st.serialize_field("kind", kind)?;
        st.serialize_field("message", &self.to_string())?;
        st.end()
    }
}
