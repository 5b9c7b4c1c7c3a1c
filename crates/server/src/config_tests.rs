//! Unit tests of config.rs and config_env.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[test]
fn parses_the_spec_shape_and_env_overrides() {
    let text = r#"
        appName = "My App"
        siteUrl = "https://auth.example.com"
        secret = "s3cr3t"
        adminApiKey = "k"
        [authMethods]
        anonymous = { enabled = true, maxAge = 2592000 }
        emailPassword = true
        [rateLimit]
        anonymousPerMinute = 10
        [socialProviders.google]
        clientId = "abc"
        issuer = "https://accounts.google.com"
    "#;
    let mut c = Config::from_toml(text).unwrap();
    assert_eq!(c.auth_methods.anonymous.max_age_secs(), Some(2_592_000));
    assert_eq!(c.rate_limit.anonymous_per_minute, 10);
    assert_eq!(c.social_providers["google"].client_id, "abc");
    let env = |k: &str| match k {
        "GUESTPASS_RATE_LIMIT_ANONYMOUS_PER_MINUTE" => Some("0".to_string()),
        "GUESTPASS_LISTEN" => Some("127.0.0.1:0".to_string()),
        "GUESTPASS_RECORDS_GUEST_MAX_RECORDS" => Some("10".to_string()),
        "GUESTPASS_SESSION_MAX_AGE_DAYS" => Some("30".to_string()),
        "GUESTPASS_TRUSTED_ORIGINS" => Some(" https://a.example , https://b.example:8443".into()),
        "GUESTPASS_TRUSTED_PROXIES" => Some("10.0.0.0/8, ::1".into()),
        "GUESTPASS_RATE_LIMIT_SIGN_IN_FAILURES_PER_EMAIL" => Some("3".into()),
        "GUESTPASS_SQLITE_WAL_RESTART_KIB" => Some("2".into()),
        _ => None,
    };
    c.apply_env(env).unwrap();
    assert_eq!(c.rate_limit.anonymous_per_minute, 0);
    assert_eq!(c.listen.port(), 0);
    assert_eq!(c.records.guest_max_records, 10);
    assert_eq!(c.trusted_proxies, ["10.0.0.0/8", "::1"]);
    assert_eq!(c.rate_limit.sign_in_failures_per_email, 3);
    assert_eq!(c.session_max_age(), chrono::Duration::days(30));
    assert_eq!(c.records.account_max_records, 50_000);
    // Less than a page still restarts the WAL after one.
    assert_eq!(c.store_options().wal_restart_frames, 1);
    assert_eq!(
        c.trusted_origins,
        ["https://a.example", "https://b.example:8443"]
    );
    assert_eq!(c.auth_methods.anonymous.max_age_secs(), Some(2_592_000));
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("s3cr3t") && shown.contains("<redacted>"),
        "{shown}"
    );

    let example = Config::from_toml(include_str!("../../../server.example.toml")).unwrap();
    assert_eq!(
        example.auth_methods.anonymous.max_age_secs(),
        Some(2_592_000)
    );
    assert_eq!(example.rate_limit.anonymous_per_minute, 30);
    assert_eq!(example.rate_limit.password_reset_per_minute, 10);
    assert_eq!(example.request_read_timeout_secs, 20);
    assert!(example.trusted_origins.is_empty(), "CORS closed by default");
    assert_eq!(example.records.tombstone_retention_days, 90);
    assert_eq!(example.session_max_age_days, 90);
    assert_eq!(
        Config::default().session_max_age(),
        chrono::Duration::days(90)
    );
    assert_eq!(example.records.guest_max_bytes, 8 * 1024 * 1024);
    assert_eq!(example.rate_limit.sign_in_failures_per_email, 10);
    assert_eq!(example.rate_limit.sign_in_failures_per_address, 100);
    assert_eq!(example.rate_limit.upgrade_per_hour, 20);
    assert_eq!(example.password_hash_queue, DEFAULT_PASSWORD_HASH_QUEUE);
    assert!(example.trusted_proxies.is_empty() && example.trusted_proxy_header.is_none());
    assert_eq!(example.proxy_header, "x-forwarded-for");
    assert_eq!(
        example.sqlite_wal_restart_kib,
        DEFAULT_SQLITE_WAL_RESTART_KIB
    );
    assert_eq!(example.store_options().wal_restart_frames, 16_384);

    let plain = Config::from_toml("[authMethods]\nanonymous = true\n").unwrap();
    assert!(plain.auth_methods.anonymous.enabled());
    assert!(Config::from_toml("bogus = 1").is_err());
}

#[test]
fn a_reachable_server_needs_long_secrets() {
    let long = "k".repeat(32);
    let with = |secret: Option<&str>, admin: Option<&str>| Config {
        secret: secret.map(Secret::new),
        admin_api_key: admin.map(Secret::new),
        ..Config::default()
    };
    let public: SocketAddr = "0.0.0.0:3000".parse().unwrap();
    for loopback in [
        "127.0.0.1:0",
        "127.8.9.1:3000",
        "[::1]:3000",
        "[::ffff:127.0.0.1]:1",
    ] {
        let at = loopback.parse().unwrap();
        assert!(with(None, Some("short")).check_secrets(at).is_ok(), "{at}");
    }
    assert!(with(Some(&long), Some(&long)).check_secrets(public).is_ok());
    // No admin key: the admin API is closed, nothing to guess.
    assert!(with(Some(&long), None).check_secrets(public).is_ok());
    let cases = [
        (with(None, None), "secret is not set"),
        (
            with(Some("s3cr3t-but-short"), None),
            "secret is shorter than 32 bytes",
        ),
        (
            with(Some(&long), Some("adm1n-short")),
            "adminApiKey is shorter than 32 characters",
        ),
    ];
    for (config, why) in cases {
        for at in [
            public,
            "[::]:3000".parse().unwrap(),
            "192.0.2.1:443".parse().unwrap(),
        ] {
            let e = config.check_secrets(at).unwrap_err().to_string();
            assert!(
                e.starts_with(why) && e.contains("openssl rand -base64 32"),
                "{e}"
            );
            assert!(!e.contains("s3cr3t") && !e.contains("adm1n"), "{e}");
        }
    }
}
