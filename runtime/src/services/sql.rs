//! What Spin's SQLite interfaces (`runtime/src/spin/sqlite.rs`) need from the embedder: a
//! [`SqliteStore`] that runs statements, its values, answers and errors; [`NoSqlite`] when it has
//! none.

/// A value of Spin's SQLite interface.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// A 64-bit integer.
    Integer(i64),
    /// A float.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
    /// NULL.
    Null,
}

/// What a statement answered: its columns and rows (none for a statement that returns none).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SqlRows {
    /// The columns' names.
    pub columns: Vec<String>,
    /// The rows, each with a value per column.
    pub rows: Vec<Vec<SqlValue>>,
    /// The rows the statement changed, when it may change rows (an insert, update or delete).
    pub changes: Option<u64>,
    /// The rowid the statement inserted, when it inserted.
    pub last_insert_rowid: Option<i64>,
}

/// Why a statement failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlError {
    /// The database reached its size bound.
    DatabaseFull,
    /// Anything else (a bad statement, a bound, the storage), said in words.
    Io(String),
}

/// Where Spin apps' SQLite databases live. Blocking; the runtime calls it on the blocking pool.
/// `namespace` and `database` (a label the function lists) together name a database.
pub trait SqliteStore: Send + Sync + std::fmt::Debug + 'static {
    /// Runs one statement with its parameters.
    fn execute(
        &self,
        namespace: &str,
        database: &str,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<SqlRows, SqlError>;
}

/// A [`SqliteStore`] that keeps nothing: every statement fails. For embedders without one.
#[derive(Debug, Default)]
pub struct NoSqlite;

impl SqliteStore for NoSqlite {
    fn execute(&self, _: &str, _: &str, _: &str, _: &[SqlValue]) -> Result<SqlRows, SqlError> {
        Err(SqlError::Io(
            "this runtime keeps no SQLite databases".to_string(),
        ))
    }
}
