//! Secrets read from files, as orchestrators mount them (Kubernetes secrets, Docker secrets):
//! `master_key_file` fills `master_key` and `database.url_file` fills `database.url`, before the
//! configuration is typed and validated, so every rule that checks the value checks it whatever
//! its origin. (`token.hs256_secret_file` is read where the HS256 key is built.)

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::load::{Problem, Source};

/// Each file key and the key it fills.
const FILE_KEYS: [(&str, &str); 2] = [
    ("master_key_file", "master_key"),
    ("database.url_file", "database.url"),
];

/// Reads every `*_file` key set in `tree` into its target key. A target set as well, or a file
/// that cannot be read or is empty, is a problem naming the file key.
pub(super) fn resolve(
    tree: &mut Map<String, Value>,
    sources: &mut BTreeMap<String, Source>,
    problems: &mut Vec<Problem>,
) {
    for (file_key, target) in FILE_KEYS {
        let Some(Value::String(path)) = get(tree, file_key).cloned() else {
            continue;
        };
        let source = sources.get(file_key).cloned();
        let mut problem = |message: String| {
            problems.push(Problem {
                key: Some(file_key.to_owned()),
                source: source.clone(),
                message,
            })
        };
        if get(tree, target).is_some() {
            problem(format!("set either {target} or {file_key}, not both"));
            continue;
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                problem(format!("cannot read {path}: {e}"));
                continue;
            }
        };
        let value = text.trim();
        if value.is_empty() {
            problem(format!("{path} is empty"));
            continue;
        }
        set(tree, target, Value::String(value.to_owned()));
        if let Some(source) = source {
            sources.insert(target.to_owned(), source);
        }
    }
}

fn get<'a>(tree: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut segments = path.split('.');
    let first = tree.get(segments.next()?)?;
    segments.try_fold(first, |value, segment| value.get(segment))
}

fn set(tree: &mut Map<String, Value>, path: &str, value: Value) {
    let mut segments: Vec<&str> = path.split('.').collect();
    let Some(last) = segments.pop() else { return };
    let mut map = tree;
    for segment in segments {
        let entry = map
            .entry(segment.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(next) = entry else { return };
        map = next;
    }
    map.insert(last.to_owned(), value);
}

#[cfg(test)]
mod tests {
    use crate::config::load_from;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_master_key_and_the_database_url_come_from_mounted_files() {
        let dir = tempfile::tempdir().expect("dir");
        let key = dir.path().join("master_key");
        std::fs::write(&key, format!("{KEY}\n")).expect("written");
        let url = dir.path().join("database_url");
        std::fs::write(&url, "postgres://tessera:s3cret@db:5432/tessera\n").expect("written");
        let config = load_from(
            None,
            env(&[
                ("TESSERA_MASTER_KEY_FILE", key.to_str().expect("utf8")),
                ("TESSERA_DATABASE__URL_FILE", url.to_str().expect("utf8")),
            ]),
        )
        .expect("valid");
        assert_eq!(config.master_key.expect("set").expose(), KEY);
        assert!(config.database.url.is_postgres());
        assert!(!format!("{:?}", config.database.url).contains("s3cret"));
    }

    #[test]
    fn a_file_key_beside_its_value_or_naming_no_usable_file_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("dir");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("written");
        let bad_key = dir.path().join("short");
        std::fs::write(&bad_key, "c2hvcnQ=").expect("written");
        let cases = [
            (
                env(&[
                    ("TESSERA_MASTER_KEY", KEY),
                    ("TESSERA_MASTER_KEY_FILE", "/x"),
                ]),
                "master_key_file",
                "not both",
            ),
            (
                env(&[("TESSERA_DATABASE__URL_FILE", "/no/such/file")]),
                "database.url_file",
                "cannot read",
            ),
            (
                env(&[("TESSERA_MASTER_KEY_FILE", empty.to_str().expect("utf8"))]),
                "master_key_file",
                "is empty",
            ),
            (
                env(&[("TESSERA_MASTER_KEY_FILE", bad_key.to_str().expect("utf8"))]),
                "master_key",
                "TESSERA_MASTER_KEY_FILE",
            ),
        ];
        for (vars, key, says) in cases {
            let error = load_from(None, vars).expect_err(key).to_string();
            assert!(
                error.contains(key) && error.contains(says),
                "{key}: {error}"
            );
        }
    }
}
