//! Spin's SQLite for the components of a Spin app: `fermyon:spin/sqlite@2.0.0` (`spin-sdk` 5) and
//! `spin:sqlite@3.1.0` (`spin-sdk` 7: async twins of each function, the rows of `execute-async` as
//! a stream, the rowid of the connection's last insert and its count of changed rows). Both open
//! only the labels the component lists (else `access-denied`) and run their statements in the
//! embedder's [`crate::services::SqliteStore`], which holds the bounds; a 3.1 `execute-async`
//! reads its rows whole first (the store bounds them), then streams them.

use wasmtime::component::{Accessor, FutureReader, Resource, StreamReader};

use super::SpinConnection;
use super::bindings::fermyon::spin::sqlite;
use super::bindings::spin::sqlite::sqlite as sqlite3;
use crate::services::{HasServices, Services, ServicesCtx, SqlError, SqlRows, SqlValue};

/// Runs `statement` on `database` of the request's namespace, on the blocking pool.
async fn run(
    ctx: &ServicesCtx,
    database: String,
    statement: String,
    params: Vec<SqlValue>,
) -> Result<SqlRows, SqlError> {
    let store = ctx.sqlite.clone();
    let namespace = ctx.namespace.clone();
    tokio::task::spawn_blocking(move || store.execute(&namespace, &database, &statement, &params))
        .await
        .unwrap_or_else(|error| Err(SqlError::Io(format!("the database failed: {error}"))))
}

/// Keeps what a statement tells of the connection's last insert and changes.
fn remember(connection: &mut SpinConnection, rows: &SqlRows) {
    if let Some(changes) = rows.changes {
        connection.changes = changes;
    }
    if let Some(rowid) = rows.last_insert_rowid {
        connection.last_insert_rowid = rowid;
    }
}

fn sql_in(value: sqlite::Value) -> SqlValue {
    match value {
        sqlite::Value::Integer(n) => SqlValue::Integer(n),
        sqlite::Value::Real(x) => SqlValue::Real(x),
        sqlite::Value::Text(text) => SqlValue::Text(text),
        sqlite::Value::Blob(bytes) => SqlValue::Blob(bytes),
        sqlite::Value::Null => SqlValue::Null,
    }
}

fn sql_out(value: SqlValue) -> sqlite::Value {
    match value {
        SqlValue::Integer(n) => sqlite::Value::Integer(n),
        SqlValue::Real(x) => sqlite::Value::Real(x),
        SqlValue::Text(text) => sqlite::Value::Text(text),
        SqlValue::Blob(bytes) => sqlite::Value::Blob(bytes),
        SqlValue::Null => sqlite::Value::Null,
    }
}

fn sql_in3(value: sqlite3::Value) -> SqlValue {
    match value {
        sqlite3::Value::Integer(n) => SqlValue::Integer(n),
        sqlite3::Value::Real(x) => SqlValue::Real(x),
        sqlite3::Value::Text(text) => SqlValue::Text(text),
        sqlite3::Value::Blob(bytes) => SqlValue::Blob(bytes),
        sqlite3::Value::Null => SqlValue::Null,
    }
}

fn sql_out3(value: SqlValue) -> sqlite3::Value {
    match value {
        SqlValue::Integer(n) => sqlite3::Value::Integer(n),
        SqlValue::Real(x) => sqlite3::Value::Real(x),
        SqlValue::Text(text) => sqlite3::Value::Text(text),
        SqlValue::Blob(bytes) => sqlite3::Value::Blob(bytes),
        SqlValue::Null => sqlite3::Value::Null,
    }
}

fn error3(error: SqlError) -> sqlite3::Error {
    match error {
        SqlError::DatabaseFull => sqlite3::Error::DatabaseFull,
        SqlError::Io(why) => sqlite3::Error::Io(why),
    }
}

fn rows3(rows: Vec<Vec<SqlValue>>) -> Vec<sqlite3::RowResult> {
    rows.into_iter()
        .map(|values| sqlite3::RowResult {
            values: values.into_iter().map(sql_out3).collect(),
        })
        .collect()
}

impl sqlite::Host for Services<'_> {}

