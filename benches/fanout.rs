//! Fleet fan-out latency: how long after a revocation is acknowledged the
//! other instances of a fleet hear of it, over PostgreSQL `LISTEN/NOTIFY`
//! on loopback.
//!
//! Run: `cargo bench --bench fanout` (N = 200 revocations; under
//! `cargo test` it runs N = 5 as a smoke test). It starts a real PostgreSQL
//! server (Debian's, as the tests do), opens three stores on one database
//! (one writer, two listening instances), and for each revocation measures
//! from the moment `revoke_session` returned (the write is committed and
//! acknowledged) to the moment each listener's feed delivered it. The
//! proxy applies a delivered change to its cache in microseconds
//! (`SessionCache::revoke`), so this is the fan-out the contract bounds
//! ("refused by every instance within 1 s"). Results: `BENCHMARKS.md`.

use std::time::{Duration, Instant};

use portcullis::store::postgres::PgStore;
use portcullis::store::{ChangeKind, FeedEvent, SessionRecord, SessionStore as _};
use portcullis::testing::postgres::PgServer;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n = if smoke { 5 } else { 200 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let url = PgServer::shared().fresh_database().await;
        let writer = PgStore::open(&url, 4).await.expect("writer");
        let mut feeds = Vec::new();
        let mut listeners = Vec::new();
        for _ in 0..2 {
            let s = PgStore::open(&url, 4).await.expect("listener");
            let mut rx = s.subscribe().expect("feed");
            // The first event says the listener is connected.
            assert_eq!(rx.recv().await, Some(FeedEvent::CatchUp));
            feeds.push(rx);
            listeners.push(s);
        }
        let mut lags = Vec::with_capacity(n * 2);
        for i in 0..n {
            let sid = format!("fanout-{i}-{}", std::process::id());
            let now = portcullis::session::token::now_unix();
            let rec = SessionRecord {
                sid: sid.clone(),
                identity: portcullis::identity::Identity {
                    sub: format!("u{i}"),
                    email: format!("u{i}@example.com"),
                    email_verified: true,
                    name: None,
                    idp: "okta".into(),
                    idp_type: "okta".into(),
                    groups: Default::default(),
                    amr: vec![],
                    custom: Default::default(),
                },
                created_at: now,
                expires_at: now + 3600,
                revoked: false,
            };
            writer.create_session(&rec).await.expect("create");
            assert!(writer.revoke_session(&sid).await.expect("revoke"));
            let acked = Instant::now();
            for rx in &mut feeds {
                loop {
                    let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                        .await
                        .expect("delivered within 5 s")
                        .expect("feed open");
                    if let FeedEvent::Change(c) = ev {
                        if c.kind == (ChangeKind::Revoked { sid: sid.clone() }) {
                            break;
                        }
                    }
                }
                lags.push(acked.elapsed());
            }
        }
        lags.sort();
        println!(
            "fan-out after the acknowledged write, {} deliveries ({n} revocations x 2 instances): p50 {:?}, p99 {:?}, max {:?}",
            lags.len(),
            percentile(&lags, 0.5),
            percentile(&lags, 0.99),
            lags[lags.len() - 1]
        );
        drop(listeners);
    });
}
