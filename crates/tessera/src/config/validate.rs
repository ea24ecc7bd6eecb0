//! Rules that span keys or depend on the environment. Each capability adds its rules here, so
//! one run reports everything wrong with a configuration.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tracing_subscriber::EnvFilter;
use url::Url;

use super::load::Problem;
use super::{Config, Environment, SameSite, SigningAlgorithm};

/// Length of the decoded master key.
pub const MASTER_KEY_LEN: usize = 32;

/// Every rule violated by an otherwise well-typed config.
pub(super) fn check(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let production = config.environment == Environment::Production;

    check_public_url(&config.public_url, production, &mut problems);
    if let Some(endpoint) = &config.telemetry.otlp_endpoint
        && !matches!(endpoint.scheme(), "http" | "https")
    {
        problems.push(Problem::key(
            "telemetry.otlp_endpoint",
            "must be an http or https URL (OTLP over HTTP)",
        ));
    }

    match &config.master_key {
        Some(key) => {
            if let Err(message) = decode_master_key(key.expose()) {
                problems.push(Problem::key("master_key", message));
            }
        }
        None if config.environment != Environment::Development => problems.push(Problem::key(
            "master_key",
            "required outside development: 32 random bytes, base64 (for example the output of \
             `openssl rand -base64 32`)",
        )),
        None => {}
    }

    if production && !config.database.url.is_postgres() {
        problems.push(Problem::key(
            "database.url",
            "production requires PostgreSQL (postgres://…); SQLite serves one instance only",
        ));
    }
    if config.database.url.expose().scheme() == "sqlite" && sqlite_path_is_empty(config) {
        problems.push(Problem::key(
            "database.url",
            "a SQLite URL needs a file path, such as sqlite://./data/tessera.db",
        ));
    }

    let origins = &config.http.cors_allowed_origins;
    for origin in origins {
        if let Err(message) = check_origin(origin) {
            problems.push(Problem::key("http.cors_allowed_origins", message));
        }
    }
    if production && origins.is_empty() {
        problems.push(Problem::key(
            "http.cors_allowed_origins",
            "production requires the explicit list of browser origins (an empty list is only \
             allowed outside production)",
        ));
    }

    for (key, policy) in [
        ("http.html_csp", Some(&config.http.html_csp)),
        (
            "http.html_csp_report_only",
            config.http.html_csp_report_only.as_ref(),
        ),
    ] {
        if let Some(policy) = policy
            && (policy.trim().is_empty() || http::HeaderValue::from_str(policy).is_err())
        {
            problems.push(Problem::key(
                key,
                "must be a non-empty policy on one line of visible ASCII",
            ));
        }
    }
    for proxy in &config.http.trusted_proxies {
        if let Err(message) = super::Cidr::parse(proxy) {
            problems.push(Problem::key("http.trusted_proxies", message));
        }
    }
    if let Err(rates) = super::Policies::parse(&config.rate_limits) {
        for (key, message) in rates {
            problems.push(Problem::key(key, message));
        }
    }
    if let Some(url) = &config.redis.url
        && !matches!(
            url.expose().split_once("://"),
            Some(("redis" | "rediss", _))
        )
    {
        problems.push(Problem::key(
            "redis.url",
            "expected redis://host:port/db or rediss://… (TLS)",
        ));
    }

    if let Some(token) = &config.metrics.token
        && token.expose().chars().count() < 16
    {
        problems.push(Problem::key(
            "metrics.token",
            "must be at least 16 characters (for example `openssl rand -hex 16`)",
        ));
    }

    if config.realtime.legacy_query_token_until.is_some()
        && config.realtime.legacy_query_token_end().is_none()
    {
        problems.push(Problem::key(
            "realtime.legacy_query_token_until",
            "expected a date, YYYY-MM-DD (the last day old clients may send a token in the \
             query string)",
        ));
    }

    check_token(config, &mut problems);
    check_auth(config, &mut problems);
    check_cluster(config, &mut problems);

    if let Err(e) = EnvFilter::try_new(&config.log.level) {
        problems.push(Problem::key(
            "log.level",
            format!("not a valid level filter ({e}); expected something like `info` or `tessera=debug,sqlx=warn`"),
        ));
    }
    problems
}

