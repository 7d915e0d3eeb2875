//! Config layering, environment overrides and validation errors that name the key.

use std::collections::HashMap;

use sync_hostaway::config::{Environment, LoadOptions, LogFormat, Settings};

use crate::helpers::config_dir;

fn load(env: Option<Environment>, vars: &[(&str, &str)]) -> Result<Settings, String> {
    Settings::load_with(LoadOptions {
        config_dir: Some(config_dir()),
        environment: env,
        env_vars: Some(
            vars.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        ),
        overrides: vec![],
    })
    .map_err(|e| e.to_string())
}

#[test]
fn environment_file_is_layered_over_defaults() {
    let dev = load(None, &[]).unwrap();
    assert_eq!(dev.environment, Environment::Development);
    assert_eq!(dev.server.port, 8080);
    assert_eq!(
        dev.telemetry.log_format,
        LogFormat::Pretty,
        "development.toml overrides"
    );
    assert_eq!(
        &*dev.database.schema, "hostaway",
        "default.toml fills the rest"
    );

    let test = load(None, &[("SYNC_HOSTAWAY_ENV", "test")]).unwrap();
    assert_eq!(test.environment, Environment::Test);
    assert_eq!(test.server.port, 0);
    assert_eq!(test.telemetry.log_format, LogFormat::Json);
}

#[test]
fn env_vars_override_any_key() {
    let s = load(
        None,
        &[
            ("SYNC_HOSTAWAY__SERVER__PORT", "9000"),
            (
                "SYNC_HOSTAWAY__DATABASE__URL",
                "postgres://postgres@127.0.0.1:5432/test",
            ),
            ("SYNC_HOSTAWAY__HOSTAWAY__RATE_LIMIT__PER_IP__REQUESTS", "7"),
            ("SYNC_HOSTAWAY__SYNC__RECONCILE_INTERVAL_SECS", "60"),
        ],
    )
    .unwrap();
    assert_eq!(s.server.port, 9000);
    assert_eq!(
        s.database.url.expose(),
        "postgres://postgres@127.0.0.1:5432/test"
    );
    assert_eq!(s.hostaway.rate_limit.per_ip.requests.get(), 7);
    assert_eq!(s.sync.reconcile_interval_secs.get(), 60);
    assert!(!s.is_sqlite());
}

#[test]
fn a_bad_value_fails_with_the_key_named() {
    let err = load(None, &[("SYNC_HOSTAWAY__SERVER__PORT", "not-a-port")]).unwrap_err();
    assert!(err.contains("server.port"), "{err}");
    let err = load(None, &[("SYNC_HOSTAWAY__DATABASE__URL", "mysql://x")]).unwrap_err();
    assert!(err.contains("database.url"), "{err}");
    let err = load(None, &[("SYNC_HOSTAWAY__SYNC__JITTER_RATIO", "3")]).unwrap_err();
    assert!(err.contains("sync.jitter_ratio"), "{err}");
    for (var, key) in [
        ("SYNC_HOSTAWAY__HOSTAWAY__PAGE_SIZE", "hostaway.page_size"),
        (
            "SYNC_HOSTAWAY__WEBHOOKS__MAX_ATTEMPTS",
            "webhooks.max_attempts",
        ),
        (
            "SYNC_HOSTAWAY__HOSTAWAY__REQUEST_TIMEOUT_SECS",
            "hostaway.request_timeout_secs",
        ),
        (
            "SYNC_HOSTAWAY__TELEMETRY__SAMPLING_RATIO",
            "telemetry.sampling_ratio",
        ),
    ] {
        let value = if key.ends_with("ratio") { "-1" } else { "0" };
        let err = load(None, &[(var, value)]).unwrap_err();
        assert!(err.contains(key), "{var}={value}: {err}");
    }
    let err = load(None, &[("SYNC_HOSTAWAY__HOSTAWAY__BASE_URL", "not a url")]).unwrap_err();
    assert!(
        err.contains("hostaway.base_url") && err.contains("absolute URL"),
        "{err}"
    );
    let err = load(
        None,
        &[("SYNC_HOSTAWAY__DATABASE__SQLITE_SYNCHRONOUS", "fast")],
    )
    .unwrap_err();
    assert!(
        err.contains("database.sqlite_synchronous")
            && err.contains("must be one of off, normal, full, extra"),
        "{err}"
    );
    let err = load(None, &[("SYNC_HOSTAWAY__SERVER__NO_SUCH_KEY", "1")]).unwrap_err();
    assert!(
        err.contains("no_such_key"),
        "unknown keys are refused: {err}"
    );
    let err = load(None, &[("SYNC_HOSTAWAY_ENV", "staging")]).unwrap_err();
    assert!(err.contains("staging"), "{err}");
}

