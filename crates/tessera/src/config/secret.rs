//! Wrappers for configuration values that must never reach a log line or a printed config.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

/// What every redacted value prints as.
pub const REDACTED: &str = "[redacted]";

/// A secret string (master key, HMAC secret, …).
///
/// `Debug`, `Display` and `Serialize` all print [`REDACTED`]; the only way to the value is
/// [`Secret::expose`], which makes every use greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call it only where the value is used, never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

impl JsonSchema for Secret {
    fn schema_name() -> Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // `writeOnly` is how the generated documentation knows to never print a value.
        json_schema!({ "type": "string", "writeOnly": true })
    }
}

/// A database connection URL whose password is redacted wherever it is printed.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(Url);

impl DatabaseUrl {
    /// Parses and checks the scheme: `sqlite:` or `postgres:`/`postgresql:`.
    pub fn parse(value: &str) -> Result<Self, String> {
        let url = Url::parse(value).map_err(|e| format!("not a URL ({e})"))?;
        match url.scheme() {
            "sqlite" | "postgres" | "postgresql" => Ok(Self(url)),
            other => Err(format!(
                "unsupported scheme `{other}`: expected sqlite://PATH or postgres://USER@HOST/DB"
            )),
        }
    }

    /// The full URL including any password, for connecting.
    pub fn expose(&self) -> &Url {
        &self.0
    }

    /// Whether this URL points at PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.0.scheme(), "postgres" | "postgresql")
    }

    /// The URL with its password replaced, safe to print.
    pub fn redacted(&self) -> String {
        let mut url = self.0.clone();
        if url.password().is_some() {
            // Only fails for URLs that cannot have a password, which then have none to hide.
            let _ = url.set_password(Some(REDACTED));
        }
        url.to_string()
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        DatabaseUrl::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for DatabaseUrl {
    fn schema_name() -> Cow<'static, str> {
        "DatabaseUrl".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "format": "database-url" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_their_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(
            serde_json::to_string(&secret).expect("serializes"),
            "\"[redacted]\""
        );
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn database_url_hides_the_password_but_keeps_it_for_connecting() {
        let url = DatabaseUrl::parse("postgres://app:s3cret@db.internal:5432/tessera").expect("ok");
        assert!(url.is_postgres());
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(!url.to_string().contains("s3cret"));
        assert_eq!(url.expose().password(), Some("s3cret"));
    }

    #[test]
    fn database_url_rejects_other_schemes() {
        let err = DatabaseUrl::parse("mysql://localhost/x").expect_err("rejected");
        assert!(err.contains("mysql"), "{err}");
        assert!(DatabaseUrl::parse("not a url").is_err());
    }
}
