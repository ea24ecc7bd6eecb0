//! Targeting conditions: `attribute op value`, written in a flag's rules and compiled once
//! into a [`Matcher`] that tests an evaluation context without allocating.
//!
//! Operators: `eq`, `neq`, `in`, `not_in`, `starts_with`, `ends_with`, numeric `lt`, `lte`,
//! `gt`, `gte`, and semantic-version `semver_eq`, `semver_lt`, `semver_lte`, `semver_gt`,
//! `semver_gte`. An attribute holding a list (such as `roles`) matches when any of its items
//! does; the negative operators (`neq`, `not_in`) match when none does. A missing attribute
//! matches only the negative operators.

use std::cmp::Ordering;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A condition as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// A context attribute: `targetingKey`, `tenantId`, `userId`, `roles`, `email`,
    /// `emailDomain`, or any attribute the caller sends.
    pub attribute: String,
    /// How to compare.
    pub op: Operator,
    /// What to compare with: a list for `in` and `not_in`, one value otherwise.
    pub value: Value,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Operator {
    Eq,
    Neq,
    In,
    NotIn,
    StartsWith,
    EndsWith,
    Lt,
    Lte,
    Gt,
    Gte,
    SemverEq,
    SemverLt,
    SemverLte,
    SemverGt,
    SemverGte,
}

/// A compiled condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    attribute: String,
    test: Test,
    /// `neq` and `not_in`: true when the positive test fails for every item.
    negated: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Equals(Value),
    OneOf(Vec<Value>),
    StartsWith(String),
    EndsWith(String),
    Number(Ordering, bool, f64),
    Semver(Ordering, bool, Semver),
}

/// A value a matcher reads from the context.
#[derive(Debug, Clone, Copy)]
pub enum Attr<'a> {
    /// A JSON value (a list is tested item by item).
    Json(&'a Value),
    /// Text derived by the context (such as `emailDomain`).
    Text(&'a str),
}

/// Where matchers read attributes.
pub trait Attributes {
    /// The attribute called `name`, if present.
    fn attribute(&self, name: &str) -> Option<Attr<'_>>;
}

impl Condition {
    /// Checks the condition and compiles it.
    pub fn compile(&self) -> Result<Matcher, String> {
        if self.attribute.is_empty() || self.attribute.len() > 128 {
            return Err("a condition's `attribute` has 1 to 128 characters".to_owned());
        }
        let scalar = |v: &Value| v.is_string() || v.is_number() || v.is_boolean();
        let text = || {
            self.value
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("`{:?}` compares with a string", self.op))
        };
        let number = || {
            self.value
                .as_f64()
                .ok_or_else(|| format!("`{:?}` compares with a number", self.op))
        };
        let version = || {
            self.value
                .as_str()
                .and_then(Semver::parse)
                .ok_or_else(|| format!("`{:?}` compares with a version such as 1.4.2", self.op))
        };
        use Operator as O;
        let (test, negated) = match self.op {
            O::Eq | O::Neq if scalar(&self.value) => {
                (Test::Equals(self.value.clone()), self.op == O::Neq)
            }
            O::Eq | O::Neq => {
                return Err("`eq` and `neq` compare with one string, number or bool".to_owned());
            }
            O::In | O::NotIn => match &self.value {
                Value::Array(items) if items.iter().all(scalar) && items.len() <= 1_000 => {
                    (Test::OneOf(items.clone()), self.op == O::NotIn)
                }
                _ => {
                    return Err(
                        "`in` and `not_in` compare with a list of up to 1000 strings, numbers or bools"
                            .to_owned(),
                    );
                }
            },
            O::StartsWith => (Test::StartsWith(text()?), false),
            O::EndsWith => (Test::EndsWith(text()?), false),
            O::Lt => (Test::Number(Ordering::Less, false, number()?), false),
            O::Lte => (Test::Number(Ordering::Less, true, number()?), false),
            O::Gt => (Test::Number(Ordering::Greater, false, number()?), false),
            O::Gte => (Test::Number(Ordering::Greater, true, number()?), false),
            O::SemverEq => (Test::Semver(Ordering::Equal, true, version()?), false),
            O::SemverLt => (Test::Semver(Ordering::Less, false, version()?), false),
            O::SemverLte => (Test::Semver(Ordering::Less, true, version()?), false),
            O::SemverGt => (Test::Semver(Ordering::Greater, false, version()?), false),
            O::SemverGte => (Test::Semver(Ordering::Greater, true, version()?), false),
        };
        Ok(Matcher {
            attribute: self.attribute.clone(),
            test,
            negated,
        })
    }
}

