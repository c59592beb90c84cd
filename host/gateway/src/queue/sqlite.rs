//! The SQLite [`CallStore`]: one node's async queue, in `queue.sqlite3` of the state directory.
//!
//! Why SQLite (through `rusqlite`, built from its bundled source): a call acknowledged with 202 must
//! survive `kill -9` and power loss, which SQLite's write-ahead log with `synchronous=FULL` gives
//! after each commit; the queue needs secondary orderings (due time per function, finished time for
//! pruning) that SQL indexes give without hand-kept index tables; and an operator can open the file
//! with the `sqlite3` shell to see what is queued. `redb` would have been a smaller build, but every
//! ordering would have been ours to keep consistent.
//!
//! One connection, behind a mutex: SQLite has one writer at a time anyway, and callers batch
//! (several enqueues share one commit, so one `fsync` covers many calls; so do the outcomes of calls
//! that end together).
//!
//! **Taking a call to run writes nothing.** A call is written when it is queued and when it ends
//! (or is queued again for a retry); the calls this process has taken to run are kept in memory
//! ([`Taken`]), under the same mutex as the connection, and the store answers for them: the status
//! says `running`, a cancel is refused, the next claim skips them. A commit costs far more than its
//! rows here (a single-row update with its index entries measured about 200 µs against 3 µs for an
//! empty commit), so this takes one of the three commits a call used to cost. Nothing is lost by
//! it: a call running when the process dies is still `queued` on disk and runs again after the
//! restart. So that the next process can still say which calls it interrupted (and count their
//! attempt), the next commit made anyway (new calls, or outcomes) also stamps the calls taken since
//! the previous one with `running_since`, a column no index holds; their outcome clears it.
//!
//! Every call into SQLite blocks (on the disk, on `fsync`, on the mutex), so each runs on tokio's
//! blocking pool (`spawn_blocking`, see [`SqliteStore::blocking`]), never on an async worker thread;
//! the futures of [`CallStore`] only wait for it. The SQL itself is plain synchronous functions of a
//! `&mut Connection` below.
//!
//! Only the writes that carry a promise wait for the disk (`synchronous=FULL`): an enqueue, since the
//! client is told 202 after it, and a cancel, since the client is told the call will not run. Every
//! other write (a call taken to run, its end, a callback's delivery) commits with
//! `synchronous=NORMAL`: it survives the process dying (`kill -9`) as the others do, and on power loss
//! the worst case is a call that runs or calls back again, which at-least-once delivery allows. The
//! write-ahead log is sequential, so a later `FULL` commit makes every earlier one durable too.
//!
//! Over 600 lines: one noun, the SQLite store: its schema, the SQL behind each `CallStore` method,
//! and the tests of both (the last quarter).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use futures::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, params};

use super::store::{
    Call, CallState, CallStatus, CallStore, CallbackState, CancelOutcome, Depth, NewCall, Outcome,
    PendingCallback, StoredResponse,
};

/// The SQLite [`CallStore`].
#[derive(Debug)]
pub struct SqliteStore {
    /// Shared with the blocking thread each call runs on.
    db: Arc<Mutex<Db>>,
}

/// The connection, and the calls taken to run that it does not record (see the module
/// documentation): one lock for both, so a claim, an outcome or a status sees them agree.
#[derive(Debug)]
struct Db {
    connection: Connection,
    /// By call id; at most the queue's concurrency, since each is removed by its outcome.
    taken: HashMap<String, Taken>,
    /// Taken calls not stamped `running_since` on disk yet: the next commit does it.
    unstamped: Vec<(String, u64)>,
}

/// A call this process is running, as the store remembers it until its outcome is committed.
#[derive(Debug, Clone)]
struct Taken {
    function: String,
    /// Its queued body's size, for [`CallStore::depths`].
    body_bytes: u64,
    started_at: u64,
    /// This run's attempt (1 for the first).
    attempts: u32,
}