#[test]
fn production_refuses_to_start_without_an_encryption_key() {
    let err = load(
        Some(Environment::Production),
        &[("SYNC_HOSTAWAY__ADMIN__API_TOKEN", "t")],
    )
    .unwrap_err();
    assert!(err.contains("security.encryption_key"), "{err}");
    let mut vars = vec![
        ("SYNC_HOSTAWAY__ADMIN__API_TOKEN", "t"),
        (
            "SYNC_HOSTAWAY__SECURITY__ENCRYPTION_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ),
    ];
    // No database.url of its own: refused, not the built-in SQLite file.
    let err = load(Some(Environment::Production), &vars).unwrap_err();
    assert!(err.contains("database.url"), "{err}");
    vars.push((
        "SYNC_HOSTAWAY__DATABASE__URL",
        "postgres://mirror@db:5432/mirror",
    ));
    let ok = load(Some(Environment::Production), &vars);
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn the_shipped_files_are_built_in_and_a_config_dir_replaces_them_file_by_file() {
    let load_from = |dir: &std::path::Path, env: Environment| {
        Settings::load_with(LoadOptions {
            config_dir: Some(dir.to_path_buf()),
            environment: Some(env),
            env_vars: Some(HashMap::new()),
            overrides: vec![],
        })
    };
    let empty = tempfile::tempdir().unwrap();
    for env in [Environment::Development, Environment::Test] {
        let built_in = load_from(empty.path(), env).expect("built-in files");
        let shipped = load_from(&config_dir(), env).expect("config/");
        assert_eq!(format!("{built_in:?}"), format!("{shipped:?}"), "{env:?}");
    }
    // One file of its own: that one replaces its built-in twin.
    std::fs::write(
        empty.path().join("development.toml"),
        "[server]\nport = 9999\n",
    )
    .unwrap();
    let own = load_from(empty.path(), Environment::Development).unwrap();
    assert_eq!(own.server.port, 9999);
    assert_eq!(
        own.database.url.expose(),
        sync_hostaway::config::DEFAULT_DATABASE_URL
    );
    let missing = load_from(&empty.path().join("nope"), Environment::Development).unwrap_err();
    assert!(missing.to_string().contains("does not exist"), "{missing}");
    // The constant production refuses is default.toml's value.
    let defaults = std::fs::read_to_string(config_dir().join("default.toml")).unwrap();
    assert!(defaults.contains(&format!(
        "url = \"{}\"",
        sync_hostaway::config::DEFAULT_DATABASE_URL
    )));
}

#[test]
fn published_secrets_are_refused_where_others_could_use_them() {
    // Development settings on a public interface: refused, naming the key.
    let err = load(None, &[("SYNC_HOSTAWAY__SERVER__HOST", "0.0.0.0")]).unwrap_err();
    assert!(err.contains("server.host"), "{err}");
    assert!(err.contains("admin.api_token"), "{err}");
    // ... unless every published secret is replaced.
    let own = load(
        None,
        &[
            ("SYNC_HOSTAWAY__SERVER__HOST", "0.0.0.0"),
            ("SYNC_HOSTAWAY__ADMIN__API_TOKEN", "a-real-token"),
            ("SYNC_HOSTAWAY__WEBHOOKS__PASSWORD", "a-real-password"),
        ],
    );
    assert!(own.is_ok(), "{own:?}");
    assert!(load(None, &[]).is_ok(), "loopback keeps the demo working");
    // Production refuses them anywhere.
    let key = (
        "SYNC_HOSTAWAY__SECURITY__ENCRYPTION_KEY",
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    );
    for (name, value) in [
        ("SYNC_HOSTAWAY__ADMIN__API_TOKEN", "dev-admin-token"),
        ("SYNC_HOSTAWAY__ADMIN__API_TOKEN", "test-admin-token"),
    ] {
        let err = load(Some(Environment::Production), &[(name, value), key]).unwrap_err();
        assert!(err.contains("admin.api_token"), "{err}");
    }
    let err = load(
        Some(Environment::Production),
        &[
            ("SYNC_HOSTAWAY__ADMIN__API_TOKEN", "t"),
            key,
            ("SYNC_HOSTAWAY__WEBHOOKS__USERNAME", "hostaway"),
            ("SYNC_HOSTAWAY__WEBHOOKS__PASSWORD", "dev-webhook-password"),
        ],
    )
    .unwrap_err();
    assert!(err.contains("webhooks.password"), "{err}");
}

#[test]
fn a_mixed_case_schema_is_refused_up_front() {
    let err = load(None, &[("SYNC_HOSTAWAY__DATABASE__SCHEMA", "Hostaway")]).unwrap_err();
    assert!(err.contains("database.schema"), "{err}");
    assert!(err.contains("lower-case"), "{err}");
}

#[test]
fn secrets_never_show_in_debug_output() {
    let s = load(
        None,
        &[
            ("SYNC_HOSTAWAY__WEBHOOKS__PASSWORD", "hunter2-webhook"),
            ("SYNC_HOSTAWAY__ADMIN__API_TOKEN", "hunter2-admin"),
            (
                "SYNC_HOSTAWAY__DATABASE__URL",
                "postgres://u:hunter2-db@localhost/x",
            ),
        ],
    )
    .unwrap();
    let printed = format!("{s:?}");
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(printed.contains("[REDACTED]"));
}

#[test]
fn every_key_is_documented() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let defaults = std::fs::read_to_string(root.join("config/default.toml")).unwrap();
    let docs = std::fs::read_to_string(root.join("docs/configuration.md")).unwrap();
    let mut section = String::new();
    let mut keys = 0;
    for line in defaults.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((key, rest)) = line.split_once('=')
            && !line.starts_with('#')
        {
            let key = format!("{section}.{}", key.trim());
            assert!(rest.contains('#'), "`{key}` has no comment in default.toml");
            assert!(
                docs.contains(&format!("`{key}`")),
                "`{key}` is missing from docs/configuration.md"
            );
            keys += 1;
        }
    }
    assert!(keys > 50);
}

#[test]
fn the_standard_opentelemetry_variables_fill_what_the_config_leaves_unset() {
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_SERVICE_NAME", "mirror-eu"),
    ];
    let settings = load(None, &otel).unwrap();
    assert_eq!(&*settings.telemetry.otlp_endpoint, "http://collector:4317");
    assert_eq!(
        settings.telemetry.otlp_protocol,
        sync_hostaway::config::OtlpProtocol::Grpc
    );
    assert_eq!(&*settings.telemetry.service_name, "mirror-eu");
    // The service's own variables win.
    let mut both = otel.to_vec();
    both.push((
        "SYNC_HOSTAWAY__TELEMETRY__OTLP_ENDPOINT",
        "http://127.0.0.1:4318",
    ));
    both.push(("SYNC_HOSTAWAY__TELEMETRY__SERVICE_NAME", "mine"));
    let settings = load(None, &both).unwrap();
    assert_eq!(&*settings.telemetry.otlp_endpoint, "http://127.0.0.1:4318");
    assert_eq!(&*settings.telemetry.service_name, "mine");
    // A protocol the service does not speak is named.
    let err = load(None, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).unwrap_err();
    assert!(err.contains("otlp_protocol"), "{err}");
}
