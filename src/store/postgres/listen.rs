//! The push half of fleet-mode fan-out: one `LISTEN portcullis_changes`
//! connection per instance, turning each notification into a
//! [`FeedEvent`]. After a lost connection (the database restarted, the
//! network dropped) it reconnects and sends [`FeedEvent::CatchUp`], so the
//! applier polls the change log for what was announced meanwhile; a
//! payload it does not understand (a newer instance's) is logged and
//! answered the same way.

use std::time::Duration;

use serde::Deserialize;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::mpsc;

use super::change_from;
use crate::store::FeedEvent;

/// The notification channel every instance listens on.
pub(crate) const CHANNEL: &str = "portcullis_changes";

/// Pause between two attempts to (re)connect the listener.
const RETRY: Duration = Duration::from_millis(250);

/// Events buffered for the applier; past this the listener waits.
const BUFFER: usize = 4096;

/// A notification's payload, as `sql::ANNOUNCE` builds it.
#[derive(Debug, Deserialize)]
struct Payload {
    seq: i64,
    at: i64,
    kind: String,
    sid: Option<String>,
    idp: Option<String>,
    sub: Option<String>,
}

/// The event a payload stands for; `None` if it is not one we understand.
pub(crate) fn parse(payload: &str) -> Option<FeedEvent> {
    let p: Payload = serde_json::from_str(payload).ok()?;
    change_from(p.seq, p.at, &p.kind, p.sid, p.idp, p.sub).map(FeedEvent::Change)
}

/// Listen on `pool`'s database until the returned receiver is dropped.
pub(crate) fn spawn(pool: PgPool) -> mpsc::Receiver<FeedEvent> {
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        let mut connected_before = false;
        loop {
            let mut listener = tokio::select! {
                _ = tx.closed() => return,
                l = connect(&pool) => match l {
                    Ok(l) => l,
                    Err(e) => {
                        if connected_before {
                            tracing::debug!(error = %e, "Store change listener still disconnected");
                        } else {
                            tracing::warn!(error = %e, "Store change listener cannot connect; polling only");
                        }
                        tokio::select! {
                            _ = tx.closed() => return,
                            _ = tokio::time::sleep(RETRY) => continue,
                        }
                    }
                },
            };
            if connected_before {
                tracing::info!("Store change listener reconnected; catching up");
            }
            connected_before = true;
            if tx.send(FeedEvent::CatchUp).await.is_err() {
                return;
            }
            loop {
                let next = tokio::select! {
                    _ = tx.closed() => return,
                    n = listener.try_recv() => n,
                };
                let event = match next {
                    Ok(Some(n)) => match parse(n.payload()) {
                        Some(event) => event,
                        None => {
                            tracing::warn!(
                                payload.len = n.payload().len(),
                                "Store change notification not understood; catching up by polling"
                            );
                            FeedEvent::CatchUp
                        }
                    },
                    Ok(None) => {
                        tracing::warn!("Store change listener lost its connection");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Store change listener failed");
                        break;
                    }
                };
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Change, ChangeKind};

    #[test]
    fn a_revocation_payload_parses() {
        let p =
            r#"{"seq":7,"at":1700000000123,"kind":"revoked","sid":"abc","idp":null,"sub":null}"#;
        assert_eq!(
            parse(p),
            Some(FeedEvent::Change(Change {
                seq: 7,
                at_ms: 1_700_000_000_123,
                kind: ChangeKind::Revoked { sid: "abc".into() },
            }))
        );
    }

    #[test]
    fn a_user_payload_parses() {
        let p = r#"{"seq":8,"at":1,"kind":"user","sid":null,"idp":"okta","sub":"00u1"}"#;
        let Some(FeedEvent::Change(c)) = parse(p) else {
            panic!("not parsed")
        };
        assert_eq!(
            c.kind,
            ChangeKind::User {
                idp: "okta".into(),
                sub: "00u1".into()
            }
        );
    }

    #[test]
    fn unknown_or_malformed_payloads_are_not_understood() {
        for p in [
            "",
            "not json",
            r#"{"seq":1,"at":1,"kind":"future-kind","sid":null,"idp":null,"sub":null}"#,
            r#"{"seq":1,"at":1,"kind":"revoked","sid":null,"idp":null,"sub":null}"#,
            r#"{"seq":"x","at":1,"kind":"keys"}"#,
        ] {
            assert_eq!(parse(p), None, "{p}");
        }
    }
}
