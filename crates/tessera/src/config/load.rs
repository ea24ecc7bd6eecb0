//! Loading: defaults → TOML file → `TESSERA_*` environment, every problem reported at once.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use url::Url;

use super::schema::{ENV_PREFIX, Field, Kind, find, schema};
use super::{Config, DatabaseUrl, FLAG_ENV_PREFIX, validate};

/// The file read when neither `--config` nor `TESSERA_CONFIG` names one.
pub const DEFAULT_FILE: &str = "tessera.toml";

/// `TESSERA_*` variables that are not config keys: the config path itself, the one-time
/// bootstrap admin, and the test suite's.
const NOT_SETTINGS: &[&str] = &[
    "TESSERA_CONFIG",
    "TESSERA_BOOTSTRAP_ADMIN_",
    "TESSERA_TEST_",
];

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The config file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Env(name) => f.write_str(name),
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key, when the problem is about one key.
    pub key: Option<String>,
    /// Where the offending value was set.
    pub source: Option<Source>,
    /// What is wrong and what is expected.
    pub message: String,
}

impl Problem {
    pub(super) fn key(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: Some(key.to_owned()),
            source: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.key, &self.source) {
            (Some(key), Some(source)) => write!(f, "`{key}` (set by {source}): {}", self.message),
            (Some(key), None) => write!(f, "`{key}`: {}", self.message),
            (None, Some(source)) => write!(f, "{source}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// The configuration is unusable; every problem found is listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Everything wrong, in the order found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.problems.len()
        )?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Loads the configuration from the process: the file named by `explicit` (from `--config` or
/// `TESSERA_CONFIG`), else `./tessera.toml` when it exists, then the environment.
pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
    let file = match explicit {
        Some(path) => Some(read_file(path)?),
        None if Path::new(DEFAULT_FILE).is_file() => Some(read_file(Path::new(DEFAULT_FILE))?),
        None => None,
    };
    load_from(file, std::env::vars())
}

fn read_file(path: &Path) -> Result<(PathBuf, String), ConfigError> {
    std::fs::read_to_string(path)
        .map(|text| (path.to_owned(), text))
        .map_err(|e| ConfigError {
            problems: vec![Problem {
                key: None,
                source: Some(Source::File(path.to_owned())),
                message: format!("cannot read the config file: {e}"),
            }],
        })
}

/// Loads from an already-read file (path and text) and a set of environment variables.
pub fn load_from(
    file: Option<(PathBuf, String)>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut loader = Loader::default();
    if let Some((path, text)) = file {
        loader.add_file(path, &text);
    }
    let mut env: Vec<(String, String)> = env.into_iter().collect();
    env.sort();
    for (name, value) in env {
        loader.add_env(&name, &value);
    }
    loader.finish()
}

#[derive(Default)]
struct Loader {
    tree: Map<String, Value>,
    sources: BTreeMap<String, Source>,
    problems: Vec<Problem>,
    /// `TESSERA_FLAG_<KEY>` variables, for the flags capability to check and apply.
    flag_env: BTreeMap<String, String>,
}

impl Loader {
    fn add_file(&mut self, path: PathBuf, text: &str) {
        let source = Source::File(path);
        let table: toml::Table = match toml::from_str(text) {
            Ok(table) => table,
            Err(e) => {
                let message = format!("not valid TOML: {}", e.message());
                let at = e
                    .span()
                    .map(|span| line_col(text, span.start))
                    .map(|(l, c)| format!(" (line {l}, column {c})"))
                    .unwrap_or_default();
                self.problem(None, &source, format!("{message}{at}"));
                return;
            }
        };
        let mut value = match serde_json::to_value(table) {
            Ok(Value::Object(map)) => map,
            _ => {
                self.problem(None, &source, "holds values that are not settings");
                return;
            }
        };
        if let Some(flags) = value.remove("flags") {
            self.add_flags(flags, &source);
        }
        self.merge_section(schema(), "", value, &source);
    }

    /// `[flags.<key>]` tables: keys of their own choosing, kept as written; the flags
    /// capability checks each one.
    fn add_flags(&mut self, flags: Value, source: &Source) {
        let Value::Object(flags) = flags else {
            self.problem(
                Some("flags"),
                source,
                "expected a table of `[flags.<key>]` tables",
            );
            return;
        };
        let mut accepted = Map::new();
        for (key, value) in flags {
            let path = format!("flags.{key}");
            if value.is_object() {
                accepted.insert(key, value);
                self.sources.insert(path, source.clone());
            } else {
                self.problem(Some(&path), source, "expected a table describing the flag");
            }
        }
        self.tree
            .insert("flags".to_owned(), Value::Object(accepted));
    }

    fn merge_section(
        &mut self,
        fields: &[Field],
        prefix: &str,
        values: Map<String, Value>,
        source: &Source,
    ) {
        for (name, value) in values {
            let path = join(prefix, &name);
            let Some(field) = fields.iter().find(|f| f.name == name) else {
                let known: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
                let message = format!("unknown key; expected one of: {}", known.join(", "));
                self.problem(Some(&path), source, message);
                continue;
            };
            match (&field.kind, value) {
                (Kind::Section(children), Value::Object(map)) => {
                    self.merge_section(children, &path, map, source)
                }
                (Kind::Section(_), _) => {
                    self.problem(Some(&path), source, "expected a table of settings")
                }
                (kind, value) => match check(kind, &value) {
                    Ok(()) => self.set(&path, value, source),
                    Err(expected) => {
                        let message = format!("expected {expected}, got {}", shown(field, &value));
                        self.problem(Some(&path), source, message)
                    }
                },
            }
        }
    }

    fn add_env(&mut self, name: &str, raw: &str) {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            return;
        };
        if NOT_SETTINGS.iter().any(|n| name.starts_with(n)) {
            return;
        }
        if name.starts_with(FLAG_ENV_PREFIX) {
            self.flag_env.insert(name.to_owned(), raw.to_owned());
            return;
        }
        let source = Source::Env(name.to_owned());
        let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        let path = segments.join(".");
        let refs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let Some(field) = find(schema(), &refs) else {
            self.problem(Some(&path), &source, "unknown key");
            return;
        };
        if let Kind::Section(_) = field.kind {
            let message = format!("is a section; set its keys as {name}__<KEY>");
            self.problem(Some(&path), &source, message);
            return;
        }
        let outcome = coerce(&field.kind, raw).and_then(|v| check(&field.kind, &v).map(|()| v));
        match outcome {
            Ok(value) => self.set(&path, value, &source),
            Err(expected) => {
                let got = if field.secret { "a secret" } else { raw };
                let message = format!("expected {expected}, got {got:?}");
                self.problem(Some(&path), &source, message)
            }
        }
    }

    fn set(&mut self, path: &str, value: Value, source: &Source) {
        let mut segments: Vec<&str> = path.split('.').collect();
        let Some(last) = segments.pop() else { return };
        let mut map = &mut self.tree;
        for segment in segments {
            let entry = map
                .entry(segment.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            let Value::Object(next) = entry else { return };
            map = next;
        }
        map.insert(last.to_owned(), value);
        self.sources.insert(path.to_owned(), source.clone());
    }

    fn problem(&mut self, key: Option<&str>, source: &Source, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.map(str::to_owned),
            source: Some(source.clone()),
            message: message.into(),
        });
    }

