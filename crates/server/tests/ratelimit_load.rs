//! The anonymous rate limit under load: two instances on one PostgreSQL database,
//! 20 concurrent connections from several client addresses (loopback aliases; Linux
//! routes all of 127/8 to `lo`), requests spread over both instances. Per address
//! exactly `limit` guests are admitted in a window, the rest are refused with 429,
//! `Retry-After` and the typed body; the next window admits again.
//! Needs GUESTPASS_TEST_POSTGRES_URL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use chrono::Duration;
use common::*;
use guestpass_server::ManualClock;
use reqwest::Client;
use sqlx::Connection;

const LIMIT: usize = 30;
const ADDRESSES: [&str; 4] = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
const CONNECTIONS: usize = 20;
/// Per address: the limit plus half again, so every address is pushed past it.
const PER_ADDRESS: usize = 45;

/// What one sign-in got back.
#[derive(Debug)]
enum Answer {
    Admitted(String),
    Limited { retry_after: u64 },
}

/// A client whose sockets leave from `ip`, so the server sees that peer address.
fn client_from(ip: IpAddr) -> Client {
    Client::builder().local_address(ip).build().unwrap()
}

async fn sign_in(http: &Client, url: &str) -> Answer {
    let res = http
        .post(url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let got = into_json(res).await;
    match got.0.as_u16() {
        200 => {
            assert_eq!(got.1["user"]["isAnonymous"], true, "{}", got.1);
            Answer::Admitted(got.1["user"]["id"].as_str().unwrap().to_owned())
        }
        429 => {
            assert_error(&got, 429, "RATE_LIMITED");
            let raw = retry_after.expect("a 429 carries Retry-After");
            let secs: u64 = raw
                .parse()
                .unwrap_or_else(|_| panic!("Retry-After is integer seconds, got {raw:?}"));
            Answer::Limited { retry_after: secs }
        }
        other => panic!("unexpected status {other}: {}", got.1),
    }
}

/// Sends `per_address` sign-ins from each address over `CONNECTIONS` concurrent
/// workers, alternating the two instances; returns each address's answers.
async fn burst(urls: [String; 2], per_address: usize) -> HashMap<IpAddr, Vec<Answer>> {
    let workers_per_address = CONNECTIONS / ADDRESSES.len();
    assert_eq!(per_address % workers_per_address, 0);
    let mut tasks = Vec::new();
    for w in 0..CONNECTIONS {
        let ip: IpAddr = ADDRESSES[w % ADDRESSES.len()].parse().unwrap();
        let urls = urls.clone();
        tasks.push(tokio::spawn(async move {
            let http = client_from(ip);
            let mut answers = Vec::new();
            for i in 0..per_address / workers_per_address {
                answers.push(sign_in(&http, &urls[(w + i) % 2]).await);
            }
            (ip, answers)
        }));
    }
    let mut by_ip: HashMap<IpAddr, Vec<Answer>> = HashMap::new();
    for t in tasks {
        let (ip, answers) = t.await.unwrap();
        by_ip.entry(ip).or_default().extend(answers);
    }
    by_ip
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_limit_holds_under_load_on_two_instances() {
    let Some(backend) = Backend::postgres() else {
        return report_skip("per_address_limit_holds_under_load_on_two_instances");
    };
    let db = Arc::new(TestDb::new(&backend).await);
    // One manual clock for both instances: the whole burst falls in one window
    // (t0 is 5 s into its minute), whatever the wall clock does meanwhile.
    let clock = ManualClock::new(t0());
    let limit = |c: &mut guestpass_server::Config| {
        c.rate_limit.anonymous_per_minute = u32::try_from(LIMIT).unwrap()
    };
    let a = TestServer::start_on(db.clone(), clock.clone(), limit).await;
    let b = TestServer::start_on(db.clone(), clock.clone(), limit).await;
    let urls = [a.url("/sign-in/anonymous"), b.url("/sign-in/anonymous")];

    let first = burst(urls.clone(), PER_ADDRESS).await;
    let mut admitted = HashSet::new();
    for ip in ADDRESSES {
        let answers = &first[&ip.parse::<IpAddr>().unwrap()];
        let ids: Vec<&String> = answers
            .iter()
            .filter_map(|a| match a {
                Answer::Admitted(id) => Some(id),
                Answer::Limited { .. } => None,
            })
            .collect();
        let waits: Vec<u64> = answers
            .iter()
            .filter_map(|a| match a {
                Answer::Limited { retry_after } => Some(*retry_after),
                Answer::Admitted(_) => None,
            })
            .collect();
        eprintln!(
            "{ip}: {} admitted, {} refused with 429",
            ids.len(),
            waits.len()
        );
        assert_eq!(
            (ids.len(), waits.len()),
            (LIMIT, PER_ADDRESS - LIMIT),
            "{ip}"
        );
        // The seconds left in the window: 60 - 5.
        assert!(waits.iter().all(|&s| s == 55), "{ip}: {waits:?}");
        admitted.extend(ids.into_iter().cloned());
    }
    assert_eq!(admitted.len(), LIMIT * ADDRESSES.len(), "distinct guests");

    // The next window admits every address again.
    clock.advance(Duration::seconds(60));
    let second = burst(urls, CONNECTIONS / ADDRESSES.len()).await;
    for ip in ADDRESSES {
        for answer in &second[&ip.parse::<IpAddr>().unwrap()] {
            match answer {
                Answer::Admitted(id) => assert!(admitted.insert(id.clone())),
                Answer::Limited { .. } => panic!("{ip} refused in a fresh window"),
            }
        }
    }

    // The database holds exactly the guests that were told yes.
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let stored: HashSet<String> = sqlx::query_scalar("SELECT id FROM users")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .collect();
    conn.close().await.unwrap();
    assert_eq!(
        stored.len(),
        (LIMIT + CONNECTIONS / ADDRESSES.len()) * ADDRESSES.len()
    );
    assert_eq!(stored, admitted);

    a.handle.shutdown().await.unwrap();
    b.handle.shutdown().await.unwrap();
    db.drop_db().await;
}
