//! Wrong admin API keys are throttled per client address (issue 14, item 8), on
//! SQLite and PostgreSQL: a guessing run gets 429 with Retry-After after 10
//! wrong keys in a minute, for every admin request from its address (the right
//! key too, so a guess cannot be told right), while the admin at another address
//! goes on; right keys are never counted. The addresses are real peers:
//! clients bound to 127.0.0.2 and 127.0.0.3.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;

use chrono::Duration;
use common::*;
use reqwest::Client;

both_backends!(wrong_admin_keys_get_429_per_address);

fn client_from(ip: [u8; 4]) -> Client {
    Client::builder()
        .local_address(IpAddr::from(ip))
        .build()
        .unwrap()
}

/// `GET /admin/list-users` with `key`: the status and `Retry-After`, if any.
async fn list_users(s: &TestServer, client: &Client, key: &str) -> (u16, Option<u64>) {
    let res = client
        .get(s.url("/admin/list-users"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let status = res.status().as_u16();
    if status == 429 {
        let (_, body) = into_json(res).await;
        assert_eq!(body["code"], "RATE_LIMITED", "{body}");
    }
    (status, retry_after)
}

async fn wrong_admin_keys_get_429_per_address(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let attacker = client_from([127, 0, 0, 2]);
    let admin = client_from([127, 0, 0, 3]);

    // Right keys are never counted: far more than the limit, all served.
    for _ in 0..25 {
        assert_eq!(list_users(&s, &admin, ADMIN_KEY).await, (200, None));
    }
    // Ten wrong keys (a right one between them changes nothing) are 401s...
    for i in 0..10 {
        let guess = format!("guess-{i:02}-0123456789abcdef0123456789");
        assert_eq!(list_users(&s, &attacker, &guess).await, (401, None), "{i}");
        if i == 4 {
            assert_eq!(list_users(&s, &attacker, ADMIN_KEY).await, (200, None));
        }
    }
    // ...the eleventh is 429 until the minute ends (t0 is 5 s into one), and so
    // is the right key from that address.
    let left = 55;
    assert_eq!(
        list_users(&s, &attacker, "guess-10").await,
        (429, Some(left))
    );
    assert_eq!(
        list_users(&s, &attacker, ADMIN_KEY).await,
        (429, Some(left))
    );
    // The admin at another address is untouched.
    assert_eq!(list_users(&s, &admin, ADMIN_KEY).await, (200, None));
    assert_eq!(list_users(&s, &admin, "typo").await, (401, None));
    assert_eq!(list_users(&s, &admin, ADMIN_KEY).await, (200, None));

    // A new minute: the attacker's address is heard again, from zero.
    s.clock.advance(Duration::seconds(left as i64));
    assert_eq!(list_users(&s, &attacker, ADMIN_KEY).await, (200, None));
    assert_eq!(list_users(&s, &attacker, "guess-11").await, (401, None));
    s.stop().await;
}
