//! The flag set: every flag's effective definition, built from its layers in order of
//! precedence (config file < `TESSERA_FLAG_<KEY>` < admin API), the tenant overrides, and a
//! revision that changes whenever any of it does. Immutable once built; the service swaps in
//! a new one on every change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use super::eval::{Context, Evaluation, OVERRIDE_VARIANT, TenantOverride, evaluate};
use super::model::{Flag, FlagKey, FlagSpec};
use super::store::{Change, Origin, Stored};
use crate::config::{Config, Problem, Source};

/// Where a flag's definition lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Defined {
    /// Declared in the config file: cannot be deleted through the API.
    Config,
    /// Created through the admin API.
    Api,
}

/// Where a flag's current default value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ValueSource {
    /// The config file's declaration.
    Config,
    /// A `TESSERA_FLAG_<KEY>` variable at start-up.
    Env {
        /// The variable.
        var: String,
    },
    /// The admin API.
    Api,
}

impl ValueSource {
    /// A short phrase for people (`config`, `env TESSERA_FLAG_X`, `api`).
    pub fn describe(&self) -> String {
        match self {
            Self::Config => "config".to_owned(),
            Self::Env { var } => format!("env {var}"),
            Self::Api => "api".to_owned(),
        }
    }
}

/// One flag with where its parts come from.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The compiled flag.
    pub flag: Flag,
    /// Where it is defined.
    pub defined: Defined,
    /// Where its default value comes from.
    pub value_source: ValueSource,
    /// Whether the admin API overrides values or rules of a config-declared flag.
    pub api_override: bool,
}

/// The flags declared at start-up: the config file's, with the environment's values applied.
#[derive(Debug, Clone, Default)]
pub struct Declared {
    /// By key.
    pub flags: BTreeMap<FlagKey, (FlagSpec, ValueSource)>,
    /// A digest of them, part of every revision, so instances with different files differ.
    pub digest: String,
}

