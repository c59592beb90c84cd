//! The WIT in `wit/` parses, and its world is the one the runtime serves: it exports the incoming
//! handler and imports what ordinary toolchains import.

use std::path::Path;

use wit_parser::{Resolve, WorldItem, WorldKey};

fn key_name(resolve: &Resolve, key: &WorldKey) -> String {
    match key {
        WorldKey::Name(name) => name.clone(),
        WorldKey::Interface(id) => resolve.id_of(*id).unwrap_or_default(),
    }
}

#[test]
fn the_function_world_parses_and_says_what_it_promises() {
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_dir(&wit)
        .expect("wit/ parses with its vendored deps");
    let world = resolve
        .select_world(&[package], Some("function"))
        .expect("the function world exists");
    let world = &resolve.worlds[world];

    let exports: Vec<String> = world
        .exports
        .keys()
        .map(|k| key_name(&resolve, k))
        .collect();
    assert_eq!(exports, ["wasi:http/incoming-handler@0.2.12"]);

    let imports: Vec<String> = world
        .imports
        .iter()
        .filter(|(_, item)| matches!(item, WorldItem::Interface { .. }))
        .map(|(k, _)| key_name(&resolve, k))
        .collect();
    for expected in [
        "wasi:http/types@0.2.12",
        "wasi:http/outgoing-handler@0.2.12",
        "wasi:cli/environment@0.2.12",
        "wasi:cli/exit@0.2.12",
        "wasi:cli/stdout@0.2.12",
        "wasi:filesystem/preopens@0.2.12",
        "wasi:clocks/monotonic-clock@0.2.12",
        "wasi:random/random@0.2.12",
        "wasi:keyvalue/store@0.2.0-draft",
        "wasi:keyvalue/atomics@0.2.0-draft",
        "wasi:keyvalue/batch@0.2.0-draft",
        "wasi:config/store@0.2.0-rc.1",
        "wasi:logging/logging@0.1.0-draft",
    ] {
        assert!(
            imports.iter().any(|i| i == expected),
            "{expected} missing from {imports:?}"
        );
    }
}
