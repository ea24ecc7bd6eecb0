//! The key tree of [`Config`](super::Config), derived from its types through `schemars`.
//!
//! Loading (type checks, unknown keys, environment coercion) and every generated document walk
//! this one tree, so a field added to the config types is validated and documented without
//! touching anything else.

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

use super::Config;

/// Prefix of every environment variable that sets a config key.
pub const ENV_PREFIX: &str = "TESSERA_";

/// One config key: a section or a value.
#[derive(Debug, Clone)]
pub struct Field {
    /// Dotted path from the root, such as `http.bind`.
    pub path: String,
    /// The last segment of the path.
    pub name: String,
    /// The field's `///` documentation.
    pub description: String,
    /// What the key holds.
    pub kind: Kind,
    /// Default value; `None` for optional keys that are unset by default.
    pub default: Option<Value>,
    /// Whether the key may be left unset.
    pub optional: bool,
    /// Whether the value is a secret that must never be printed.
    pub secret: bool,
}

/// What a config key holds.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A table of further keys.
    Section(Vec<Field>),
    /// Text, optionally with a format checked at load time (`uri`, `socket-address`, …).
    String {
        /// The `format` named in the schema, if any.
        format: Option<String>,
    },
    /// A whole number within bounds.
    Integer {
        /// Smallest accepted value.
        min: i128,
        /// Largest accepted value.
        max: i128,
    },
    /// A floating-point number.
    Number,
    /// `true` or `false`.
    Bool,
    /// One of a fixed set of strings, each with its documentation.
    Enum(Vec<(String, String)>),
    /// A list of values of one kind.
    List(Box<Kind>),
}

impl Field {
    /// The fields of a section, or an empty slice for a value.
    pub fn children(&self) -> &[Field] {
        match &self.kind {
            Kind::Section(fields) => fields,
            _ => &[],
        }
    }

    /// The environment variable that sets this key.
    pub fn env_var(&self) -> String {
        env_var_name(&self.path)
    }
}

/// `http.bind` → `TESSERA_HTTP__BIND`.
pub fn env_var_name(path: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        path.replace('.', "__").to_ascii_uppercase()
    )
}

/// The top-level keys of the config, built once from the types.
pub fn schema() -> &'static [Field] {
    static FIELDS: OnceLock<Vec<Field>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        let mut settings = SchemaSettings::draft2020_12();
        settings.inline_subschemas = true;
        let root = settings.into_generator().into_root_schema_for::<Config>();
        let kind = kind_of(root.as_value(), "");
        match kind {
            Kind::Section(fields) => fields,
            other => unreachable!("Config is a struct, its schema a section: {other:?}"),
        }
    })
}

/// Looks a dotted path up in the tree.
pub fn find<'a>(fields: &'a [Field], path: &[&str]) -> Option<&'a Field> {
    let (first, rest) = path.split_first()?;
    let field = fields.iter().find(|f| f.name == *first)?;
    if rest.is_empty() {
        Some(field)
    } else {
        find(field.children(), rest)
    }
}

