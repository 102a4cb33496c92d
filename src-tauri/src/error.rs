//! The one error type commands return; the UI shows `message`.

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    #[error("{0}")]
    InvalidSetting(String),
    #[error("could not save settings: {0}")]
    Save(#[from] std::io::Error),
    #[error("{0}")]
    InvalidLink(String),
    #[error("{0}")]
    Call(String),
    #[error("you are not in a call")]
    NoCall,
}

impl Serialize for AppError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let kind = match self {
            Self::InvalidSetting(_) => "invalidSetting",
            Self::Save(_) => "save",
            Self::InvalidLink(_) => "invalidLink",
            Self::Call(_) => "call",
            Self::NoCall => "noCall",
        };
        let mut st = s.serialize_struct("AppError", 2)?;
        st.serialize_field("kind", kind)?;
        st.serialize_field("message", &self.to_string())?;
        st.end()
    }
}