impl Declared {
    /// The config's `[flags.<key>]` tables, each checked and compiled, with each
    /// `TESSERA_FLAG_<KEY>` value applied. `Err` lists every problem, each naming its flag
    /// (or variable): a bad key or definition, a variable naming no declared flag, a value of
    /// the wrong type.
    pub fn from_config(config: &Config) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut declared = BTreeMap::new();
        for (key, table) in &config.flags {
            match declare(key, table) {
                Ok((key, spec)) => {
                    declared.insert(key, (spec, ValueSource::Config));
                }
                Err(message) => problems.push(flag_problem(key, None, message)),
            }
        }
        for (var, raw) in &config.flag_env {
            let source = Some(Source::Env(var.clone()));
            let Some((key, (spec, value_source))) =
                declared.iter_mut().find(|(key, _)| key.env_var() == *var)
            else {
                problems.push(Problem {
                    key: None,
                    source,
                    message: "names no flag declared in the config file (`[flags.<key>]`)"
                        .to_owned(),
                });
                continue;
            };
            match spec.kind.parse_text(raw) {
                Ok(value) => {
                    spec.default = value;
                    *value_source = ValueSource::Env { var: var.clone() };
                    if let Err(message) = Flag::build(key.clone(), spec.clone()) {
                        problems.push(flag_problem(key.as_str(), source, message));
                    }
                }
                Err(message) => {
                    problems.push(flag_problem(
                        key.as_str(),
                        source,
                        format!("{message}, got {raw:?}"),
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let text = serde_json::to_string(
            &declared
                .iter()
                .map(|(k, (s, _))| (k.as_str(), s))
                .collect::<Vec<_>>(),
        )
        .unwrap_or_default();
        let digest = crate::digest::sha256_hex(text.as_bytes())[..12].to_owned();
        Ok(Self {
            flags: declared,
            digest,
        })
    }
}

/// One `[flags.<key>]` table checked: its key and the whole flag.
fn declare(key: &str, table: &Value) -> Result<(FlagKey, FlagSpec), String> {
    let key = FlagKey::parse(key)?;
    let spec: FlagSpec = serde_json::from_value(table.clone()).map_err(|e| e.to_string())?;
    // Kept as written: bool flags' implicit variants are added again at each build.
    Flag::build(key.clone(), spec.clone())?;
    Ok((key, spec))
}

fn flag_problem(key: &str, source: Option<Source>, message: String) -> Problem {
    Problem {
        key: Some(format!("flags.{key}")),
        source,
        message,
    }
}

/// The fields of a config-declared flag the admin API may override.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValuePatch {
    /// The default value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Named values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<BTreeMap<String, Value>>,
    /// On or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Targeting rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<super::model::RuleSpec>>,
    /// Percentage rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Vec<super::model::SplitSpec>>,
}

impl ValuePatch {
    /// `spec` with this patch applied.
    pub fn apply(&self, mut spec: FlagSpec) -> FlagSpec {
        if let Some(default) = &self.default {
            spec.default = default.clone();
        }
        if let Some(variants) = &self.variants {
            spec.variants = variants.clone();
        }
        if let Some(enabled) = self.enabled {
            spec.enabled = enabled;
        }
        if let Some(rules) = &self.rules {
            spec.rules = rules.clone();
        }
        if let Some(rollout) = &self.rollout {
            spec.rollout = rollout.clone();
        }
        spec
    }

    /// Whether it overrides nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Every flag and override at one revision.
#[derive(Debug, Default)]
pub struct FlagSet {
    /// Changes when anything in the set does: `<config digest>-<newest change>`.
    pub revision: String,
    /// The newest change this set includes.
    pub seq: i64,
    /// Unix seconds of the newest change (0 when none).
    pub changed_at: i64,
    /// By key, in key order.
    entries: BTreeMap<String, Arc<Entry>>,
    /// Tenant id → flag key → override.
    overrides: HashMap<String, HashMap<String, TenantOverride>>,
    /// The changes read since the previous set, oldest first (empty for the first set or
    /// when they could not be read; listeners then treat everything as changed).
    pub changes: Arc<[Change]>,
}

impl FlagSet {
    /// Builds the set from the declared flags and what is stored. A stored row that no longer
    /// builds (edited by hand, or its declaration changed) is skipped with a warning, leaving
    /// the declaration in force.
    pub fn build(declared: &Declared, stored: &Stored, changes: Arc<[Change]>) -> Self {
        let mut entries = BTreeMap::new();
        for (key, (spec, source)) in &declared.flags {
            match Flag::build(key.clone(), spec.clone()) {
                Ok(flag) => {
                    entries.insert(
                        key.as_str().to_owned(),
                        Arc::new(Entry {
                            flag,
                            defined: Defined::Config,
                            value_source: source.clone(),
                            api_override: false,
                        }),
                    );
                }
                Err(e) => tracing::warn!(flag = %key, "declared flag skipped: {e}"),
            }
        }
        for row in &stored.flags {
            if let Some(entry) = stored_entry(declared, row, entries.get(&row.key)) {
                entries.insert(row.key.clone(), Arc::new(entry));
            }
        }
        let mut overrides: HashMap<String, HashMap<String, TenantOverride>> = HashMap::new();
        for row in &stored.overrides {
            let Some(entry) = entries.get(&row.flag_key) else {
                continue;
            };
            let variant = entry
                .flag
                .variant_of(&row.value)
                .unwrap_or(OVERRIDE_VARIANT)
                .to_owned();
            overrides.entry(row.tenant_id.clone()).or_default().insert(
                row.flag_key.clone(),
                TenantOverride {
                    value: row.value.clone(),
                    variant,
                },
            );
        }
        let changed_at = changes.last().map_or(0, |c| c.created_at / 1_000);
        Self {
            revision: format!("{}-{}", declared.digest, stored.seq),
            seq: stored.seq,
            changed_at,
            entries,
            overrides,
            changes,
        }
    }

    /// The flag called `key`.
    pub fn get(&self, key: &str) -> Option<&Arc<Entry>> {
        self.entries.get(key)
    }

    /// Every flag, in key order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.entries.values()
    }

    /// How many flags there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The override of `key` in `tenant_id`.
    pub fn override_of(&self, tenant_id: Option<&str>, key: &str) -> Option<&TenantOverride> {
        self.overrides.get(tenant_id?)?.get(key)
    }

    /// Evaluates `entry` for `context`, with the override of the context's tenant.
    pub fn evaluate<'a>(&'a self, entry: &'a Entry, context: &Context) -> Evaluation<'a> {
        let found = self.override_of(context.tenant_id(), entry.flag.key.as_str());
        evaluate(&entry.flag, context, found)
    }

    /// Every flag's value for `context`, as `key → value` (and each alias → value), only
    /// public flags when `public_only`. Flags that fail to evaluate serve their default.
    pub fn features(&self, context: &Context, public_only: bool) -> Map<String, Value> {
        let mut features = Map::new();
        for entry in self.entries.values() {
            if public_only && !entry.flag.spec.public {
                continue;
            }
            let value = self.evaluate(entry, context).value;
            for alias in &entry.flag.spec.aliases {
                features.insert(alias.clone(), value.clone());
            }
            features.insert(entry.flag.key.as_str().to_owned(), value.clone());
        }
        features
    }
}

/// The entry a stored row makes: an API definition, or a config-declared flag with the API's
/// overrides applied. `None` (with a warning) when the row does not fit.
fn stored_entry(
    declared: &Declared,
    row: &super::store::StoredFlag,
    current: Option<&Arc<Entry>>,
) -> Option<Entry> {
    let Ok(key) = FlagKey::parse(&row.key) else {
        tracing::warn!(flag = %row.key, "stored flag with an invalid key skipped");
        return None;
    };
    let built = match (row.origin, declared.flags.get(&key)) {
        (Origin::Config, Some((spec, _))) => {
            serde_json::from_value::<ValuePatch>(row.definition.clone())
                .map_err(|e| e.to_string())
                .and_then(|patch| Flag::build(key, patch.apply(spec.clone())).map(|f| (f, patch)))
                .map(|(flag, patch)| Entry {
                    flag,
                    defined: Defined::Config,
                    value_source: if patch.default.is_some() {
                        ValueSource::Api
                    } else {
                        current.map_or(ValueSource::Config, |c| c.value_source.clone())
                    },
                    api_override: !patch.is_empty(),
                })
        }
        (Origin::Api, None) => serde_json::from_value::<FlagSpec>(row.definition.clone())
            .map_err(|e| e.to_string())
            .and_then(|spec| Flag::build(key, spec))
            .map(|flag| Entry {
                flag,
                defined: Defined::Api,
                value_source: ValueSource::Api,
                api_override: false,
            }),
        (Origin::Config, None) => Err("its declaration left the config file".to_owned()),
        (Origin::Api, Some(_)) => Err("the config file now declares it".to_owned()),
    };
    match built {
        Ok(entry) => Some(entry),
        Err(e) => {
            tracing::warn!(flag = %row.key, "stored flag skipped: {e}");
            None
        }
    }
}

/// The declared flags as TOML for `tessera config show`, each default as in force (with its
/// `TESSERA_FLAG_<KEY>` value applied) and a comment saying where it comes from.
pub fn show_declared(config: &Config) -> String {
    let Ok(declared) = Declared::from_config(config) else {
        return String::new();
    };
    if declared.flags.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Flags declared in the config file; value sources:\n");
    let mut tables = toml::Table::new();
    for (key, (spec, source)) in &declared.flags {
        out.push_str(&format!("#   {key}: {}\n", source.describe()));
        if let Ok(toml::Value::Table(table)) = toml::Value::try_from(spec) {
            tables.insert(key.as_str().to_owned(), toml::Value::Table(table));
        }
    }
    let mut root = toml::Table::new();
    root.insert("flags".to_owned(), toml::Value::Table(tables));
    out.push_str(&toml::to_string(&root).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::load_from;

    fn config(text: &str, env: &[(&str, &str)]) -> Config {
        load_from(
            Some((PathBuf::from("tessera.toml"), text.to_owned())),
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
        .expect("config loads")
    }

    #[test]
    fn flags_are_declared_as_tables_and_overridden_by_their_variables() {
        let text = "[flags.mfa_enabled]\ntype = \"bool\"\ndefault = false\n\
                    [flags.\"data.limit\"]\ntype = \"number\"\ndefault = 5\n";
        let vars = [
            ("TESSERA_FLAG_MFA_ENABLED", "true"),
            ("TESSERA_FLAG_DATA_LIMIT", "7.5"),
        ];
        let declared = Declared::from_config(&config(text, &vars)).expect("valid");
        let key = FlagKey::parse("data.limit").expect("key");
        let (spec, source) = &declared.flags[&key];
        assert_eq!(spec.default, serde_json::json!(7.5));
        assert_eq!(source.describe(), "env TESSERA_FLAG_DATA_LIMIT");
        let key = FlagKey::parse("mfa_enabled").expect("key");
        assert_eq!(declared.flags[&key].0.default, serde_json::json!(true));
    }

    #[test]
    fn bad_flags_and_flag_variables_are_problems_naming_the_flag() {
        let text = "[flags.ok]\ntype = \"bool\"\ndefault = true\n\
                    [flags.Bad]\ntype = \"bool\"\ndefault = true\n\
                    [flags.typo]\ntype = \"bool\"\ndefault = 3\n\
                    [flags.extra]\ntype = \"bool\"\ndefault = true\nsurprise = 1\n";
        let vars = [("TESSERA_FLAG_OK", "maybe"), ("TESSERA_FLAG_NOPE", "true")];
        let found = Declared::from_config(&config(text, &vars)).expect_err("rejected");
        let keys: Vec<_> = found.iter().map(|p| p.key.as_deref()).collect();
        for key in ["flags.Bad", "flags.typo", "flags.extra", "flags.ok"] {
            assert!(keys.contains(&Some(key)), "{key} missing from {found:#?}");
        }
        let nope = found
            .iter()
            .find(|p| p.source == Some(Source::Env("TESSERA_FLAG_NOPE".into())))
            .expect("unknown flag variable reported");
        assert!(nope.message.contains("no flag declared"), "{nope}");
    }

    #[test]
    fn a_flag_that_is_not_a_table_is_a_config_problem() {
        let loaded = load_from(
            Some((PathBuf::from("tessera.toml"), "flags = 3\n".to_owned())),
            Vec::new(),
        );
        assert!(loaded.is_err());
    }
}
