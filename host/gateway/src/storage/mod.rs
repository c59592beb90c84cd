//! What the gateway keeps on disk: the state directory ([`state`]), the functions' key-value
//! store ([`keyvalue`]), Spin apps' SQLite databases ([`sqlite_dbs`]) and their components' static
//! files, unpacked ([`spin_files`]).

pub mod keyvalue;
pub mod spin_files;
pub mod sqlite_dbs;
pub mod state;
