//! What the gateway keeps on disk: the state directory ([`state`]), the functions' key-value
//! store ([`keyvalue`]) and Spin apps' SQLite databases ([`sqlite_dbs`]).

pub mod keyvalue;
pub mod sqlite_dbs;
pub mod state;