    fn finish(mut self) -> Result<Config, ConfigError> {
        super::secret_files::resolve(&mut self.tree, &mut self.sources, &mut self.problems);
        let mut config: Config = match serde_json::from_value(Value::Object(self.tree)) {
            Ok(config) => config,
            Err(e) => {
                // Every value was checked against the schema first, so this is a rule the
                // schema cannot express; report it with the rest.
                self.problems.push(Problem {
                    key: None,
                    source: None,
                    message: e.to_string(),
                });
                return Err(ConfigError {
                    problems: self.problems,
                });
            }
        };
        config.flag_env = self.flag_env;
        let reported: Vec<String> = self.problems.iter().filter_map(|p| p.key.clone()).collect();
        for mut problem in validate::check(&config) {
            let Some(key) = problem.key.as_deref() else {
                self.problems.push(problem);
                continue;
            };
            // A key whose value was already rejected fell back to its default; checking the
            // default would only add noise.
            if reported.iter().any(|r| r == key) {
                continue;
            }
            problem.source = self.sources.get(key).cloned();
            self.problems.push(problem);
        }
        if self.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                problems: self.problems,
            })
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn shown(field: &Field, value: &Value) -> String {
    if field.secret {
        "a secret".to_owned()
    } else {
        value.to_string()
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    // Spans are byte offsets; `get` keeps a bad one from panicking on a character boundary.
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// Turns an environment string into a value of the expected kind; `Err` says what was expected.
fn coerce(kind: &Kind, raw: &str) -> Result<Value, String> {
    match kind {
        Kind::String { .. } | Kind::Enum(_) => Ok(Value::String(raw.to_owned())),
        Kind::Integer { .. } => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| expected(kind)),
        Kind::Number => raw
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| expected(kind)),
        Kind::Bool => match raw.trim() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(expected(kind)),
        },
        Kind::List(inner) => {
            let trimmed = raw.trim();
            if trimmed.starts_with('[') {
                let doc: toml::Table = toml::from_str(&format!("v = {trimmed}"))
                    .map_err(|_| format!("{} (a TOML array)", expected(kind)))?;
                return serde_json::to_value(&doc["v"]).map_err(|_| expected(kind));
            }
            trimmed
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| coerce(inner, item))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        Kind::Section(_) => Err(expected(kind)),
    }
}