impl Matcher {
    /// Whether the condition holds in `context`.
    pub fn matches(&self, context: &impl Attributes) -> bool {
        let hit = match context.attribute(&self.attribute) {
            None => false,
            Some(Attr::Text(text)) => self.test.holds_for_text(text),
            Some(Attr::Json(Value::Array(items))) => items.iter().any(|item| self.test.holds(item)),
            Some(Attr::Json(value)) => self.test.holds(value),
        };
        hit != self.negated
    }
}

impl Test {
    fn holds(&self, value: &Value) -> bool {
        match value {
            Value::String(text) => self.holds_for_text(text),
            Value::Number(n) => match self {
                Self::Equals(expected) => same_scalar(expected, value),
                Self::OneOf(items) => items.iter().any(|i| same_scalar(i, value)),
                Self::Number(order, or_equal, bound) => n
                    .as_f64()
                    .is_some_and(|n| compare(n.partial_cmp(bound), *order, *or_equal)),
                _ => false,
            },
            Value::Bool(_) => match self {
                Self::Equals(expected) => expected == value,
                Self::OneOf(items) => items.contains(value),
                _ => false,
            },
            Value::Null | Value::Array(_) | Value::Object(_) => false,
        }
    }

    fn holds_for_text(&self, text: &str) -> bool {
        match self {
            Self::Equals(expected) => expected.as_str() == Some(text),
            Self::OneOf(items) => items.iter().any(|i| i.as_str() == Some(text)),
            Self::StartsWith(prefix) => text.starts_with(prefix.as_str()),
            Self::EndsWith(suffix) => text.ends_with(suffix.as_str()),
            // Numbers sent as text (`"42"`) still compare as numbers.
            Self::Number(order, or_equal, bound) => text
                .trim()
                .parse::<f64>()
                .is_ok_and(|n| compare(n.partial_cmp(bound), *order, *or_equal)),
            Self::Semver(order, or_equal, bound) => {
                Semver::parse(text).is_some_and(|v| compare(Some(v.cmp(bound)), *order, *or_equal))
            }
        }
    }
}

/// `found` relative to the bound is `order`, or equal when `or_equal`.
fn compare(found: Option<Ordering>, order: Ordering, or_equal: bool) -> bool {
    match found {
        Some(Ordering::Equal) => or_equal,
        Some(found) => found == order && order != Ordering::Equal,
        None => false,
    }
}

/// Equal scalars, numbers compared by value (`1` equals `1.0`).
fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A semantic version (`1.4.2`, `v2.0.0-rc.1`); build metadata is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Semver {
    core: [u64; 3],
    pre: Vec<Identifier>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Identifier {
    // Numeric identifiers sort before alphanumeric ones (SemVer 2.0.0 §11).
    Number(u64),
    Text(String),
}

impl Semver {
    /// Parses `MAJOR.MINOR.PATCH[-PRE][+BUILD]`, with an optional leading `v`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let text = text.split_once('+').map_or(text, |(v, _)| v);
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let mut parts = core.split('.');
        let mut numbers = [0_u64; 3];
        for slot in &mut numbers {
            let part = parts.next()?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = part.parse().ok()?;
        }
        if parts.next().is_some() {
            return None;
        }
        let pre = match pre {
            None => Vec::new(),
            Some(pre) => pre
                .split('.')
                .map(|id| {
                    if id.is_empty() {
                        None
                    } else if id.bytes().all(|b| b.is_ascii_digit()) {
                        id.parse().ok().map(Identifier::Number)
                    } else {
                        Some(Identifier::Text(id.to_owned()))
                    }
                })
                .collect::<Option<Vec<_>>>()?,
        };
        Some(Self { core: numbers, pre })
    }
}