impl Db {
    /// How many of `function`'s calls are taken.
    fn taken_of(&self, function: &str) -> usize {
        self.taken
            .values()
            .filter(|taken| taken.function == function)
            .count()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS calls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    function TEXT NOT NULL,
    called_as TEXT NOT NULL,
    state TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query TEXT,
    headers BLOB NOT NULL,
    body BLOB NOT NULL,
    body_bytes INTEGER NOT NULL,
    callback_url TEXT,
    start_time TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER,
    queued_at INTEGER NOT NULL,
    due_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    status_code INTEGER,
    duration_ms INTEGER,
    error TEXT,
    response_headers BLOB,
    response_body BLOB,
    callback_state TEXT,
    callback_attempts INTEGER NOT NULL DEFAULT 0,
    running_since INTEGER
);
CREATE INDEX IF NOT EXISTS calls_by_function ON calls (state, function, due_at, seq);
-- Each index entry is rewritten when a call changes state: no index that no query needs.
-- (An earlier schema had calls_by_due: next_due reads calls_by_function now.)
DROP INDEX IF EXISTS calls_by_due;
CREATE INDEX IF NOT EXISTS calls_finished ON calls (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS calls_callbacks ON calls (callback_state) WHERE callback_state = 'pending';
";

impl SqliteStore {
    /// Opens (or creates) the queue database at `path`, on the blocking pool.
    pub async fn open(path: &Path) -> anyhow::Result<SqliteStore> {
        let path = path.to_path_buf();
        let connection = tokio::task::spawn_blocking(move || open_connection(&path))
            .await
            .context("opening the queue database")??;
        Ok(SqliteStore {
            db: Arc::new(Mutex::new(Db {
                connection,
                taken: HashMap::new(),
                unstamped: Vec::new(),
            })),
        })
    }

    /// Runs `work` with the connection and the taken calls on tokio's blocking pool; the future
    /// only waits for it. Dropping the future does not stop the work: a commit that started
    /// completes.
    fn blocking<T, F>(&self, work: F) -> BoxFuture<'static, anyhow::Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> anyhow::Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut db = db.lock().unwrap_or_else(PoisonError::into_inner);
                work(&mut db)
            })
            .await
            .context("the queue database's blocking task")?
        })
    }
}

impl CallStore for SqliteStore {
    fn enqueue(&self, calls: Vec<NewCall>) -> BoxFuture<'_, anyhow::Result<Vec<bool>>> {
        self.blocking(move |db| insert_calls(db, &calls))
    }

    fn claim(
        &self,
        function: String,
        now: u64,
        limit: usize,
    ) -> BoxFuture<'_, anyhow::Result<Vec<Call>>> {
        self.blocking(move |db| claim_due(db, &function, now, limit))
    }

    fn next_due(&self) -> BoxFuture<'_, anyhow::Result<Option<u64>>> {
        self.blocking(next_due)
    }

    fn record(&self, outcomes: Vec<Outcome>) -> BoxFuture<'_, anyhow::Result<()>> {
        self.blocking(move |db| apply_outcomes(db, &outcomes))
    }

    fn pending_callbacks(
        &self,
        limit: usize,
    ) -> BoxFuture<'_, anyhow::Result<Vec<PendingCallback>>> {
        self.blocking(move |db| pending_callbacks(&mut db.connection, limit))
    }

    fn status(&self, id: String) -> BoxFuture<'_, anyhow::Result<Option<CallStatus>>> {
        self.blocking(move |db| status(db, &id))
    }

    fn cancel(&self, id: String, now: u64) -> BoxFuture<'_, anyhow::Result<CancelOutcome>> {
        self.blocking(move |db| cancel(db, &id, now))
    }

    fn recover(&self, now: u64) -> BoxFuture<'_, anyhow::Result<u64>> {
        self.blocking(move |db| requeue_running(db, now))
    }

    fn depths(&self) -> BoxFuture<'_, anyhow::Result<Vec<(String, Depth)>>> {
        self.blocking(depths)
    }

    fn prune(&self, keep: u64) -> BoxFuture<'_, anyhow::Result<u64>> {
        self.blocking(move |db| prune(&mut db.connection, keep))
    }
}