impl sqlite::HostConnection for Services<'_> {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<SpinConnection>, sqlite::Error>> {
        if !self.ctx.spin_databases.contains(&database) {
            return Ok(Err(sqlite::Error::AccessDenied));
        }
        Ok(Ok(self.table.push(SpinConnection::new(database))?))
    }

    async fn execute(
        &mut self,
        connection: Resource<SpinConnection>,
        statement: String,
        parameters: Vec<sqlite::Value>,
    ) -> wasmtime::Result<Result<sqlite::QueryResult, sqlite::Error>> {
        let database = self.table.get(&connection)?.database.clone();
        let params = parameters.into_iter().map(sql_in).collect();
        Ok(match run(self.ctx, database, statement, params).await {
            Ok(rows) => Ok(sqlite::QueryResult {
                columns: rows.columns,
                rows: rows
                    .rows
                    .into_iter()
                    .map(|values| sqlite::RowResult {
                        values: values.into_iter().map(sql_out).collect(),
                    })
                    .collect(),
            }),
            Err(SqlError::DatabaseFull) => Err(sqlite::Error::DatabaseFull),
            Err(SqlError::Io(why)) => Err(sqlite::Error::Io(why)),
        })
    }

    async fn drop(&mut self, connection: Resource<SpinConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

type Sql3Result<T> = wasmtime::Result<Result<T, sqlite3::Error>>;

impl sqlite3::Host for Services<'_> {}

impl sqlite3::HostConnection for Services<'_> {
    async fn open(&mut self, database: String) -> Sql3Result<Resource<SpinConnection>> {
        if !self.ctx.spin_databases.contains(&database) {
            return Ok(Err(sqlite3::Error::AccessDenied));
        }
        Ok(Ok(self.table.push(SpinConnection::new(database))?))
    }

    async fn execute(
        &mut self,
        connection: Resource<SpinConnection>,
        statement: String,
        parameters: Vec<sqlite3::Value>,
    ) -> Sql3Result<sqlite3::QueryResult> {
        let database = self.table.get(&connection)?.database.clone();
        let params = parameters.into_iter().map(sql_in3).collect();
        let rows = match run(self.ctx, database, statement, params).await {
            Ok(rows) => rows,
            Err(error) => return Ok(Err(error3(error))),
        };
        remember(self.table.get_mut(&connection)?, &rows);
        Ok(Ok(sqlite3::QueryResult {
            columns: rows.columns,
            rows: rows3(rows.rows),
        }))
    }

    async fn last_insert_rowid(
        &mut self,
        connection: Resource<SpinConnection>,
    ) -> wasmtime::Result<i64> {
        Ok(self.table.get(&connection)?.last_insert_rowid)
    }

    async fn changes(&mut self, connection: Resource<SpinConnection>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&connection)?.changes)
    }

    async fn drop(&mut self, connection: Resource<SpinConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

impl<U> sqlite3::HostConnectionWithStore<U> for HasServices {
    async fn open_async(
        accessor: &Accessor<U, Self>,
        database: String,
    ) -> Sql3Result<Resource<SpinConnection>> {
        accessor.with(|mut view| {
            let services = view.get();
            if !services.ctx.spin_databases.contains(&database) {
                return Ok(Err(sqlite3::Error::AccessDenied));
            }
            Ok(Ok(services.table.push(SpinConnection::new(database))?))
        })
    }

    async fn execute_async(
        accessor: &Accessor<U, Self>,
        connection: Resource<SpinConnection>,
        statement: String,
        parameters: Vec<sqlite3::Value>,
    ) -> Sql3Result<(
        Vec<String>,
        StreamReader<sqlite3::RowResult>,
        FutureReader<Result<(), sqlite3::Error>>,
    )> {
        let (ctx, database) = accessor.with(|mut view| {
            let services = view.get();
            let database = services.table.get(&connection)?.database.clone();
            Ok::<_, wasmtime::Error>((services.ctx.clone(), database))
        })?;
        let params = parameters.into_iter().map(sql_in3).collect();
        let rows = match run(&ctx, database, statement, params).await {
            Ok(rows) => rows,
            Err(error) => return Ok(Err(error3(error))),
        };
        accessor.with(|mut view| {
            remember(view.get().table.get_mut(&connection)?, &rows);
            let stream = StreamReader::new(&mut view, rows3(rows.rows))?;
            let future = FutureReader::new(&mut view, async { Ok::<_, wasmtime::Error>(Ok(())) })?;
            Ok(Ok((rows.columns, stream, future)))
        })
    }

    async fn last_insert_rowid_async(
        accessor: &Accessor<U, Self>,
        connection: Resource<SpinConnection>,
    ) -> wasmtime::Result<i64> {
        accessor.with(|mut view| Ok(view.get().table.get(&connection)?.last_insert_rowid))
    }

    async fn changes_async(
        accessor: &Accessor<U, Self>,
        connection: Resource<SpinConnection>,
    ) -> wasmtime::Result<u64> {
        accessor.with(|mut view| Ok(view.get().table.get(&connection)?.changes))
    }
}