impl PartialOrd for Semver {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Semver {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core.cmp(&other.core).then_with(|| {
            // A pre-release sorts before its release.
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Map(serde_json::Map<String, Value>);

    impl Attributes for Map {
        fn attribute(&self, name: &str) -> Option<Attr<'_>> {
            self.0.get(name).map(Attr::Json)
        }
    }

    fn holds(op: &str, value: Value, attribute: Value) -> bool {
        let condition: Condition =
            serde_json::from_value(json!({"attribute": "a", "op": op, "value": value}))
                .expect("condition");
        let matcher = condition.compile().expect("compiles");
        let context = Map(json!({ "a": attribute }).as_object().cloned().expect("map"));
        matcher.matches(&context)
    }

    #[test]
    fn each_operator_compares_as_documented() {
        let table = [
            ("eq", json!("x"), json!("x"), true),
            ("eq", json!("x"), json!("y"), false),
            ("eq", json!(1), json!(1.0), true),
            ("eq", json!(true), json!(true), true),
            ("neq", json!("x"), json!("y"), true),
            ("in", json!(["a", "b"]), json!("b"), true),
            ("in", json!(["a", "b"]), json!("c"), false),
            ("in", json!(["admin"]), json!(["user", "admin"]), true),
            ("not_in", json!(["admin"]), json!(["user", "admin"]), false),
            ("not_in", json!(["admin"]), json!(["user"]), true),
            ("starts_with", json!("eu-"), json!("eu-west"), true),
            (
                "ends_with",
                json!("@example.com"),
                json!("a@example.com"),
                true,
            ),
            (
                "ends_with",
                json!("@example.com"),
                json!("a@example.org"),
                false,
            ),
            ("lt", json!(10), json!(9.5), true),
            ("lt", json!(10), json!(10), false),
            ("lte", json!(10), json!(10), true),
            ("gt", json!(10), json!("11"), true),
            ("gte", json!(10), json!(9), false),
            ("semver_gte", json!("1.4.0"), json!("v1.10.0"), true),
            ("semver_lt", json!("2.0.0"), json!("2.0.0-rc.1"), true),
            ("semver_eq", json!("1.2.3"), json!("1.2.3+build.5"), true),
            ("semver_gt", json!("1.2.3"), json!("not a version"), false),
            (
                "semver_lte",
                json!("1.0.0-alpha.2"),
                json!("1.0.0-alpha.10"),
                false,
            ),
        ];
        for (op, value, attribute, expected) in table {
            assert_eq!(
                holds(op, value.clone(), attribute.clone()),
                expected,
                "{attribute} {op} {value}"
            );
        }
    }

    #[test]
    fn a_missing_attribute_matches_only_negative_operators() {
        let context = Map(serde_json::Map::new());
        for (op, value, expected) in [
            ("eq", json!("x"), false),
            ("neq", json!("x"), true),
            ("not_in", json!(["x"]), true),
            ("gt", json!(1), false),
        ] {
            let condition: Condition =
                serde_json::from_value(json!({"attribute": "a", "op": op, "value": value}))
                    .expect("condition");
            assert_eq!(
                condition.compile().expect("ok").matches(&context),
                expected,
                "{op}"
            );
        }
    }

    #[test]
    fn malformed_conditions_are_refused_when_compiled() {
        for (op, value) in [
            ("in", json!("x")),
            ("lt", json!("ten")),
            ("semver_gt", json!("1.2")),
            ("eq", json!({"a": 1})),
        ] {
            let condition: Condition =
                serde_json::from_value(json!({"attribute": "a", "op": op, "value": value}))
                    .expect("condition");
            assert!(condition.compile().is_err(), "{op} {value}");
        }
    }
}
