//! Spin apps' SQLite databases (`sqlite_databases` in `spin.toml`): one file per namespace and
//! label, `<state>/spin-sqlite/<namespace>/<label>.sqlite3`, through the SQLite the gateway already
//! ships (rusqlite, bundled). The runtime calls [`SqliteDatabases`] on its blocking pool.
//!
//! Bounds, each a constant:
//! - a statement runs at most [`MAX_STATEMENT_TIME`] (SQLite's progress handler interrupts it);
//! - a result holds at most [`MAX_RESULT_BYTES`] (counted as the rows are read; past it the
//!   statement fails, and nothing partial is returned);
//! - a database grows to at most [`MAX_DATABASE_BYTES`] (`max_page_count`; past it a write fails
//!   with `database-full`);
//! - at most [`MAX_OPEN_DATABASES`] connections are kept open; past it the least recently used is
//!   closed (it opens again on its next statement).
//!
//! Every write is durable before the call returns (`synchronous=FULL`, write-ahead log).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rusqlite::types::{Value, ValueRef};
use wasmgate_runtime::services::{SqlError, SqlRows, SqlValue, SqliteStore};

/// The longest one statement may run.
pub const MAX_STATEMENT_TIME: Duration = Duration::from_secs(5);
/// The most one statement may answer, in bytes of values (and 8 per number or NULL).
pub const MAX_RESULT_BYTES: usize = 16 * 1024 * 1024;
/// The largest a database may grow.
pub const MAX_DATABASE_BYTES: u64 = 256 * 1024 * 1024;
/// Connections kept open at once.
pub const MAX_OPEN_DATABASES: usize = 64;

/// The bounds of [`SqliteDatabases`], by default the constants above.
#[derive(Debug, Clone, Copy)]
pub struct SqlLimits {
    /// [`MAX_STATEMENT_TIME`].
    pub statement_time: Duration,
    /// [`MAX_RESULT_BYTES`].
    pub result_bytes: usize,
    /// [`MAX_DATABASE_BYTES`].
    pub database_bytes: u64,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            statement_time: MAX_STATEMENT_TIME,
            result_bytes: MAX_RESULT_BYTES,
            database_bytes: MAX_DATABASE_BYTES,
        }
    }
}

/// An open database and when it was last used.
#[derive(Debug)]
struct Open {
    connection: Arc<Mutex<Connection>>,
    used: Instant,
}

/// The [`SqliteStore`] of the gateway.
#[derive(Debug)]
pub struct SqliteDatabases {
    dir: PathBuf,
    limits: SqlLimits,
    open: Mutex<HashMap<(String, String), Open>>,
}