fn field_of(name: &str, parent: &str, schema: &Value) -> Field {
    let path = if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    };
    let (inner, optional) = strip_null(schema);
    let description = schema
        .get("description")
        .or_else(|| inner.get("description"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let secret = inner.get("writeOnly") == Some(&Value::Bool(true));
    let default = schema.get("default").filter(|v| !v.is_null()).cloned();
    Field {
        kind: kind_of(&inner, &path),
        name: name.to_owned(),
        path,
        description,
        default,
        optional,
        secret,
    }
}

/// Separates `Option<T>` (a `null` alternative) from `T`.
fn strip_null(schema: &Value) -> (Value, bool) {
    if let Some(Value::Array(types)) = schema.get("type") {
        let rest: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
        if rest.len() < types.len() {
            let mut inner = schema.clone();
            if let (Some(obj), [single]) = (inner.as_object_mut(), rest.as_slice()) {
                obj.insert("type".into(), (*single).clone());
            }
            return (inner, true);
        }
    }
    if let Some(Value::Array(options)) = schema.get("anyOf") {
        let rest: Vec<&Value> = options
            .iter()
            .filter(|o| o.get("type").and_then(Value::as_str) != Some("null"))
            .collect();
        if let [single] = rest.as_slice()
            && rest.len() < options.len()
        {
            return ((*single).clone(), true);
        }
    }
    (schema.clone(), false)
}

fn kind_of(schema: &Value, path: &str) -> Kind {
    if let Some(variants) = enum_variants(schema) {
        return Kind::Enum(variants);
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let empty = Map::new();
            let props = schema
                .get("properties")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            Kind::Section(
                props
                    .iter()
                    .map(|(name, sub)| field_of(name, path, sub))
                    .collect(),
            )
        }
        Some("string") => Kind::String {
            format: schema
                .get("format")
                .and_then(Value::as_str)
                .map(str::to_owned),
        },
        Some("integer") => {
            let (mut min, mut max) = format_range(schema.get("format").and_then(Value::as_str));
            if let Some(m) = schema.get("minimum").and_then(Value::as_i64) {
                min = min.max(i128::from(m));
            }
            if let Some(m) = schema.get("maximum").and_then(Value::as_u64) {
                max = max.min(i128::from(m));
            }
            Kind::Integer { min, max }
        }
        Some("number") => Kind::Number,
        Some("boolean") => Kind::Bool,
        Some("array") => Kind::List(Box::new(
            schema
                .get("items")
                .map(|items| kind_of(items, path))
                .unwrap_or(Kind::String { format: None }),
        )),
        other => unreachable!("config key `{path}` has a type the loader does not know: {other:?}"),
    }
}

fn enum_variants(schema: &Value) -> Option<Vec<(String, String)>> {
    if let Some(Value::Array(values)) = schema.get("enum") {
        return Some(
            values
                .iter()
                .filter_map(Value::as_str)
                .map(|v| (v.to_owned(), String::new()))
                .collect(),
        );
    }
    let Some(Value::Array(options)) = schema.get("oneOf") else {
        return None;
    };
    options
        .iter()
        .map(|o| {
            let value = o.get("const")?.as_str()?.to_owned();
            let doc = o
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Some((value, doc.to_owned()))
        })
        .collect()
}

fn format_range(format: Option<&str>) -> (i128, i128) {
    match format {
        Some("uint8") => (0, i128::from(u8::MAX)),
        Some("uint16") => (0, i128::from(u16::MAX)),
        Some("uint32") => (0, i128::from(u32::MAX)),
        Some("uint64" | "uint") => (0, i128::from(u64::MAX)),
        Some("int8") => (i128::from(i8::MIN), i128::from(i8::MAX)),
        Some("int16") => (i128::from(i16::MIN), i128::from(i16::MAX)),
        Some("int32") => (i128::from(i32::MIN), i128::from(i32::MAX)),
        _ => (i128::from(i64::MIN), i128::from(i64::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_knows_types_defaults_and_docs() {
        let fields = schema();
        let bind = find(fields, &["http", "bind"]).expect("http.bind exists");
        assert!(matches!(&bind.kind, Kind::String { format: Some(f) } if f == "socket-address"));
        assert_eq!(bind.default, Some(Value::from("127.0.0.1:8080")));
        assert!(!bind.description.is_empty());

        let env = find(fields, &["environment"]).expect("environment exists");
        let Kind::Enum(variants) = &env.kind else {
            panic!("environment is an enum: {:?}", env.kind)
        };
        let names: Vec<&str> = variants.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(names, ["development", "staging", "production"]);

        let key = find(fields, &["master_key"]).expect("master_key exists");
        assert!(key.secret && key.optional && key.default.is_none());

        let limit = find(fields, &["http", "body_limit_bytes"]).expect("exists");
        assert!(matches!(limit.kind, Kind::Integer { min: 1, .. }));
    }

    #[test]
    fn env_var_names_nest_with_double_underscores() {
        assert_eq!(env_var_name("http.bind"), "TESSERA_HTTP__BIND");
        assert_eq!(env_var_name("public_url"), "TESSERA_PUBLIC_URL");
    }
}
