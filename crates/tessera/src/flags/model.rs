//! What a flag is: its key, type, values and rules, as written in the config file (`[flags.<key>]`)
//! or sent to the admin API ([`FlagSpec`]), and the checked, ready-to-evaluate form ([`Flag`])
//! built from it once.
//!
//! A spec is checked as a whole when it is built, so evaluation never meets a rule naming a
//! variant that does not exist, a value of the wrong type, or a rollout whose weights do not
//! add up: every such mistake is a clear error at the edge (config load or admin API).

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::rules::{Condition, Matcher};

/// Longest flag key.
pub const MAX_KEY_LEN: usize = 64;

/// Most variants, rules, conditions per rule, or rollout splits a flag may hold.
pub const MAX_ITEMS: usize = 64;

/// The whole rollout range: weights are thousandths of a percent, so 100% is 100 000 and
/// bucketing matches flagd's `fractional` for the same total weight.
pub const ROLLOUT_TOTAL: u32 = 100_000;

/// A flag key: `[a-z][a-z0-9_.-]*`, at most 64 characters. Parsed once at the edge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct FlagKey(String);

impl FlagKey {
    /// Parses a key, saying what is wrong with a bad one.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut bytes = text.bytes();
        let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
        let rest_ok = bytes.all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
        if first_ok && rest_ok && text.len() <= MAX_KEY_LEN {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!(
                "a flag key is a lowercase letter, then lowercase letters, digits, `_`, `.` or \
                 `-`, at most {MAX_KEY_LEN} characters"
            ))
        }
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `TESSERA_FLAG_<KEY>` variable that overrides this flag at start-up: the key in
    /// upper case with `.` and `-` written as `_`.
    pub fn env_var(&self) -> String {
        let upper: String = self
            .0
            .chars()
            .map(|c| match c {
                '.' | '-' => '_',
                c => c.to_ascii_uppercase(),
            })
            .collect();
        format!("{ENV_PREFIX}{upper}")
    }
}

/// Prefix of the environment variables that override a flag's value at start-up.
pub use crate::config::FLAG_ENV_PREFIX as ENV_PREFIX;

impl fmt::Display for FlagKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for FlagKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The type of a flag's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FlagType {
    /// `true` or `false`.
    Bool,
    /// Text.
    String,
    /// A number (integer or not).
    Number,
    /// A JSON object.
    Object,
}

impl FlagType {
    /// Whether `value` is of this type.
    pub fn admits(self, value: &Value) -> bool {
        match self {
            Self::Bool => value.is_boolean(),
            Self::String => value.is_string(),
            Self::Number => value.is_number(),
            Self::Object => value.is_object(),
        }
    }

    /// The name used in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bool => "bool",
            Self::String => "string",
            Self::Number => "number",
            Self::Object => "object",
        }
    }

    /// Parses a value written as text (a `TESSERA_FLAG_<KEY>` variable): `true`/`false`,
    /// a number, a string as-is, or an object as JSON.
    pub fn parse_text(self, text: &str) -> Result<Value, String> {
        let trimmed = text.trim();
        let parsed = match self {
            Self::Bool => match trimmed {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            Self::String => Some(Value::String(text.to_owned())),
            Self::Number => serde_json::from_str::<serde_json::Number>(trimmed)
                .ok()
                .map(Value::Number),
            Self::Object => serde_json::from_str::<Value>(trimmed)
                .ok()
                .filter(Value::is_object),
        };
        parsed.ok_or_else(|| format!("expected a {} value", self.as_str()))
    }
}

/// A flag as declared in the config file or sent to the admin API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagSpec {
    /// The type of its values.
    #[serde(rename = "type")]
    pub kind: FlagType,
    /// The value everyone gets unless a rule, a rollout or a tenant override says otherwise.
    pub default: Value,
    /// What it switches, for people.
    #[serde(default)]
    pub description: String,
    /// Whether anonymous callers may see it (`/api/v1/platform/config`).
    #[serde(default)]
    pub public: bool,
    /// The team or person responsible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Free labels for filtering.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Other names the same flag is published under in `/api/v1/platform/config`, such as a
    /// frontend's `enableBanking`, so a frontend keeps its names while the flag is declared once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Named values. Bool flags get `on` (true) and `off` (false) when none are given.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variants: BTreeMap<String, Value>,
    /// Off: everyone gets the default (reason `DISABLED`).
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Targeting rules, tried in order; the first whose conditions all hold decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleSpec>,
    /// A percentage rollout for everyone no rule matched, bucketed on the targeting key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollout: Vec<SplitSpec>,
}