/// Checks a value against its kind; `Err` says what was expected.
fn check(kind: &Kind, value: &Value) -> Result<(), String> {
    let ok = match (kind, value) {
        (Kind::String { format }, Value::String(s)) => match format.as_deref() {
            Some("uri") => Url::parse(s).is_ok(),
            Some("socket-address") => s.parse::<SocketAddr>().is_ok(),
            Some("database-url") => return DatabaseUrl::parse(s).map(|_| ()),
            _ => true,
        },
        (Kind::Integer { min, max }, Value::Number(n)) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .is_some_and(|n| (*min..=*max).contains(&n)),
        (Kind::Number, Value::Number(_)) | (Kind::Bool, Value::Bool(_)) => true,
        (Kind::Enum(variants), Value::String(s)) => variants.iter().any(|(v, _)| v == s),
        (Kind::List(inner), Value::Array(items)) => {
            for item in items {
                check(inner, item).map_err(|e| format!("a list of {e}"))?;
            }
            true
        }
        _ => false,
    };
    if ok { Ok(()) } else { Err(expected(kind)) }
}

/// A phrase for what a kind of key accepts, used in errors and in the generated docs.
pub(super) fn expected(kind: &Kind) -> String {
    match kind {
        Kind::Section(_) => "a table of settings".to_owned(),
        Kind::String { format } => match format.as_deref() {
            Some("uri") => "a URL such as https://auth.example.com".to_owned(),
            Some("socket-address") => "an address and port such as 127.0.0.1:8080".to_owned(),
            Some("database-url") => "a database URL (sqlite://PATH or postgres://…)".to_owned(),
            _ => "a string".to_owned(),
        },
        Kind::Integer { min, max } if *max >= i128::from(i64::MAX) => {
            format!("an integer ≥ {min}")
        }
        Kind::Integer { min, max } => format!("an integer from {min} to {max}"),
        Kind::Number => "a number".to_owned(),
        Kind::Bool => "true or false".to_owned(),
        Kind::Enum(variants) => {
            let names: Vec<&str> = variants.iter().map(|(v, _)| v.as_str()).collect();
            format!("one of {}", names.join(", "))
        }
        Kind::List(inner) => format!("a list of {}", plural(&expected(inner))),
    }
}