/// Opens (or creates) the database at `path` and its tables; blocks.
fn open_connection(path: &Path) -> anyhow::Result<Connection> {
    let connection =
        Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    // WAL: readers do not block the writer. `synchronous` is raised to FULL around the writes
    // that must be on disk before the client hears of them (see the module documentation).
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .context("setting the journal mode")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "foreign_keys", "OFF")?;
    // A page cache of up to 64 MiB (the default is 2 MiB): with a deep queue, every update
    // otherwise reads its pages back from the kernel.
    connection.pragma_update(None, "cache_size", -65536)?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    connection
        .execute_batch(SCHEMA)
        .context("creating the queue tables")?;
    // A queue made before `running_since` existed.
    let columns: Vec<String> = connection
        .prepare("SELECT name FROM pragma_table_info('calls')")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    if !columns.iter().any(|c| c == "running_since") {
        connection
            .execute_batch("ALTER TABLE calls ADD COLUMN running_since INTEGER")
            .context("adding running_since to the queue table")?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Queued bodies may carry credentials: owner only, like the rest of the state.
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(connection)
}

/// Runs `write` with commits that wait for the disk (`synchronous=FULL`), then goes back to
/// NORMAL (see the module documentation).
fn durably<T>(
    connection: &mut Connection,
    write: impl FnOnce(&mut Connection) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    connection.pragma_update(None, "synchronous", "FULL")?;
    let result = write(connection);
    let reset = connection.pragma_update(None, "synchronous", "NORMAL");
    let value = result?;
    reset?;
    Ok(value)
}