fn enabled_by_default() -> bool {
    true
}

/// A targeting rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Conditions that must all hold.
    pub when: Vec<Condition>,
    /// The variant served when they do.
    pub variant: String,
}

/// One share of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    /// The variant served to this share.
    pub variant: String,
    /// Its share in percent (up to three decimals); the shares add up to 100.
    pub percent: f64,
}

/// A flag checked and compiled for evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Flag {
    /// Its key.
    pub key: FlagKey,
    /// The spec it was built from, as the admin API shows it.
    pub spec: FlagSpec,
    /// Variant name of the default value (`default` when no variant holds it).
    pub default_variant: String,
    /// Compiled rules.
    pub rules: Vec<Rule>,
    /// Compiled rollout, cumulative upper bounds in 0..[`ROLLOUT_TOTAL`].
    pub rollout: Vec<Split>,
}

/// A compiled rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Conditions that must all hold.
    pub when: Vec<Matcher>,
    /// Its variant's name.
    pub variant: String,
    /// The variant's value.
    pub value: Value,
}

/// A compiled rollout share.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Buckets below this (and at or above the previous share's) get this variant.
    pub below: u32,
    /// The variant.
    pub variant: String,
    /// Its value.
    pub value: Value,
}

impl Flag {
    /// Checks `spec` and compiles it. Bool flags without variants get `on` and `off`.
    pub fn build(key: FlagKey, mut spec: FlagSpec) -> Result<Self, String> {
        if spec.kind == FlagType::Bool && spec.variants.is_empty() {
            spec.variants.insert("on".to_owned(), Value::Bool(true));
            spec.variants.insert("off".to_owned(), Value::Bool(false));
        }
        check_spec(&spec)?;
        let default_variant = spec
            .variants
            .iter()
            .find(|(_, v)| **v == spec.default)
            .map_or_else(|| "default".to_owned(), |(name, _)| name.clone());
        let variant = |name: &str| -> Result<Value, String> {
            spec.variants
                .get(name)
                .cloned()
                .ok_or_else(|| format!("names the variant `{name}`, which the flag does not have"))
        };
        let mut rules = Vec::with_capacity(spec.rules.len());
        for (i, rule) in spec.rules.iter().enumerate() {
            let when = rule
                .when
                .iter()
                .map(Condition::compile)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("rule {}: {e}", i + 1))?;
            let value = variant(&rule.variant).map_err(|e| format!("rule {}: {e}", i + 1))?;
            rules.push(Rule {
                when,
                variant: rule.variant.clone(),
                value,
            });
        }
        let rollout = compile_rollout(&spec.rollout, &variant)?;
        Ok(Self {
            key,
            default_variant,
            rules,
            rollout,
            spec,
        })
    }

    /// The variant name of `value` if a variant holds it.
    pub fn variant_of(&self, value: &Value) -> Option<&str> {
        self.spec
            .variants
            .iter()
            .find(|(_, v)| *v == value)
            .map(|(name, _)| name.as_str())
    }
}