fn plural(phrase: &str) -> String {
    phrase
        .strip_prefix("a ")
        .or_else(|| phrase.strip_prefix("an "))
        .map(|rest| format!("{rest}s"))
        .unwrap_or_else(|| phrase.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Environment, LogFormat};

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn file(text: &str) -> Option<(PathBuf, String)> {
        Some((PathBuf::from("tessera.toml"), text.to_owned()))
    }

    fn problems(result: Result<Config, ConfigError>) -> Vec<Problem> {
        result.expect_err("configuration is rejected").problems
    }

    #[test]
    fn nothing_set_gives_the_defaults() {
        let config = load_from(None, env(&[("PATH", "/bin")])).expect("defaults are valid");
        assert_eq!(config, Config::default());
    }

    #[test]
    fn file_overrides_defaults_and_environment_overrides_file() {
        let text = "[http]\nbind = \"0.0.0.0:9000\"\nrequest_timeout_secs = 5\n";
        let vars = env(&[
            ("TESSERA_HTTP__BIND", "127.0.0.1:7000"),
            ("TESSERA_LOG__FORMAT", "json"),
        ]);
        let config = load_from(file(text), vars).expect("valid");
        assert_eq!(config.http.bind.to_string(), "127.0.0.1:7000");
        assert_eq!(config.http.request_timeout_secs, 5);
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.http.body_limit_bytes, 1024 * 1024);
    }

    #[test]
    fn environment_values_are_typed_by_the_schema() {
        let vars = env(&[
            ("TESSERA_DATABASE__MAX_CONNECTIONS", "3"),
            ("TESSERA_DATABASE__MIGRATE_ON_START", "false"),
            (
                "TESSERA_HTTP__CORS_ALLOWED_ORIGINS",
                "https://a.example, https://b.example",
            ),
            ("TESSERA_LOG__LEVEL", "123"),
        ]);
        let config = load_from(None, vars).expect("valid");
        assert_eq!(config.database.max_connections, 3);
        assert!(!config.database.migrate_on_start);
        assert_eq!(
            config.http.cors_allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(config.log.level, "123");
    }

    #[test]
    fn list_in_environment_may_be_a_toml_array() {
        let vars = env(&[(
            "TESSERA_HTTP__CORS_ALLOWED_ORIGINS",
            r#"["https://a.example"]"#,
        )]);
        let config = load_from(None, vars).expect("valid");
        assert_eq!(config.http.cors_allowed_origins, ["https://a.example"]);
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors_naming_the_key() {
        let found = problems(load_from(
            file("enviroment = \"production\"\n[http]\nbnd = \"x\"\n[nope]\n"),
            env(&[]),
        ));
        let keys: Vec<_> = found.iter().filter_map(|p| p.key.as_deref()).collect();
        assert_eq!(keys, ["enviroment", "http.bnd", "nope"]);
        assert!(found[0].message.contains("unknown key"));
        assert!(found[0].message.contains("environment"), "lists known keys");
    }

    #[test]
    fn unknown_environment_variables_are_errors_but_not_the_reserved_ones() {
        let found = problems(load_from(
            None,
            env(&[
                ("TESSERA_DATABSE__URL", "sqlite://x.db"),
                ("TESSERA_CONFIG", "/etc/tessera.toml"),
                ("TESSERA_TEST_POSTGRES_URL", "postgres://x"),
            ]),
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key.as_deref(), Some("databse.url"));
        assert_eq!(
            found[0].source,
            Some(Source::Env("TESSERA_DATABSE__URL".into()))
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = "environment = \"prod\"\n[http]\nbind = \"localhost\"\nbody_limit_bytes = 0\n\
                    request_timeout_secs = \"ten\"\n[database]\nurl = \"mysql://x\"\n\
                    migrate_on_start = \"yes\"\n";
        let found = problems(load_from(
            file(text),
            env(&[("TESSERA_DATABASE__MAX_CONNECTIONS", "many")]),
        ));
        let keys: Vec<_> = found.iter().filter_map(|p| p.key.as_deref()).collect();
        for key in [
            "environment",
            "http.bind",
            "http.body_limit_bytes",
            "http.request_timeout_secs",
            "database.url",
            "database.migrate_on_start",
            "database.max_connections",
        ] {
            assert!(keys.contains(&key), "{key} missing from {found:#?}");
        }
        let rendered = ConfigError { problems: found }.to_string();
        assert!(rendered.contains("one of development, staging, production"));
        assert!(rendered.contains("an integer ≥ 1"));
        assert!(rendered.contains("TESSERA_DATABASE__MAX_CONNECTIONS"));
    }

    #[test]
    fn malformed_toml_names_the_file_and_line() {
        let found = problems(load_from(file("[http\nbind = 1"), env(&[])));
        assert_eq!(found.len(), 1);
        let text = found[0].to_string();
        assert!(text.starts_with("tessera.toml: not valid TOML"), "{text}");
        assert!(text.contains("line 1"), "{text}");
    }

    #[test]
    fn a_section_set_as_a_value_is_an_error() {
        let found = problems(load_from(file("http = 3"), env(&[("TESSERA_LOG", "x")])));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found
                .iter()
                .any(|p| p.message.contains("TESSERA_LOG__<KEY>"))
        );
    }

    #[test]
    fn secrets_are_not_echoed_in_errors() {
        let found = problems(load_from(
            file("master_key = 42"),
            env(&[("TESSERA_ENVIRONMENT", "staging")]),
        ));
        assert!(!found[0].to_string().contains("42"), "{found:?}");
    }

    #[test]
    fn production_environment_is_accepted_when_fully_configured() {
        let vars = env(&[
            ("TESSERA_ENVIRONMENT", "production"),
            ("TESSERA_PUBLIC_URL", "https://auth.example.com"),
            (
                "TESSERA_MASTER_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
            ("TESSERA_DATABASE__URL", "postgres://tessera@db/tessera"),
            (
                "TESSERA_HTTP__CORS_ALLOWED_ORIGINS",
                "https://app.example.com",
            ),
        ]);
        let config = load_from(None, vars).expect("valid");
        assert_eq!(config.environment, Environment::Production);
    }
}
