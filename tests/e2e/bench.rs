//! A benchmark, not a test: `make bench` runs it and appends its figures to
//! `target/bench/results.md`. It asserts nothing about speed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// Sums the `store_operations` counters by store, verb and outcome.
fn store_operations(port: u16) -> BTreeMap<String, u64> {
    let (_, text) = http_get(port, "/metrics").unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("librechat_operator_store_operations_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        *out.entry(
            labels
                .trim_start_matches("librechat_operator_store_operations_total")
                .to_string(),
        )
        .or_default() += value.parse::<u64>().unwrap_or(0);
    }
    out
}

fn bcrypt_hashes(port: u16) -> u64 {
    let (_, text) = http_get(port, "/metrics").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("librechat_operator_bcrypt_hashes_total ")?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

#[tokio::test]
#[ignore = "a benchmark: run it with `make bench`"]
async fn bench_create_and_resync() {
    let users: usize = std::env::var("BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let w = World::with_instance("bench", json!({ "resyncPeriod": "5s" })).await;
    w.secret("pw", &[("password", "Bench-Password-123")]).await;

    let start = Instant::now();
    for i in 0..users {
        w.apply(
            "LibreChatUser",
            &format!("u{i}"),
            json!({ "instanceRef": { "name": "lc" }, "email": format!("u{i}@example.com"),
                    "password": { "secretRef": { "name": "pw", "key": "password" } } }),
        )
        .await;
    }
    let applied = start.elapsed();
    let api = dynamic(&w.client, &w.ns, "LibreChatUser");
    eventually_within(Duration::from_secs(600), || async {
        let list = api.list(&Default::default()).await.ok()?;
        let ready = list.items.iter().filter(|o| {
            let v = serde_json::to_value(o).unwrap_or_default();
            condition(&v, "Ready").is_some_and(|c| c.status == "True")
        });
        (ready.count() == users).then_some(())
    })
    .await
    .expect("every user Ready within 10 minutes");
    let all_ready = start.elapsed();

    // Settled: what does a resync cost? Three periods of 5s, nothing changing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = store_operations(w.http_port);
    let hashes_before = bcrypt_hashes(w.http_port);
    let quiet = Duration::from_secs(15);
    tokio::time::sleep(quiet).await;
    let after = store_operations(w.http_port);
    let hashes_after = bcrypt_hashes(w.http_port);
    let mut resync = String::new();
    for (labels, n) in &after {
        let delta = n - before.get(labels).copied().unwrap_or(0);
        if delta > 0 {
            resync.push_str(&format!(
                "| `{labels}` | {delta} | {:.2} |\n",
                delta as f64 / users as f64 / 3.0
            ));
        }
    }

    let report = format!(
        "\n## {} — {users} users, {} cores\n\n\
         - apply {users} LibreChatUsers: {:.1} s; all Ready after {:.1} s ({:.1} users/s, bcrypt cost 10 each)\n\
         - bcrypt hashes during {} s of resyncs: {}\n\n\
         | operation during {} s settled (3 resync periods) | count | per user per resync |\n|---|---|---|\n{resync}",
        jiff::Timestamp::now(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        applied.as_secs_f64(),
        all_ready.as_secs_f64(),
        users as f64 / all_ready.as_secs_f64(),
        quiet.as_secs(),
        hashes_after - hashes_before,
        quiet.as_secs(),
    );
    let dir = project_dir().join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("results.md");
    let mut previous = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| "# librechat-operator benchmarks\n".into());
    previous.push_str(&report);
    std::fs::write(&path, previous).unwrap();
    println!("{report}\n(appended to {})", path.display());
}