fn check_spec(spec: &FlagSpec) -> Result<(), String> {
    if !spec.kind.admits(&spec.default) {
        return Err(format!("`default` must be a {} value", spec.kind.as_str()));
    }
    for (name, value) in &spec.variants {
        check_name("variant", name)?;
        if !spec.kind.admits(value) {
            return Err(format!(
                "variant `{name}` must be a {} value",
                spec.kind.as_str()
            ));
        }
    }
    for alias in &spec.aliases {
        let ok = alias.len() <= MAX_KEY_LEN
            && alias.starts_with(|c: char| c.is_ascii_alphabetic())
            && alias
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(format!(
                "alias `{}` must be a letter then letters, digits, `_`, `.` or `-`, at most \
                 {MAX_KEY_LEN} characters",
                alias.escape_debug()
            ));
        }
    }
    for tag in &spec.tags {
        check_name("tag", tag)?;
    }
    if let Some(owner) = &spec.owner
        && (owner.is_empty() || owner.chars().count() > 200 || owner.chars().any(char::is_control))
    {
        return Err("`owner` has 1 to 200 printable characters".to_owned());
    }
    if spec.description.chars().count() > 2_000 {
        return Err("`description` has at most 2000 characters".to_owned());
    }
    let counts = [
        ("variants", spec.variants.len()),
        ("rules", spec.rules.len()),
        ("rollout", spec.rollout.len()),
        ("tags", spec.tags.len()),
        ("aliases", spec.aliases.len()),
    ];
    for (what, count) in counts {
        if count > MAX_ITEMS {
            return Err(format!("at most {MAX_ITEMS} {what}"));
        }
    }
    if spec.rules.iter().any(|r| r.when.len() > MAX_ITEMS) {
        return Err(format!("at most {MAX_ITEMS} conditions per rule"));
    }
    Ok(())
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_KEY_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{}` must be 1 to {MAX_KEY_LEN} letters, digits, `_`, `.`, `-` or `:`",
            name.escape_debug()
        ))
    }
}

fn compile_rollout(
    splits: &[SplitSpec],
    variant: &dyn Fn(&str) -> Result<Value, String>,
) -> Result<Vec<Split>, String> {
    if splits.is_empty() {
        return Ok(Vec::new());
    }
    let mut below: u32 = 0;
    let mut compiled = Vec::with_capacity(splits.len());
    for split in splits {
        let thousandths = split.percent * 1_000.0;
        if !(0.0..=100_000.0).contains(&thousandths)
            || (thousandths - thousandths.round()).abs() > 1e-6
        {
            return Err(format!(
                "rollout share `{}` must be a percentage from 0 to 100 with at most three decimals",
                split.variant
            ));
        }
        // In range and whole, checked above.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let weight = thousandths.round() as u32;
        below = below.saturating_add(weight);
        compiled.push(Split {
            below,
            variant: split.variant.clone(),
            value: variant(&split.variant).map_err(|e| format!("rollout: {e}"))?,
        });
    }
    if below != ROLLOUT_TOTAL {
        return Err(format!(
            "rollout shares must add up to 100 percent, these add up to {}",
            f64::from(below) / 1_000.0
        ));
    }
    Ok(compiled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: Value) -> FlagSpec {
        serde_json::from_value(value).expect("spec")
    }

    #[test]
    fn keys_follow_the_documented_alphabet() {
        for good in ["a", "mfa_enabled", "db.sqlite", "x-1", &"a".repeat(64)] {
            assert!(FlagKey::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "1a", "A", "_a", "a b", "a/b", "é", &"a".repeat(65)] {
            assert!(FlagKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_var_names_upper_case_the_key() {
        let key = FlagKey::parse("data.transfer-excel").expect("key");
        assert_eq!(key.env_var(), "TESSERA_FLAG_DATA_TRANSFER_EXCEL");
    }

    #[test]
    fn bool_flags_get_on_and_off_variants() {
        let key = FlagKey::parse("x").expect("key");
        let flag = Flag::build(key, spec(json!({"type": "bool", "default": false}))).expect("ok");
        assert_eq!(flag.default_variant, "off");
        assert_eq!(flag.spec.variants.len(), 2);
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let key = FlagKey::parse("x").expect("key");
        let cases = [
            (json!({"type": "bool", "default": "yes"}), "default"),
            (
                json!({"type": "string", "default": "a", "variants": {"b": 1}}),
                "variant `b`",
            ),
            (
                json!({"type": "bool", "default": true, "rules": [{"when": [], "variant": "maybe"}]}),
                "maybe",
            ),
            (
                json!({"type": "bool", "default": true, "rollout": [{"variant": "on", "percent": 60}]}),
                "add up to 100",
            ),
            (
                json!({"type": "bool", "default": true, "rollout": [{"variant": "on", "percent": 33.3333}, {"variant": "off", "percent": 66.6667}]}),
                "three decimals",
            ),
            (
                json!({"type": "bool", "default": true, "aliases": ["has space"]}),
                "alias",
            ),
        ];
        for (value, expected) in cases {
            let error = Flag::build(key.clone(), spec(value.clone())).expect_err("rejected");
            assert!(error.contains(expected), "{value}: {error}");
        }
    }

    #[test]
    fn rollout_bounds_are_cumulative_thousandths() {
        let key = FlagKey::parse("x").expect("key");
        let flag = Flag::build(
            key,
            spec(json!({"type": "bool", "default": false,
                "rollout": [{"variant": "on", "percent": 12.5}, {"variant": "off", "percent": 87.5}]})),
        )
        .expect("ok");
        let bounds: Vec<u32> = flag.rollout.iter().map(|s| s.below).collect();
        assert_eq!(bounds, [12_500, 100_000]);
    }
}