/// Several instances must share what one instance keeps to itself: the database always, the
/// rate-limit counters when they must be shared, and a bus that reaches every instance.
fn check_cluster(config: &Config, problems: &mut Vec<Problem>) {
    let cluster = &config.cluster;
    if cluster.instances > 1 && !config.database.url.is_postgres() {
        problems.push(Problem::key(
            "cluster.instances",
            "more than one instance requires PostgreSQL (database.url = postgres://…): a \
             SQLite file belongs to one instance",
        ));
    }
    if cluster.instances > 1 && cluster.share_limits && config.redis.url.is_none() {
        problems.push(Problem::key(
            "cluster.instances",
            "more than one instance with cluster.share_limits requires redis.url, so rate \
             limits and lockout count across instances (or set cluster.share_limits = false \
             to let each instance count alone)",
        ));
    }
    if cluster.bus.uses_redis() && config.redis.url.is_none() {
        problems.push(Problem::key("cluster.bus", "`redis` requires redis.url"));
    }
}

fn check_token(config: &Config, problems: &mut Vec<Problem>) {
    let token = &config.token;
    if token.audience.trim().is_empty() {
        problems.push(Problem::key("token.audience", "must not be empty"));
    }
    if token.algorithm == SigningAlgorithm::HS256 {
        if let Err(problem) = token.hs256_secret_bytes() {
            problems.push(problem);
        }
    } else {
        for (set, key) in [
            (token.hs256_secret.is_some(), "token.hs256_secret"),
            (token.hs256_secret_file.is_some(), "token.hs256_secret_file"),
        ] {
            if set {
                problems.push(Problem::key(
                    key,
                    "only used with token.algorithm = \"HS256\"; remove it so no shared secret lingers",
                ));
            }
        }
    }
}

fn check_auth(config: &Config, problems: &mut Vec<Problem>) {
    let auth = &config.auth;
    if auth.session_idle_ttl_secs > auth.session_absolute_ttl_secs {
        problems.push(Problem::key(
            "auth.session_idle_ttl_secs",
            format!(
                "must not exceed auth.session_absolute_ttl_secs ({})",
                auth.session_absolute_ttl_secs
            ),
        ));
    }
    let prefix = &auth.cookie_prefix;
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        problems.push(Problem::key(
            "auth.cookie_prefix",
            "may hold only ASCII letters, digits, `_` and `-`",
        ));
    }
    if prefix.starts_with("__Host-") {
        problems.push(Problem::key(
            "auth.cookie_prefix",
            "`__Host-` cookies must have Path=/, but the refresh cookie is scoped to the refresh              path; use `__Secure-`",
        ));
    }
    let secure = config.cookie_secure();
    if prefix.starts_with("__Secure-") && !secure {
        problems.push(Problem::key(
            "auth.cookie_prefix",
            "`__Secure-` cookies need Secure: set auth.cookie_secure = true (and serve over https)",
        ));
    }
    if auth.cookie_same_site == SameSite::None && !secure {
        problems.push(Problem::key(
            "auth.cookie_same_site",
            "`none` needs Secure cookies: set auth.cookie_secure = true",
        ));
    }
    if let Some(domain) = &auth.cookie_domain {
        let valid = !domain.is_empty()
            && domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !valid {
            problems.push(Problem::key(
                "auth.cookie_domain",
                "must be a host name such as example.com",
            ));
        }
    }
    if config.environment != Environment::Development && auth.cookie_secure == Some(false) {
        problems.push(Problem::key(
            "auth.cookie_secure",
            "cookies are always Secure outside development; remove this setting",
        ));
    }
}

/// Decodes the base64 master key, checking its length.
pub fn decode_master_key(encoded: &str) -> Result<[u8; MASTER_KEY_LEN], String> {
    let bytes = STANDARD
        .decode(encoded.trim())
        .map_err(|_| "must be base64 (standard alphabet, with padding)".to_owned())?;
    <[u8; MASTER_KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "must decode to exactly {MASTER_KEY_LEN} bytes, not {}",
            bytes.len()
        )
    })
}

