//! The key-value buckets of `wasi:keyvalue`, in SQLite (`keyvalue.sqlite3` in the state directory).
//!
//! One table, keyed by namespace, bucket and key, so buckets of different namespaces never meet.
//!
//! **Writes are durable before they return, and commit in groups.** Every write commits with
//! `synchronous=FULL`: a function that stored a value and answered has it on disk, through a crash,
//! `kill -9` or power loss. The fsync is the cost, so writers share it: a write joins the waiting list,
//! then takes the writing connection; whoever holds it commits everything waiting, each write in a
//! savepoint of one transaction, and hands each writer its own result. A writer whose write an earlier
//! holder already committed finds it done. So under load one fsync covers many writes; alone, a write
//! commits by itself as before. The list is bounded by the writers, each of which waits on it (they
//! run on the runtime's blocking pool). `increment` reads, adds and writes inside its savepoint, under
//! the one writing connection, so it stays atomic under concurrent requests.
//!
//! Reads use a connection of their own: in WAL mode they see every committed write and do not wait
//! for a commit in progress.

use std::path::Path;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Mutex, MutexGuard, PoisonError};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};
use wasmgate_runtime::services::{KeyValueStore, add_to_counter};

const UPSERT: &str = "INSERT INTO kv (namespace, bucket, key, value) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (namespace, bucket, key) DO UPDATE SET value = excluded.value";
const DELETE: &str = "DELETE FROM kv WHERE namespace = ?1 AND bucket = ?2 AND key = ?3";
const SELECT: &str = "SELECT value FROM kv WHERE namespace = ?1 AND bucket = ?2 AND key = ?3";

/// One write, as it waits for a commit.
#[derive(Debug)]
enum Write {
    Set(String, Vec<u8>),
    Delete(String),
    Increment(String, u64),
    SetMany(Vec<(String, Vec<u8>)>),
    DeleteMany(Vec<String>),
}

/// A write waiting for the next commit: its bucket, what it does, and where its result goes (the
/// new value for an increment, 0 otherwise).
#[derive(Debug)]
struct Waiting {
    namespace: String,
    bucket: String,
    write: Write,
    done: SyncSender<Result<u64, String>>,
}

/// The SQLite [`KeyValueStore`].
#[derive(Debug)]
pub struct SqliteKeyValue {
    /// The writing connection; whoever holds it commits what waits.
    writer: Mutex<Connection>,
    /// Writes waiting for the next commit.
    waiting: Mutex<Vec<Waiting>>,
    /// The reading connection.
    reader: Mutex<Connection>,
}

impl SqliteKeyValue {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> anyhow::Result<SqliteKeyValue> {
        let open = || -> anyhow::Result<Connection> {
            let connection =
                Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
            connection.pragma_update(None, "journal_mode", "WAL")?;
            connection.pragma_update(None, "synchronous", "FULL")?;
            connection.busy_timeout(std::time::Duration::from_secs(10))?;
            Ok(connection)
        };
        let writer = open()?;
        writer
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS kv (
                    namespace TEXT NOT NULL,
                    bucket TEXT NOT NULL,
                    key TEXT NOT NULL,
                    value BLOB NOT NULL,
                    PRIMARY KEY (namespace, bucket, key)
                ) WITHOUT ROWID;",
            )
            .context("creating the key-value table")?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        Ok(SqliteKeyValue {
            writer: Mutex::new(writer),
            waiting: Mutex::default(),
            reader: Mutex::new(open()?),
        })
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `write` durable, with whatever else waits for a commit; its result.
    fn write(&self, namespace: &str, bucket: &str, write: Write) -> Result<u64, String> {
        let (done, result) = sync_channel(1);
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Waiting {
                namespace: namespace.to_string(),
                bucket: bucket.to_string(),
                write,
                done,
            });
        {
            let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let group =
                std::mem::take(&mut *self.waiting.lock().unwrap_or_else(PoisonError::into_inner));
            // Empty when an earlier holder committed this write with its own.
            if !group.is_empty() {
                commit(&mut writer, group);
            }
        }
        result
            .recv()
            .unwrap_or_else(|_| Err("the key-value store failed: the write was lost".to_string()))
    }
}