impl SqliteDatabases {
    /// Databases in `dir` (created when the first one is), within `limits`.
    pub fn new(dir: &Path, limits: SqlLimits) -> SqliteDatabases {
        SqliteDatabases {
            dir: dir.to_path_buf(),
            limits,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The connection of `database` in `namespace`, opened (and created) if need be.
    fn connection(
        &self,
        namespace: &str,
        database: &str,
    ) -> Result<Arc<Mutex<Connection>>, SqlError> {
        // Both were checked upstream (a namespace name, a store label); this keeps a bad one from
        // ever naming a path outside the folder.
        let safe = |name: &str| {
            !name.is_empty()
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        if !safe(namespace) || !safe(database) {
            return Err(SqlError::Io(format!("invalid database name {database:?}")));
        }
        let key = (namespace.to_string(), database.to_string());
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = open.get_mut(&key) {
            found.used = Instant::now();
            return Ok(found.connection.clone());
        }
        let folder = self.dir.join(namespace);
        std::fs::create_dir_all(&folder)
            .map_err(|e| SqlError::Io(format!("creating {}: {e}", folder.display())))?;
        let path = folder.join(format!("{database}.sqlite3"));
        let connection = open_database(&path, &self.limits)
            .map_err(|e| SqlError::Io(format!("opening database {database}: {e}")))?;
        if open.len() >= MAX_OPEN_DATABASES
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, o)| o.used)
                .map(|(k, _)| k.clone())
        {
            open.remove(&oldest);
        }
        let connection = Arc::new(Mutex::new(connection));
        open.insert(
            key,
            Open {
                connection: connection.clone(),
                used: Instant::now(),
            },
        );
        Ok(connection)
    }
}

fn open_database(path: &Path, limits: &SqlLimits) -> rusqlite::Result<Connection> {
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.busy_timeout(limits.statement_time)?;
    let page_size: i64 = connection.pragma_query_value(None, "page_size", |row| row.get(0))?;
    let pages = limits.database_bytes / u64::try_from(page_size.max(512)).unwrap_or(4096);
    connection.pragma_update(
        None,
        "max_page_count",
        i64::try_from(pages.max(1)).unwrap_or(i64::MAX),
    )?;
    Ok(connection)
}

fn to_sql(value: &SqlValue) -> Value {
    match value {
        SqlValue::Integer(n) => Value::Integer(*n),
        SqlValue::Real(x) => Value::Real(*x),
        SqlValue::Text(text) => Value::Text(text.clone()),
        SqlValue::Blob(bytes) => Value::Blob(bytes.clone()),
        SqlValue::Null => Value::Null,
    }
}

/// A value read from a row, and what it counts against [`MAX_RESULT_BYTES`].
fn from_sql(value: ValueRef<'_>) -> (SqlValue, usize) {
    match value {
        ValueRef::Null => (SqlValue::Null, 8),
        ValueRef::Integer(n) => (SqlValue::Integer(n), 8),
        ValueRef::Real(x) => (SqlValue::Real(x), 8),
        ValueRef::Text(text) => (
            SqlValue::Text(String::from_utf8_lossy(text).into_owned()),
            text.len(),
        ),
        ValueRef::Blob(bytes) => (SqlValue::Blob(bytes.to_vec()), bytes.len()),
    }
}

/// The error a guest gets for SQLite's.
fn sql_error(error: rusqlite::Error, limit: Duration) -> SqlError {
    match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => SqlError::DatabaseFull,
        Some(rusqlite::ErrorCode::OperationInterrupted) => SqlError::Io(format!(
            "the statement ran longer than {limit:?} and was interrupted"
        )),
        _ => SqlError::Io(error.to_string()),
    }
}

impl SqliteStore for SqliteDatabases {
    fn execute(
        &self,
        namespace: &str,
        database: &str,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<SqlRows, SqlError> {
        let connection = self.connection(namespace, database)?;
        let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
        let started = Instant::now();
        let limit = self.limits.statement_time;
        // Called every 1000 virtual-machine steps; a true answer interrupts the statement.
        connection
            .progress_handler(1000, Some(move || started.elapsed() >= limit))
            .map_err(|e| SqlError::Io(format!("bounding the statement's time: {e}")))?;
        let result = run(&connection, statement, params, &self.limits);
        // The next statement sets its own; a failure here leaves this one's, which only stops
        // statements sooner.
        let _ = connection.progress_handler(0, None::<fn() -> bool>);
        result
    }
}

fn run(
    connection: &Connection,
    statement: &str,
    params: &[SqlValue],
    limits: &SqlLimits,
) -> Result<SqlRows, SqlError> {
    let fail = |e| sql_error(e, limits.statement_time);
    let mut prepared = connection.prepare(statement).map_err(fail)?;
    let columns: Vec<String> = prepared.column_names().map(|c| c.to_string()).collect();
    let values: Vec<Value> = params.iter().map(to_sql).collect();
    let mut rows = prepared
        .query(rusqlite::params_from_iter(values))
        .map_err(fail)?;
    let rowid_before = connection.last_insert_rowid();
    let mut answer = SqlRows {
        columns,
        ..SqlRows::default()
    };
    let mut bytes = 0usize;
    while let Some(row) = rows.next().map_err(fail)? {
        let mut values = Vec::with_capacity(answer.columns.len());
        for index in 0..answer.columns.len() {
            let (value, size) = from_sql(row.get_ref(index).map_err(fail)?);
            bytes += size;
            values.push(value);
        }
        if bytes > limits.result_bytes {
            return Err(SqlError::Io(format!(
                "the result is larger than {} bytes; select fewer rows",
                limits.result_bytes
            )));
        }
        answer.rows.push(values);
    }
    drop(rows);
    // The connection is shared by the namespace's callers and held locked for this statement: its
    // counts are this statement's when it may change rows, its rowid this one's when it moved.
    if !prepared.readonly() {
        answer.changes = Some(connection.changes());
    }
    let rowid = connection.last_insert_rowid();
    answer.last_insert_rowid = (rowid != rowid_before).then_some(rowid);
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn databases(limits: SqlLimits) -> (SqliteDatabases, PathBuf) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wasmgate-sqlite-dbs-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        (SqliteDatabases::new(&dir, limits), dir)
    }

