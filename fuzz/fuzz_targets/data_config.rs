//! Any text given as a `[data]` table parses to a config or an error; a parsed config's checks
//! and default resolution never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return;
    };
    if let Ok(cfg) = neurogen_data::from_table::<neurogen_data::DataConfig>(table) {
        let _ = cfg.check();
        let resolved = cfg.resolved();
        let _ = resolved.kind();
        // What a run stores must parse back.
        let text = toml::to_string(&resolved).expect("a parsed config serialises");
        let back: toml::Table = text.parse().expect("serialised TOML parses");
        neurogen_data::from_table::<neurogen_data::DataConfig>(back).expect("round trip");
    }
});