/// Commits `group` in one transaction, each write in a savepoint of its own (one that fails leaves
/// the others), and sends each writer its result.
fn commit(connection: &mut Connection, group: Vec<Waiting>) {
    let committed = (|| -> rusqlite::Result<Vec<Result<u64, String>>> {
        let mut transaction = connection.transaction()?;
        let mut results = Vec::with_capacity(group.len());
        for waiting in &group {
            let savepoint = transaction.savepoint()?;
            let result = apply(&savepoint, waiting);
            if result.is_ok() {
                savepoint.commit()?;
            }
            // Dropped otherwise: rolled back.
            results.push(result);
        }
        transaction.commit()?;
        Ok(results)
    })();
    match committed {
        Ok(results) => {
            for (waiting, result) in group.into_iter().zip(results) {
                let _ = waiting.done.send(result);
            }
        }
        Err(error) => {
            let error = text(error);
            for waiting in group {
                let _ = waiting.done.send(Err(error.clone()));
            }
        }
    }
}

/// Makes one write inside the open transaction of `connection`.
fn apply(connection: &Connection, waiting: &Waiting) -> Result<u64, String> {
    let (namespace, bucket) = (&waiting.namespace, &waiting.bucket);
    let upsert = |key: &String, value: &[u8]| {
        connection
            .prepare_cached(UPSERT)
            .and_then(|mut s| s.execute(params![namespace, bucket, key, value]))
            .map(drop)
            .map_err(text)
    };
    let delete = |key: &String| {
        connection
            .prepare_cached(DELETE)
            .and_then(|mut s| s.execute(params![namespace, bucket, key]))
            .map(drop)
            .map_err(text)
    };
    match &waiting.write {
        Write::Set(key, value) => upsert(key, value).map(|()| 0),
        Write::Delete(key) => delete(key).map(|()| 0),
        Write::Increment(key, delta) => {
            let current: Option<Vec<u8>> = connection
                .prepare_cached(SELECT)
                .and_then(|mut s| {
                    s.query_row(params![namespace, bucket, key], |row| row.get(0))
                        .optional()
                })
                .map_err(text)?;
            let next = add_to_counter(current.as_deref(), key, *delta)?;
            upsert(key, next.to_string().as_bytes())?;
            Ok(next)
        }
        Write::SetMany(entries) => {
            for (key, value) in entries {
                upsert(key, value)?;
            }
            Ok(0)
        }
        Write::DeleteMany(keys) => {
            for key in keys {
                delete(key)?;
            }
            Ok(0)
        }
    }
}

fn text(error: rusqlite::Error) -> String {
    format!("the key-value store failed: {error}")
}

impl KeyValueStore for SqliteKeyValue {
    fn get(&self, namespace: &str, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.reader()
            .prepare_cached(SELECT)
            .and_then(|mut s| {
                s.query_row(params![namespace, bucket, key], |row| row.get(0))
                    .optional()
            })
            .map_err(text)
    }

    fn set(&self, namespace: &str, bucket: &str, key: &str, value: &[u8]) -> Result<(), String> {
        self.write(
            namespace,
            bucket,
            Write::Set(key.to_string(), value.to_vec()),
        )
        .map(drop)
    }

    fn delete(&self, namespace: &str, bucket: &str, key: &str) -> Result<(), String> {
        self.write(namespace, bucket, Write::Delete(key.to_string()))
            .map(drop)
    }

    fn keys(
        &self,
        namespace: &str,
        bucket: &str,
        offset: u64,
        limit: usize,
    ) -> Result<(Vec<String>, bool), String> {
        let connection = self.reader();
        let mut select = connection
            .prepare_cached(
                "SELECT key FROM kv WHERE namespace = ?1 AND bucket = ?2 ORDER BY key
                 LIMIT ?3 OFFSET ?4",
            )
            .map_err(text)?;
        let keys = select
            .query_map(
                params![
                    namespace,
                    bucket,
                    i64::try_from(limit + 1).unwrap_or(i64::MAX),
                    i64::try_from(offset).unwrap_or(i64::MAX)
                ],
                |row| row.get::<_, String>(0),
            )
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(text)?;
        let more = keys.len() > limit;
        Ok((keys.into_iter().take(limit).collect(), more))
    }

    fn increment(
        &self,
        namespace: &str,
        bucket: &str,
        key: &str,
        delta: u64,
    ) -> Result<u64, String> {
        self.write(namespace, bucket, Write::Increment(key.to_string(), delta))
    }

    fn set_many(
        &self,
        namespace: &str,
        bucket: &str,
        entries: &[(String, Vec<u8>)],
    ) -> Result<(), String> {
        self.write(namespace, bucket, Write::SetMany(entries.to_vec()))
            .map(drop)
    }