fn check_public_url(url: &Url, production: bool, problems: &mut Vec<Problem>) {
    match url.scheme() {
        "https" => {}
        "http" if production => problems.push(Problem::key(
            "public_url",
            "production requires https (tokens and cookies must never travel in clear text)",
        )),
        "http" => {}
        other => problems.push(Problem::key(
            "public_url",
            format!("must be an http(s) URL, not `{other}:`"),
        )),
    }
    if url.query().is_some() || url.fragment().is_some() {
        problems.push(Problem::key(
            "public_url",
            "must not have a query string or fragment",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        problems.push(Problem::key("public_url", "must name a host"));
    }
}

fn sqlite_path_is_empty(config: &Config) -> bool {
    let url = config.database.url.expose();
    url.host_str().unwrap_or_default().is_empty() && url.path().trim_matches('/').is_empty()
}

/// An origin is `scheme://host[:port]`, nothing more; `*` is refused because credentials are
/// always allowed.
fn check_origin(origin: &str) -> Result<(), String> {
    if origin.contains('*') {
        return Err(format!(
            "`{origin}`: wildcards are not allowed, because CORS here always allows credentials; \
             list each origin"
        ));
    }
    let url = Url::parse(origin).map_err(|e| format!("`{origin}` is not an origin ({e})"))?;
    let bare = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.path() == "/"
        && !origin.ends_with('/')
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty();
    if bare {
        Ok(())
    } else {
        Err(format!(
            "`{origin}` is not an origin; expected scheme://host[:port] such as https://app.example.com"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BusKind, DatabaseUrl, Secret};

    fn keys(config: &Config) -> Vec<String> {
        check(config).into_iter().filter_map(|p| p.key).collect()
    }

    fn production() -> Config {
        let mut config = Config {
            environment: Environment::Production,
            public_url: Url::parse("https://auth.example.com").expect("url"),
            master_key: Some(Secret::new("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")),
            ..Config::default()
        };
        config.database.url = DatabaseUrl::parse("postgres://db/tessera").expect("url");
        config.http.cors_allowed_origins = vec!["https://app.example.com".into()];
        config
    }

    #[test]
    fn a_complete_production_config_passes() {
        assert!(
            check(&production()).is_empty(),
            "{:?}",
            check(&production())
        );
    }

    #[test]
    fn production_requires_https_master_key_postgres_and_origins() {
        let mut config = production();
        config.public_url = Url::parse("http://auth.example.com").expect("url");
        config.master_key = None;
        config.database.url = DatabaseUrl::parse("sqlite://./data/t.db").expect("url");
        config.http.cors_allowed_origins.clear();
        assert_eq!(
            keys(&config),
            [
                "public_url",
                "master_key",
                "database.url",
                "http.cors_allowed_origins"
            ]
        );
    }

    #[test]
    fn several_instances_need_postgres_and_redis_for_shared_limits() {
        let mut config = Config::default();
        config.cluster.instances = 3;
        assert_eq!(
            keys(&config),
            ["cluster.instances", "cluster.instances"],
            "SQLite, and no Redis"
        );
        config.database.url = DatabaseUrl::parse("postgres://db/tessera").expect("url");
        assert_eq!(keys(&config), ["cluster.instances"], "no Redis");
        config.cluster.share_limits = false;
        assert!(keys(&config).is_empty(), "limits counted per instance");
        config.cluster.bus = BusKind::Redis;
        assert_eq!(keys(&config), ["cluster.bus"]);
        config.redis.url = Some(Secret::new("redis://cache:6379/0"));
        config.cluster.share_limits = true;
        assert!(keys(&config).is_empty());
    }

    #[test]
    fn development_allows_what_production_refuses() {
        assert!(check(&Config::default()).is_empty());
    }

    #[test]
    fn master_key_must_be_32_bytes_of_base64() {
        let mut config = Config {
            master_key: Some(Secret::new("c2hvcnQ=")),
            ..Config::default()
        };
        assert_eq!(keys(&config), ["master_key"]);
        config.master_key = Some(Secret::new("not base64!"));
        assert_eq!(keys(&config), ["master_key"]);
    }

    #[test]
    fn origins_must_be_bare_and_never_wildcards() {
        for bad in [
            "*",
            "https://*.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "ftp://x.example",
            "app.example.com",
        ] {
            let mut config = Config::default();
            config.http.cors_allowed_origins = vec![bad.into()];
            assert_eq!(
                keys(&config),
                ["http.cors_allowed_origins"],
                "{bad} accepted"
            );
        }
        let mut config = Config::default();
        config.http.cors_allowed_origins = vec!["http://localhost:5173".into()];
        assert!(keys(&config).is_empty());
    }

    #[test]
    fn public_url_must_be_http_without_query() {
        for bad in [
            "ftp://x.example",
            "https://x.example/?a=1",
            "https://x.example/#f",
        ] {
            let config = Config {
                public_url: Url::parse(bad).expect("url"),
                ..Config::default()
            };
            assert_eq!(keys(&config), ["public_url"], "{bad} accepted");
        }
    }

    #[test]
    fn hs256_needs_one_long_enough_secret() {
        let mut config = Config::default();
        config.token.algorithm = SigningAlgorithm::HS256;
        assert_eq!(keys(&config), ["token.hs256_secret"]);
        config.token.hs256_secret = Some(Secret::new("x".repeat(31)));
        assert_eq!(keys(&config), ["token.hs256_secret"]);
        config.token.hs256_secret = Some(Secret::new("x".repeat(32)));
        assert!(keys(&config).is_empty());

        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("secret");
        std::fs::write(&file, format!("{}\n", "y".repeat(40))).expect("write");
        config.token.hs256_secret_file = Some(file.clone());
        assert_eq!(keys(&config), ["token.hs256_secret"], "not both");
        config.token.hs256_secret = None;
        assert!(keys(&config).is_empty());
        assert_eq!(
            config.token.hs256_secret_bytes().expect("secret").expose(),
            "y".repeat(40)
        );
        config.token.hs256_secret_file = Some(dir.path().join("missing"));
        assert_eq!(keys(&config), ["token.hs256_secret_file"]);
    }

    #[test]
    fn an_hs256_secret_outside_hs256_mode_is_refused() {
        let mut config = Config::default();
        config.token.hs256_secret = Some(Secret::new("x".repeat(40)));
        assert_eq!(keys(&config), ["token.hs256_secret"]);
    }

    #[test]
    fn cookie_settings_that_browsers_would_reject_are_refused() {
        let mut config = Config::default();
        config.auth.cookie_prefix = "__Host-".into();
        assert_eq!(keys(&config), ["auth.cookie_prefix"]);
        config.auth.cookie_prefix = "__Secure-".into();
        assert_eq!(keys(&config), ["auth.cookie_prefix"], "needs Secure");
        config.auth.cookie_secure = Some(true);
        assert!(keys(&config).is_empty());
        config.auth.cookie_prefix = "a b".into();
        config.auth.cookie_same_site = SameSite::None;
        config.auth.cookie_secure = Some(false);
        config.auth.cookie_domain = Some("evil.com; Path=/".into());
        assert_eq!(
            keys(&config),
            [
                "auth.cookie_prefix",
                "auth.cookie_same_site",
                "auth.cookie_domain"
            ]
        );

        let mut config = production();
        config.auth.cookie_secure = Some(false);
        assert_eq!(keys(&config), ["auth.cookie_secure"]);
        assert!(production().cookie_secure(), "forced outside development");
    }

    #[test]
    fn the_idle_lifetime_cannot_outlast_the_absolute_one() {
        let mut config = Config::default();
        config.auth.session_idle_ttl_secs = config.auth.session_absolute_ttl_secs + 1;
        assert_eq!(keys(&config), ["auth.session_idle_ttl_secs"]);
    }

    #[test]
    fn log_level_must_parse() {
        let mut config = Config::default();
        config.log.level = "tessera=loud".into();
        assert_eq!(keys(&config), ["log.level"]);
    }
}
