//! The key-value buckets of `wasi:keyvalue`, in SQLite (`keyvalue.sqlite3` in the state directory).
//!
//! One table, keyed by namespace, bucket and key, so buckets of different namespaces never meet. Each
//! write commits with `synchronous=FULL`: a function that stored a value and answered has it on disk,
//! through a crash, `kill -9` or power loss. One connection behind a mutex serialises writers, which
//! also makes `increment` (read, add, write in one transaction) atomic under concurrent requests.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};
use wasmgate_runtime::services::{KeyValueStore, add_to_counter};

/// The SQLite [`KeyValueStore`].
#[derive(Debug)]
pub struct SqliteKeyValue {
    connection: Mutex<Connection>,
}

impl SqliteKeyValue {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> anyhow::Result<SqliteKeyValue> {
        let connection =
            Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.busy_timeout(std::time::Duration::from_secs(10))?;
        connection
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
            connection: Mutex::new(connection),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn text(error: rusqlite::Error) -> String {
    format!("the key-value store failed: {error}")
}

impl KeyValueStore for SqliteKeyValue {
    fn get(&self, namespace: &str, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.lock()
            .prepare_cached(
                "SELECT value FROM kv WHERE namespace = ?1 AND bucket = ?2 AND key = ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![namespace, bucket, key], |row| row.get(0))
                    .optional()
            })
            .map_err(text)
    }

    fn set(&self, namespace: &str, bucket: &str, key: &str, value: &[u8]) -> Result<(), String> {
        self.lock()
            .prepare_cached(
                "INSERT INTO kv (namespace, bucket, key, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (namespace, bucket, key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut s| s.execute(params![namespace, bucket, key, value]))
            .map(drop)
            .map_err(text)
    }

    fn delete(&self, namespace: &str, bucket: &str, key: &str) -> Result<(), String> {
        self.lock()
            .prepare_cached("DELETE FROM kv WHERE namespace = ?1 AND bucket = ?2 AND key = ?3")
            .and_then(|mut s| s.execute(params![namespace, bucket, key]))
            .map(drop)
            .map_err(text)
    }

    fn keys(
        &self,
        namespace: &str,
        bucket: &str,
        offset: u64,
        limit: usize,
    ) -> Result<(Vec<String>, bool), String> {
        let connection = self.lock();
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
        let mut connection = self.lock();
        let tx = connection.transaction().map_err(text)?;
        let current: Option<Vec<u8>> = tx
            .query_row(
                "SELECT value FROM kv WHERE namespace = ?1 AND bucket = ?2 AND key = ?3",
                params![namespace, bucket, key],
                |row| row.get(0),
            )
            .optional()
            .map_err(text)?;
        let next = add_to_counter(current.as_deref(), key, delta)?;
        tx.execute(
            "INSERT INTO kv (namespace, bucket, key, value) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (namespace, bucket, key) DO UPDATE SET value = excluded.value",
            params![namespace, bucket, key, next.to_string().into_bytes()],
        )
        .map_err(text)?;
        tx.commit().map_err(text)?;
        Ok(next)
    }

    fn set_many(
        &self,
        namespace: &str,
        bucket: &str,
        entries: &[(String, Vec<u8>)],
    ) -> Result<(), String> {
        let mut connection = self.lock();
        let tx = connection.transaction().map_err(text)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO kv (namespace, bucket, key, value) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (namespace, bucket, key) DO UPDATE SET value = excluded.value",
                )
                .map_err(text)?;
            for (key, value) in entries {
                insert
                    .execute(params![namespace, bucket, key, value])
                    .map_err(text)?;
            }
        }
        tx.commit().map_err(text)
    }

    fn delete_many(&self, namespace: &str, bucket: &str, keys: &[String]) -> Result<(), String> {
        let mut connection = self.lock();
        let tx = connection.transaction().map_err(text)?;
        {
            let mut delete = tx
                .prepare_cached("DELETE FROM kv WHERE namespace = ?1 AND bucket = ?2 AND key = ?3")
                .map_err(text)?;
            for key in keys {
                delete
                    .execute(params![namespace, bucket, key])
                    .map_err(text)?;
            }
        }
        tx.commit().map_err(text)
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
}
