//! Session events as they happen: every event row is followed by a Postgres `NOTIFY` in
//! the same transaction; one `LISTEN` connection per process fans the session ids out to
//! the open event streams, which then read the new rows. Rows are the truth, so a stream
//! resumed after a restart (`Last-Event-ID`) misses nothing. A stream that waits costs
//! nothing: it reads again only when told (its session's id, or `EVERYONE` after the
//! listener reconnected). At shutdown, `close` ends every stream at once.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use super::lifecycle::SessionState;

/// The Postgres channel; the payload is the session id.
pub const CHANNEL: &str = "daas_session_events";

/// Appends a session event and notifies the listeners when the transaction commits.
pub async fn add(conn: &mut PgConnection, session_id: Uuid, state: SessionState, message: &str) -> sqlx::Result<()> {
    sqlx::query(
        "with e as (insert into session_events (session_id, state, message) values ($1, $2, $3) returning session_id)
         select pg_notify($4, session_id::text) from e",
    )
    .bind(session_id)
    .bind(state)
    .bind(message)
    .bind(CHANNEL)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `add`, in the state the session is in now.
pub async fn add_now(conn: &mut PgConnection, session_id: Uuid, message: &str) -> sqlx::Result<()> {
    sqlx::query(
        "with e as (insert into session_events (session_id, state, message)
                    select id, state, $2 from sessions where id = $1 returning session_id)
         select pg_notify($3, session_id::text) from e",
    )
    .bind(session_id)
    .bind(message)
    .bind(CHANNEL)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The process's one `LISTEN` connection, fanned out to the event streams.
pub struct Hub {
    db: PgPool,
    sender: broadcast::Sender<Uuid>,
    /// Set once the process is shutting down: long-lived streams and relays end at once
    /// (clients resume with `Last-Event-ID`, or reconnect).
    closing: watch::Sender<bool>,
}

/// Sent to every subscriber after the listener (re)connects: notifications may have been
/// missed meanwhile, so everyone looks again.
pub const EVERYONE: Uuid = Uuid::nil();

impl Hub {
    /// A hub that hears nothing until `listen` runs.
    pub fn new(db: PgPool) -> Self {
        Self { db, sender: broadcast::channel(1024).0, closing: watch::channel(false).0 }
    }

    /// Ends every stream and relay that waits on `closed` (at shutdown).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once `close` was called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closing = self.closing.subscribe();
        async move {
            let _ = closing.wait_for(|closing| *closing).await;
        }
    }

    /// Session ids with new events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Uuid> {
        self.sender.subscribe()
    }

    /// The `LISTEN` connection, for the life of the process (`crate::background` starts
    /// it): reconnects after a loss, ends when the pool closes.
    pub fn listen(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(listen(self.db.clone(), self.sender.clone()))
    }
}

async fn listen(db: PgPool, sender: broadcast::Sender<Uuid>) {
    loop {
        match sqlx::postgres::PgListener::connect_with(&db).await {
            Ok(mut listener) => {
                if let Err(err) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %err, "cannot listen for session events");
                } else {
                    let _ = sender.send(EVERYONE);
                    loop {
                        match listener.recv().await {
                            Ok(note) => {
                                if let Ok(id) = note.payload().parse() {
                                    let _ = sender.send(id);
                                }
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "lost the session events listener");
                                break;
                            }
                        }
                    }
                }
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(err) => tracing::warn!(error = %err, "cannot listen for session events"),
        }
        if db.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