    fn delete_many(&self, namespace: &str, bucket: &str, keys: &[String]) -> Result<(), String> {
        self.write(namespace, bucket, Write::DeleteMany(keys.to_vec()))
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_scoped_and_counters_add_up() {
        let dir = std::env::temp_dir().join(format!("wasmgate-kv-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("kv.sqlite3");
        {
            let kv = SqliteKeyValue::open(&path).expect("open");
            kv.set("a", "default", "k", b"in a").expect("set");
            assert_eq!(kv.get("b", "default", "k").expect("get"), None);
            assert_eq!(kv.increment("a", "default", "n", 2).expect("inc"), 2);
            assert_eq!(kv.increment("a", "default", "n", 3).expect("inc"), 5);
            assert!(
                kv.increment("a", "default", "k", 1).is_err(),
                "not a number"
            );
            kv.set_many(
                "a",
                "other",
                &[("x".into(), b"1".to_vec()), ("y".into(), b"2".to_vec())],
            )
            .expect("set many");
            assert_eq!(
                kv.keys("a", "other", 0, 1).expect("keys"),
                (vec!["x".to_string()], true)
            );
            assert_eq!(
                kv.keys("a", "other", 1, 1).expect("keys"),
                (vec!["y".to_string()], false)
            );
            kv.delete_many("a", "other", &["x".into()]).expect("delete");
            kv.delete("a", "default", "k").expect("delete");
        }
        let kv = SqliteKeyValue::open(&path).expect("reopen");
        assert_eq!(
            kv.get("a", "default", "n").expect("get"),
            Some(b"5".to_vec())
        );
        assert_eq!(kv.get("a", "default", "k").expect("get"), None);
        assert_eq!(kv.keys("a", "other", 0, 10).expect("keys").0, ["y"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A scratch store, removed when dropped.
    struct Scratch(std::path::PathBuf);
    impl Scratch {
        fn new() -> Scratch {
            let dir = std::env::temp_dir().join(format!("wasmgate-kv-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).expect("dir");
            Scratch(dir)
        }
        fn open(&self) -> SqliteKeyValue {
            SqliteKeyValue::open(&self.0.join("kv.sqlite3")).expect("open")
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn one_commit_keeps_each_write_s_own_outcome() {
        let scratch = Scratch::new();
        let kv = scratch.open();
        kv.set("a", "b", "word", b"not a number").expect("set");
        let (results, group): (Vec<_>, Vec<_>) = [
            Write::Increment("n".into(), 2),
            Write::Increment("word".into(), 1),
            Write::Set("x".into(), b"1".to_vec()),
            Write::Increment("n".into(), 3),
        ]
        .into_iter()
        .map(|write| {
            let (done, result) = sync_channel(1);
            let waiting = Waiting {
                namespace: "a".into(),
                bucket: "b".into(),
                write,
                done,
            };
            (result, waiting)
        })
        .unzip();
        commit(&mut kv.writer.lock().expect("writer"), group);
        let results: Vec<_> = results
            .iter()
            .map(|r| r.recv().expect("a result"))
            .collect();
        assert_eq!(results[0], Ok(2));
        assert!(
            results[1]
                .as_ref()
                .is_err_and(|e| e.contains("decimal counter")),
            "{:?}",
            results[1]
        );
        assert_eq!(results[2], Ok(0));
        assert_eq!(
            results[3],
            Ok(5),
            "the failed write in between changed nothing"
        );
        drop(kv);
        let kv = scratch.open();
        assert_eq!(kv.get("a", "b", "n").expect("get"), Some(b"5".to_vec()));
        assert_eq!(kv.get("a", "b", "x").expect("get"), Some(b"1".to_vec()));
        assert_eq!(
            kv.get("a", "b", "word").expect("get"),
            Some(b"not a number".to_vec())
        );
    }

    #[test]
    fn concurrent_increments_all_count() {
        let scratch = Scratch::new();
        let kv = std::sync::Arc::new(scratch.open());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let kv = kv.clone();
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    for _ in 0..50 {
                        seen.push(kv.increment("a", "b", "n", 1).expect("increment"));
                    }
                    seen
                })
            })
            .collect();
        let mut seen: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().expect("a thread"))
            .collect();
        seen.sort_unstable();
        // Every increment saw a value of its own: none was lost or counted twice.
        assert_eq!(seen, (1..=400).collect::<Vec<u64>>());
        assert_eq!(kv.get("a", "b", "n").expect("get"), Some(b"400".to_vec()));
    }
}
