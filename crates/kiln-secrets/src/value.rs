//! The [`Secret`] value: a string that redacts itself in `Display`, `Debug` and
//! serialization and is zeroized when dropped. The only way to read it is
//! [`Secret::expose`], which makes every place that handles a secret easy to find.

use std::fmt;

use zeroize::Zeroizing;

/// What a secret shows instead of its value.
pub const REDACTED: &str = "<redacted>";

/// A secret value. Cloning copies the value; every copy is zeroized on drop. Equality
/// compares in constant time (for equal lengths).
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret value itself. Call it only where the value must go: an encrypted
    /// file, a file on a host with a restrictive mode, the stdin of a process.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_debug_never_show_the_value() {
        let s = Secret::new("hunter2-planted");
        assert_eq!(format!("{s}"), REDACTED);
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{:#?}", vec![s.clone()]).contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-planted");
    }

    #[test]
    fn equality_compares_values() {
        assert_eq!(Secret::new("abc"), Secret::new("abc"));
        assert_ne!(Secret::new("abc"), Secret::new("abd"));
        assert_ne!(Secret::new("abc"), Secret::new("abcd"));
    }

    #[test]
    fn serialization_never_shows_the_value() {
        #[derive(serde::Serialize)]
        struct Config {
            password: Secret,
        }
        let json = serde_json::to_string(&Config {
            password: Secret::new("hunter2-planted"),
        })
        .unwrap();
        assert_eq!(json, r#"{"password":"<redacted>"}"#);
    }
}