    #[test]
    fn statements_run_with_parameters_and_answer_rows() {
        let (dbs, dir) = databases(SqlLimits::default());
        let run = |sql: &str, params: &[SqlValue]| dbs.execute("ns", "default", sql, params);
        run("CREATE TABLE t (a INTEGER, b TEXT, c BLOB, d REAL)", &[]).expect("create");
        run(
            "INSERT INTO t VALUES (?, ?, ?, ?)",
            &[
                SqlValue::Integer(7),
                SqlValue::Text("seven".into()),
                SqlValue::Blob(vec![7]),
                SqlValue::Null,
            ],
        )
        .expect("insert");
        let rows = run("SELECT a, b, c, d FROM t", &[]).expect("select");
        assert_eq!(rows.columns, ["a", "b", "c", "d"]);
        assert_eq!(
            rows.rows,
            [vec![
                SqlValue::Integer(7),
                SqlValue::Text("seven".into()),
                SqlValue::Blob(vec![7]),
                SqlValue::Null
            ]]
        );
        // Another namespace is another database.
        assert!(
            dbs.execute("other", "default", "SELECT * FROM t", &[])
                .is_err()
        );
        assert!(matches!(
            run("NOT SQL", &[]),
            Err(SqlError::Io(message)) if message.contains("syntax error")
        ));
        assert!(dbs.execute("ns", "../x", "SELECT 1", &[]).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_statement_says_what_it_changed_and_inserted() {
        let (dbs, dir) = databases(SqlLimits::default());
        let run = |sql: &str| dbs.execute("ns", "default", sql, &[]).expect(sql);
        run("CREATE TABLE t (a INTEGER)");
        let inserted = run("INSERT INTO t VALUES (1), (2)");
        assert_eq!(
            (inserted.changes, inserted.last_insert_rowid),
            (Some(2), Some(2))
        );
        let updated = run("UPDATE t SET a = 3 WHERE a = 1");
        assert_eq!(
            (updated.changes, updated.last_insert_rowid),
            (Some(1), None)
        );
        let selected = run("SELECT a FROM t");
        assert_eq!((selected.changes, selected.last_insert_rowid), (None, None));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn each_bound_holds() {
        let (dbs, dir) = databases(SqlLimits {
            statement_time: Duration::from_millis(50),
            result_bytes: 1000,
            database_bytes: 64 * 1024,
        });
        let run = |sql: &str| dbs.execute("ns", "default", sql, &[]);
        let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
                       SELECT count(*) FROM n";
        assert!(matches!(run(endless), Err(SqlError::Io(m)) if m.contains("was interrupted")),);
        let large = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 200) \
                     SELECT i FROM n";
        assert!(matches!(run(large), Err(SqlError::Io(m)) if m.contains("larger than 1000")));
        run("CREATE TABLE big (b BLOB)").expect("create");
        let full = (0..100)
            .map(|_| run("INSERT INTO big VALUES (zeroblob(4096))"))
            .find_map(Result::err);
        assert_eq!(full, Some(SqlError::DatabaseFull));
        let _ = std::fs::remove_dir_all(dir);
    }
}
