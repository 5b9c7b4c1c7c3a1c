//! Rate-limit keys (issue 14, item 4), on SQLite and PostgreSQL, against the
//! real server on port 0: IPv6 clients share a bucket per /64; a proxy header
//! counts only from a trusted proxy (here the test's loopback is configured as
//! the proxy and the header carries the client); a spoofed header from an
//! untrusted peer changes nothing; `anonymous/upgrade` is limited per address.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::*;
use serde_json::json;

both_backends!(
    two_ipv6_addresses_in_one_64_share_a_bucket,
    a_spoofed_header_from_an_untrusted_peer_changes_nothing,
    the_upgrade_is_limited_per_address,
);

async fn anonymous_from(s: &TestServer, header: &str, value: &str) -> u16 {
    s.http
        .post(s.url("/sign-in/anonymous"))
        .header(header, value)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn two_ipv6_addresses_in_one_64_share_a_bucket(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| {
        c.trusted_proxies = vec!["127.0.0.1".into()];
        c.rate_limit.anonymous_per_minute = 2;
    })
    .await;
    let xff = "x-forwarded-for";
    assert_eq!(anonymous_from(&s, xff, "2001:db8:1:2::1").await, 200);
    assert_eq!(anonymous_from(&s, xff, "2001:db8:1:2:ffff::9").await, 200);
    // A third address of the same /64 (with a port) is over the shared limit.
    assert_eq!(
        anonymous_from(&s, xff, "[2001:db8:1:2:abcd::1]:4711").await,
        429
    );
    // Another /64 has its own bucket; so does the IPv4 proxy itself.
    assert_eq!(anonymous_from(&s, xff, "2001:db8:1:3::1").await, 200);
    assert_eq!(s.post("/sign-in/anonymous", None, json!({})).await.0, 200);
    s.stop().await;

    // The same through RFC 7239 Forwarded, quoted, with ports.
    let s = TestServer::start_with(&backend, |c| {
        c.trusted_proxies = vec!["127.0.0.0/8".into()];
        c.proxy_header = "forwarded".into();
        c.rate_limit.anonymous_per_minute = 2;
    })
    .await;
    let fwd = "forwarded";
    let one = "for=\"[2001:db8:5:6::1]:1234\";proto=https";
    assert_eq!(anonymous_from(&s, fwd, one).await, 200);
    assert_eq!(
        anonymous_from(&s, fwd, "for=\"[2001:db8:5:6::2]\"").await,
        200
    );
    assert_eq!(
        anonymous_from(&s, fwd, "for=\"[2001:db8:5:6:7::8]:99\"").await,
        429
    );
    // A client-written entry left of the client's is ignored (walked right to left).
    let spoof = "for=198.51.100.77, for=\"[2001:db8:5:6::3]\"";
    assert_eq!(anonymous_from(&s, fwd, spoof).await, 429);
    s.stop().await;
}

async fn a_spoofed_header_from_an_untrusted_peer_changes_nothing(backend: Backend) {
    // The proxy is somewhere else: the loopback peer is an ordinary client.
    for trusted in [vec![], vec!["192.0.2.1".to_string()]] {
        let s = TestServer::start_with(&backend, |c| {
            c.trusted_proxies = trusted;
            c.rate_limit.anonymous_per_minute = 2;
        })
        .await;
        assert_eq!(
            anonymous_from(&s, "x-forwarded-for", "198.51.100.1").await,
            200
        );
        assert_eq!(
            anonymous_from(&s, "forwarded", "for=198.51.100.2").await,
            200
        );
        // A fresh address each time, in either header: still the peer's bucket.
        assert_eq!(
            anonymous_from(&s, "x-forwarded-for", "198.51.100.3").await,
            429
        );
        assert_eq!(
            anonymous_from(&s, "forwarded", "for=\"[2001:db8::9]:1\"").await,
            429
        );
        assert_eq!(s.post("/sign-in/anonymous", None, json!({})).await.0, 429);
        s.stop().await;
    }
}

async fn the_upgrade_is_limited_per_address(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| c.rate_limit.upgrade_per_hour = 2).await;
    let up = |email: &'static str| json!({"email": email, "password": "password123"});
    let (_, first) = s.guest().await;
    let (_, second) = s.guest().await;
    let (_, third) = s.guest().await;
    assert_eq!(
        s.post("/anonymous/upgrade", Some(&first), up("a@example.com"))
            .await
            .0,
        200
    );
    // The 409 that tells an address is registered...
    assert_error(
        &s.post("/anonymous/upgrade", Some(&second), up("a@example.com"))
            .await,
        409,
        "EMAIL_ALREADY_IN_USE",
    );
    // ...is not answered past the limit, nor is a new upgrade (a mailed link).
    let res = s
        .call(
            reqwest::Method::POST,
            "/anonymous/upgrade",
            Some(&third),
            Some(up("b@example.com")),
        )
        .await;
    assert_eq!(
        res.headers()["retry-after"],
        "3595",
        "t0 is 5 s into the hour"
    );
    assert_error(&into_json(res).await, 429, "RATE_LIMITED");
    // The sign-up route (the same probe without a guest) shares the count.
    assert_error(
        &s.post("/sign-up/email", None, up("a@example.com")).await,
        429,
        "RATE_LIMITED",
    );
    // The next hour opens again.
    s.clock.advance(Duration::hours(1));
    assert_eq!(
        s.post("/anonymous/upgrade", Some(&third), up("b@example.com"))
            .await
            .0,
        200
    );
    s.stop().await;
}
