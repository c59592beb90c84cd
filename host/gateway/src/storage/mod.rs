//! What the gateway keeps on disk: the state directory ([`state`]) and the functions' key-value
//! store ([`keyvalue`]).

pub mod keyvalue;
pub mod state;