/// Headers as stored: `name:value\n` per header. Header values cannot hold `\n`, names cannot hold `:`.
fn encode_headers(headers: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

/// The inverse of [`encode_headers`].
fn decode_headers(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .filter_map(|line| {
            let colon = line.iter().position(|b| *b == b':')?;
            let name = std::str::from_utf8(&line[..colon]).ok()?.to_string();
            Some((name, line[colon + 1..].to_vec()))
        })
        .collect()
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn to_u32(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

/// Inserts new calls in one durable commit; for each, whether it was new.
fn insert_calls(db: &mut Db, calls: &[NewCall]) -> anyhow::Result<Vec<bool>> {
    let stamps = std::mem::take(&mut db.unstamped);
    let result = durably(&mut db.connection, |connection| {
        let tx = connection.transaction()?;
        stamp_running(&tx, &stamps)?;
        let mut inserted = Vec::with_capacity(calls.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO calls (id, function, called_as, state, method, path, query,
                    headers, body, body_bytes, callback_url, start_time, queued_at, due_at)
                 VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
            )?;
            for call in calls {
                let rows = insert.execute(params![
                    call.id,
                    call.function,
                    call.called_as,
                    call.method,
                    call.path,
                    call.query,
                    encode_headers(&call.headers),
                    call.body,
                    to_i64(call.body.len() as u64),
                    call.callback_url,
                    call.start_time,
                    to_i64(call.queued_at),
                ])?;
                inserted.push(rows == 1);
            }
        }
        tx.commit().context("committing queued calls")?;
        Ok(inserted)
    });
    if result.is_err() {
        db.unstamped.extend(stamps);
    }
    result
}

/// Stamps taken calls `running_since` when they were taken, inside a commit made anyway.
fn stamp_running(tx: &rusqlite::Transaction<'_>, stamps: &[(String, u64)]) -> anyhow::Result<()> {
    let mut stamp = tx
        .prepare_cached("UPDATE calls SET running_since = ?2 WHERE id = ?1 AND state = 'queued'")?;
    for (id, since) in stamps {
        stamp.execute(params![id, to_i64(*since)])?;
    }
    Ok(())
}

/// Takes up to `limit` of `function`'s due calls, oldest first, and remembers them as taken:
/// nothing is written (see the module documentation).
fn claim_due(db: &mut Db, function: &str, now: u64, limit: usize) -> anyhow::Result<Vec<Call>> {
    // The taken calls are still `queued` on disk, first in this order: ask for as many more, and
    // read the whole rows of the chosen ones only.
    let ask = limit + db.taken_of(function);
    let chosen: Vec<String> = {
        let mut select = db.connection.prepare_cached(
            "SELECT id FROM calls WHERE state = 'queued' AND function = ?1 AND due_at <= ?2
             ORDER BY due_at, seq LIMIT ?3",
        )?;
        let ids = select.query_map(params![function, to_i64(now), to_i64(ask as u64)], |row| {
            row.get::<_, String>(0)
        })?;
        let mut chosen = Vec::with_capacity(limit);
        for id in ids {
            let id = id?;
            if !db.taken.contains_key(&id) {
                chosen.push(id);
                if chosen.len() == limit {
                    break;
                }
            }
        }
        chosen
    };
    let mut calls = Vec::with_capacity(chosen.len());
    let mut read = db.connection.prepare_cached(
        "SELECT called_as, method, path, query, headers, body, callback_url, start_time,
                queued_at, attempts
         FROM calls WHERE id = ?1",
    )?;
    for id in chosen {
        let call = read.query_row(params![id], |row| {
            Ok(Call {
                call: NewCall {
                    id: id.clone(),
                    function: function.to_string(),
                    called_as: row.get(0)?,
                    method: row.get(1)?,
                    path: row.get(2)?,
                    query: row.get(3)?,
                    headers: decode_headers(&row.get::<_, Vec<u8>>(4)?),
                    body: row.get(5)?,
                    callback_url: row.get(6)?,
                    start_time: row.get(7)?,
                    queued_at: to_u64(row.get(8)?),
                },
                attempts: to_u32(row.get::<_, i64>(9)?) + 1,
            })
        })?;
        db.unstamped.push((id.clone(), now));
        db.taken.insert(
            id,
            Taken {
                function: function.to_string(),
                body_bytes: call.call.body.len() as u64,
                started_at: now,
                attempts: call.attempts,
            },
        );
        calls.push(call);
    }
    Ok(calls)
}

/// When the earliest queued call that is not taken becomes due.
fn next_due(db: &mut Db) -> anyhow::Result<Option<u64>> {
    // The functions with queued calls, one index seek each (a skip-scan of calls_by_function).
    let functions: Vec<String> = db
        .connection
        .prepare_cached(
            "WITH RECURSIVE f(name) AS (
                SELECT MIN(function) FROM calls WHERE state = 'queued'
                UNION ALL
                SELECT (SELECT MIN(function) FROM calls WHERE state = 'queued' AND function > name)
                FROM f WHERE name IS NOT NULL)
             SELECT name FROM f WHERE name IS NOT NULL",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut earliest: Option<u64> = None;
    let mut select = db.connection.prepare_cached(
        "SELECT id, due_at FROM calls WHERE state = 'queued' AND function = ?1
         ORDER BY due_at, seq LIMIT ?2",
    )?;
    for function in functions {
        let ask = db.taken_of(&function) + 1;
        let rows = select.query_map(params![function, to_i64(ask as u64)], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (id, due) = row?;
            if !db.taken.contains_key(&id) {
                let due = to_u64(due);
                earliest = Some(earliest.map_or(due, |e| e.min(due)));
                break;
            }
        }
    }
    Ok(earliest)
}

/// Applies outcomes in one commit.
/// The attempt and start of a taken call are written with its outcome (they were not when it was
/// taken); the outcome's calls are no longer taken once it is committed.
fn apply_outcomes(db: &mut Db, outcomes: &[Outcome]) -> anyhow::Result<()> {
    let stamps = std::mem::take(&mut db.unstamped);
    let result = record_outcomes(&mut db.connection, &db.taken, &stamps, outcomes);
    match result {
        Ok(()) => {
            for outcome in outcomes {
                if let Outcome::Retry { id, .. } | Outcome::Finish { id, .. } = outcome {
                    db.taken.remove(id);
                }
            }
        }
        Err(_) => db.unstamped.extend(stamps),
    }
    result
}

/// The transaction of [`apply_outcomes`]: the stamps first, so an outcome clears its own.
fn record_outcomes(
    connection: &mut Connection,
    taken: &HashMap<String, Taken>,
    stamps: &[(String, u64)],
    outcomes: &[Outcome],
) -> anyhow::Result<()> {
    let tx = connection.transaction()?;
    stamp_running(&tx, stamps)?;
    {
        let mut retry = tx.prepare_cached(
            "UPDATE calls SET state = 'queued', due_at = ?2, status_code = ?3,
                max_attempts = ?4, error = ?5, attempts = COALESCE(?6, attempts),
                started_at = COALESCE(?7, started_at), running_since = NULL
             WHERE id = ?1",
        )?;
        // The request body is no longer needed once a call is final.
        let mut finish = tx.prepare_cached(
            "UPDATE calls SET state = ?2, status_code = ?3, attempts = ?4, max_attempts = ?5,
                duration_ms = ?6, finished_at = ?7, error = ?8, response_headers = ?9,
                response_body = ?10, body = x'',
                callback_state = CASE WHEN callback_url IS NULL THEN NULL ELSE 'pending' END,
                started_at = COALESCE(?11, started_at), running_since = NULL
             WHERE id = ?1",
        )?;
        let mut callback = tx.prepare_cached(
            "UPDATE calls SET callback_state = ?2, callback_attempts = ?3,
                response_headers = CASE WHEN ?4 THEN response_headers END,
                response_body = CASE WHEN ?4 THEN response_body END
             WHERE id = ?1",
        )?;
        for outcome in outcomes {
            match outcome {
                Outcome::Retry {
                    id,
                    due,
                    status,
                    max_attempts,
                    error,
                } => {
                    let run = taken.get(id);
                    retry.execute(params![
                        id,
                        to_i64(*due),
                        status,
                        max_attempts,
                        error,
                        run.map(|t| t.attempts),
                        run.map(|t| to_i64(t.started_at)),
                    ])?;
                }
                Outcome::Finish { id, finished } => {
                    let (headers, body) = match &finished.response {
                        Some(response) => (
                            Some(encode_headers(&response.headers)),
                            Some(response.body.as_slice()),
                        ),
                        None => (None, None),
                    };
                    finish.execute(params![
                        id,
                        finished.state().as_str(),
                        finished.status,
                        finished.attempts,
                        finished.max_attempts,
                        to_i64(finished.duration_ms),
                        to_i64(finished.finished_at),
                        finished.error,
                        headers,
                        body,
                        taken.get(id).map(|t| to_i64(t.started_at)),
                    ])?;
                }
                Outcome::Callback {
                    id,
                    state,
                    deliveries,
                } => {
                    let keep_response = *state == CallbackState::Pending;
                    callback.execute(params![id, state.as_str(), deliveries, keep_response])?;
                }
            }
        }
    }
    tx.commit().context("recording outcomes")?;
    Ok(())
}

/// Callbacks not delivered yet, at most `limit`.
fn pending_callbacks(
    connection: &mut Connection,
    limit: usize,
) -> anyhow::Result<Vec<PendingCallback>> {
    let mut select = connection.prepare_cached(
        "SELECT id, callback_url, called_as, status_code, attempts, max_attempts, duration_ms,
                callback_attempts, response_headers, response_body
         FROM calls WHERE callback_state = 'pending' LIMIT ?1",
    )?;
    let rows = select.query_map(params![to_i64(limit as u64)], |row| {
        Ok(PendingCallback {
            id: row.get(0)?,
            url: row.get(1)?,
            called_as: row.get(2)?,
            status: u16::try_from(row.get::<_, i64>(3)?).unwrap_or(500),
            attempts: to_u32(row.get(4)?),
            max_attempts: to_u32(row.get::<_, Option<i64>>(5)?.unwrap_or(1)),
            duration_ms: to_u64(row.get::<_, Option<i64>>(6)?.unwrap_or(0)),
            deliveries: to_u32(row.get(7)?),
            response: StoredResponse {
                headers: decode_headers(&row.get::<_, Option<Vec<u8>>>(8)?.unwrap_or_default()),
                body: row.get::<_, Option<Vec<u8>>>(9)?.unwrap_or_default(),
            },
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A call's status; a taken call is `running`, with its attempt and start.
fn status(db: &mut Db, id: &str) -> anyhow::Result<Option<CallStatus>> {
    let mut select = db.connection.prepare_cached(
        "SELECT id, function, state, status_code, attempts, max_attempts, queued_at,
                started_at, finished_at, due_at, duration_ms, error, callback_url,
                callback_state, callback_attempts
         FROM calls WHERE id = ?1",
    )?;
    Ok(select
        .query_row(params![id], |row| {
            Ok(CallStatus {
                id: row.get(0)?,
                function: row.get(1)?,
                state: CallState::parse(&row.get::<_, String>(2)?),
                status_code: row
                    .get::<_, Option<i64>>(3)?
                    .and_then(|s| u16::try_from(s).ok()),
                attempts: to_u32(row.get(4)?),
                max_attempts: row.get::<_, Option<i64>>(5)?.map(to_u32),
                queued_at: to_u64(row.get(6)?),
                started_at: row.get::<_, Option<i64>>(7)?.map(to_u64),
                finished_at: row.get::<_, Option<i64>>(8)?.map(to_u64),
                due_at: to_u64(row.get(9)?),
                duration_ms: row.get::<_, Option<i64>>(10)?.map(to_u64),
                error: row.get(11)?,
                callback_url: row.get(12)?,
                callback_state: row
                    .get::<_, Option<String>>(13)?
                    .map(|s| CallbackState::parse(&s)),
                callback_attempts: to_u32(row.get(14)?),
            })
        })
        .optional()?
        .map(|mut status| {
            if let Some(taken) = db.taken.get(id) {
                status.state = CallState::Running;
                status.attempts = taken.attempts;
                status.started_at = Some(taken.started_at);
            }
            status
        }))
}

/// Cancels a queued call, durably; a taken call is running and is not cancelled.
fn cancel(db: &mut Db, id: &str, now: u64) -> anyhow::Result<CancelOutcome> {
    if db.taken.contains_key(id) {
        return Ok(CancelOutcome::NotQueued(CallState::Running));
    }
    durably(&mut db.connection, |connection| {
        let tx = connection.transaction()?;
        let found: Option<(String, String, i64)> = tx
            .query_row(
                "SELECT state, function, body_bytes FROM calls WHERE id = ?1",
                params![id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()?;
        let outcome = match found {
            None => CancelOutcome::NotFound,
            Some((state, function, bytes)) => match CallState::parse(&state) {
                CallState::Queued => {
                    tx.execute(
                        "UPDATE calls SET state = 'cancelled', finished_at = ?2, body = x''
                         WHERE id = ?1",
                        params![id, to_i64(now)],
                    )?;
                    CancelOutcome::Cancelled {
                        function,
                        bytes: to_u64(bytes),
                    }
                }
                other => CancelOutcome::NotQueued(other),
            },
        };
        tx.commit()?;
        Ok(outcome)
    })
}

/// Queues again, due `now`, the calls a previous process left running: those it stamped
/// `running_since` (they are queued on disk already), rows an older version marked `running`, and
/// (when called on a live store) the taken calls not stamped yet.
fn requeue_running(db: &mut Db, now: u64) -> anyhow::Result<u64> {
    let forgotten = db.unstamped.len() as u64;
    db.taken.clear();
    db.unstamped.clear();
    // Stamped as taken by a process that died before their outcome: their attempt counts. (A
    // scan without an index, once at start.)
    let stamped = db.connection.execute(
        "UPDATE calls SET attempts = attempts + 1, started_at = running_since, running_since = NULL,
            error = 'the gateway stopped while it ran; queued again'
         WHERE running_since IS NOT NULL AND state = 'queued'",
        [],
    )?;
    let rows = db.connection.execute(
        "UPDATE calls SET state = 'queued', due_at = ?1,
            error = 'the gateway stopped while it ran; queued again'
         WHERE state = 'running'",
        params![to_i64(now)],
    )?;
    Ok(rows as u64 + stamped as u64 + forgotten)
}

/// Queued calls per function, the taken ones not counted.
fn depths(db: &mut Db) -> anyhow::Result<Vec<(String, Depth)>> {
    let mut select = db.connection.prepare(
        "SELECT function, COUNT(*), SUM(body_bytes) FROM calls WHERE state = 'queued'
         GROUP BY function",
    )?;
    let rows = select.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            Depth {
                calls: to_u64(row.get(1)?),
                bytes: to_u64(row.get::<_, Option<i64>>(2)?.unwrap_or(0)),
            },
        ))
    })?;
    let mut depths: Vec<(String, Depth)> = rows.collect::<Result<_, _>>()?;
    for taken in db.taken.values() {
        if let Some((_, depth)) = depths.iter_mut().find(|(f, _)| *f == taken.function) {
            depth.calls = depth.calls.saturating_sub(1);
            depth.bytes = depth.bytes.saturating_sub(taken.body_bytes);
        }
    }
    depths.retain(|(_, depth)| depth.calls > 0);
    Ok(depths)
}

/// Deletes the oldest finished calls beyond `keep`, never one with a callback pending.
fn prune(connection: &mut Connection, keep: u64) -> anyhow::Result<u64> {
    let rows = connection.execute(
        "DELETE FROM calls WHERE seq IN (
            SELECT seq FROM calls
            WHERE finished_at IS NOT NULL AND (callback_state IS NULL OR callback_state != 'pending')
            ORDER BY finished_at DESC LIMIT -1 OFFSET ?1)",
        params![to_i64(keep)],
    )?;
    Ok(rows as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Finished;

    fn call(id: &str, function: &str) -> NewCall {
        NewCall {
            id: id.into(),
            function: function.into(),
            called_as: function.into(),
            method: "POST".into(),
            path: "/a".into(),
            query: Some("q=1".into()),
            headers: vec![
                ("x-one".into(), b"1".to_vec()),
                ("x-two".into(), b"a:b".to_vec()),
            ],
            body: b"body".to_vec(),
            callback_url: Some("http://127.0.0.1:1/cb".into()),
            start_time: "1".into(),
            queued_at: 1000,
        }
    }

    async fn store() -> (SqliteStore, tempdir::Dir) {
        let dir = tempdir::Dir::new();
        let store = SqliteStore::open(&dir.0.join("q.sqlite3"))
            .await
            .expect("open");
        (store, dir)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let path = std::env::temp_dir().join(format!(
                    "wasmgate-store-{}-{}",
                    std::process::id(),
                    uuid::Uuid::new_v4()
                ));
                std::fs::create_dir_all(&path).expect("temp dir");
                Dir(path)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn headers_round_trip() {
        let headers = vec![
            ("a".to_string(), b"x: y".to_vec()),
            ("b".to_string(), vec![0xff, b'\t']),
        ];
        assert_eq!(decode_headers(&encode_headers(&headers)), headers);
    }

    #[tokio::test]
    async fn a_call_goes_through_its_life() {
        let (store, _dir) = store().await;
        assert_eq!(
            store
                .enqueue(vec![
                    call("a", "f.ns"),
                    call("b", "f.ns"),
                    call("a", "f.ns")
                ])
                .await
                .expect("enqueue"),
            vec![true, true, false]
        );
        assert_eq!(store.next_due().await.expect("due"), Some(1000));
        assert!(
            store
                .claim("f.ns".into(), 999, 10)
                .await
                .expect("claim")
                .is_empty()
        );
        let claimed = store.claim("f.ns".into(), 1000, 1).await.expect("claim");
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].call.id, "a");
        assert_eq!(claimed[0].attempts, 1);
        assert_eq!(claimed[0].call.headers, call("a", "f.ns").headers);
        assert_eq!(claimed[0].call.body, b"body");

        store
            .record(vec![Outcome::Retry {
                id: "a".into(),
                due: 5000,
                status: 503,
                max_attempts: 3,
                error: None,
            }])
            .await
            .expect("retry");
        let status = store
            .status("a".into())
            .await
            .expect("status")
            .expect("found");
        assert_eq!(status.state, CallState::Queued);
        assert_eq!(status.status_code, Some(503));
        assert_eq!(status.due_at, 5000);
        // `b` is due first now.
        let claimed = store.claim("f.ns".into(), 5000, 10).await.expect("claim");
        let ids: Vec<_> = claimed.iter().map(|c| c.call.id.as_str()).collect();
        assert_eq!(ids, ["b", "a"]);
        assert_eq!(claimed[1].attempts, 2);

        let response = StoredResponse {
            headers: vec![("content-type".into(), b"text/plain".to_vec())],
            body: b"done".to_vec(),
        };
        store
            .record(vec![Outcome::Finish {
                id: "a".into(),
                finished: Finished {
                    status: 200,
                    attempts: 2,
                    max_attempts: 3,
                    duration_ms: 5,
                    finished_at: 6000,
                    error: None,
                    response: Some(response),
                },
            }])
            .await
            .expect("finish");
        let pending = store.pending_callbacks(10).await.expect("pending");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].response.body, b"done");
        store
            .record(vec![Outcome::Callback {
                id: "a".into(),
                state: CallbackState::Delivered,
                deliveries: 1,
            }])
            .await
            .expect("delivered");
        assert!(
            store
                .pending_callbacks(10)
                .await
                .expect("pending")
                .is_empty()
        );
        let status = store
            .status("a".into())
            .await
            .expect("status")
            .expect("found");
        assert_eq!(status.state, CallState::Succeeded);
        assert_eq!(status.callback_state, Some(CallbackState::Delivered));

        // `b` was left running by a "crash".
        assert_eq!(store.recover(7000).await.expect("recover"), 1);
        assert_eq!(
            store.depths().await.expect("depths"),
            vec![("f.ns".to_string(), Depth { calls: 1, bytes: 4 })]
        );
        assert_eq!(
            store.cancel("b".into(), 8000).await.expect("cancel"),
            CancelOutcome::Cancelled {
                function: "f.ns".into(),
                bytes: 4
            }
        );
        assert_eq!(
            store.cancel("a".into(), 8000).await.expect("cancel"),
            CancelOutcome::NotQueued(CallState::Succeeded)
        );
        assert_eq!(
            store.cancel("zz".into(), 8000).await.expect("cancel"),
            CancelOutcome::NotFound
        );
        assert_eq!(store.prune(1).await.expect("prune"), 1);
    }

    /// A call taken to run is written nowhere: the store answers for it from memory (running, not
    /// cancelled, not taken twice, not the next due), and a new process finds it queued.
    #[tokio::test]
    async fn a_taken_call_is_running_here_and_queued_on_disk() {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("q.sqlite3");
        {
            let store = SqliteStore::open(&path).await.expect("open");
            store
                .enqueue(vec![
                    call("x", "g.ns"),
                    call("y", "g.ns"),
                    call("z", "h.ns"),
                ])
                .await
                .expect("enqueue");
            let taken = store.claim("g.ns".into(), 1500, 1).await.expect("claim");
            assert_eq!(taken.len(), 1);
            assert_eq!(taken[0].call.id, "x");
            let status = store.status("x".into()).await.expect("status").expect("x");
            assert_eq!(status.state, CallState::Running);
            assert_eq!((status.attempts, status.started_at), (1, Some(1500)));
            assert_eq!(
                store.cancel("x".into(), 1600).await.expect("cancel"),
                CancelOutcome::NotQueued(CallState::Running)
            );
            let next = store.claim("g.ns".into(), 1600, 10).await.expect("claim");
            let ids: Vec<_> = next.iter().map(|c| c.call.id.as_str()).collect();
            assert_eq!(ids, ["y"]);
            assert_eq!(
                store.depths().await.expect("depths"),
                vec![("h.ns".to_string(), Depth { calls: 1, bytes: 4 })]
            );
            // Only `z` waits, and it is due since 1000.
            assert_eq!(store.next_due().await.expect("due"), Some(1000));
            store
                .record(vec![Outcome::Retry {
                    id: "y".into(),
                    due: 9000,
                    status: 503,
                    max_attempts: 3,
                    error: None,
                }])
                .await
                .expect("retry");
            let status = store.status("y".into()).await.expect("status").expect("y");
            assert_eq!(status.state, CallState::Queued);
            assert_eq!((status.attempts, status.started_at), (1, Some(1600)));
            // The process "dies" with `x` running.
        }
        let store = SqliteStore::open(&path).await.expect("reopen");
        assert_eq!(
            store
                .status("x".into())
                .await
                .expect("status")
                .expect("x")
                .state,
            CallState::Queued
        );
        // `y`'s retry commit stamped `x` as running: the new process knows it was interrupted,
        // and counts that attempt.
        assert_eq!(store.recover(9000).await.expect("recover"), 1);
        let again = store.claim("g.ns".into(), 9000, 10).await.expect("claim");
        let runs: Vec<_> = again
            .iter()
            .map(|c| (c.call.id.as_str(), c.attempts))
            .collect();
        assert_eq!(runs, [("x", 2), ("y", 2)]);
    }

    #[tokio::test]
    async fn calls_survive_reopening() {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("q.sqlite3");
        {
            let store = SqliteStore::open(&path).await.expect("open");
            store
                .enqueue(vec![call("x", "g.ns")])
                .await
                .expect("enqueue");
        }
        let store = SqliteStore::open(&path).await.expect("reopen");
        assert_eq!(
            store
                .claim("g.ns".into(), 2000, 5)
                .await
                .expect("claim")
                .len(),
            1
        );
    }

    /// The store's work runs on the blocking pool, never on the thread that awaits it (here the
    /// runtime's only thread).
    #[tokio::test(flavor = "current_thread")]
    async fn work_runs_off_the_async_thread() {
        let (store, _dir) = store().await;
        let here = std::thread::current().id();
        let there = store
            .blocking(|_| Ok(std::thread::current().id()))
            .await
            .expect("ran");
        assert_ne!(here, there);
    }
}
