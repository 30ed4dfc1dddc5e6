//! Calibration tables: the same text is parsed as voxq JSON and as a TensorRT calibration
//! cache. A table that parses must survive a round trip through both writers:
//!
//! - JSON → `to_json` → `from_json` gives an equal table;
//! - any valid table → `to_trt_cache` → `from_trt_cache` gives the same tensors with
//!   bit-identical scales (a cache holds scales only: amax comes back as `scale * 127`);
//! - a cache → `to_trt_cache` gives the same table again, and its JSON form parses as an equal
//!   table.

#![no_main]

use calibration::CalibrationTable;
use libfuzzer_sys::fuzz_target;

fn check_cache_round_trip(t: &CalibrationTable) {
    let cache = t.to_trt_cache();
    let back = CalibrationTable::from_trt_cache(&cache)
        .unwrap_or_else(|e| panic!("a valid table's TensorRT cache does not parse: {e}\n{cache}"));
    assert_eq!(
        back.tensors.keys().collect::<Vec<_>>(),
        t.tensors.keys().collect::<Vec<_>>(),
        "tensor names changed through the cache"
    );
    for (name, r) in &t.tensors {
        assert_eq!(
            back.tensors[name].scale.to_bits(),
            r.scale.to_bits(),
            "scale of '{name}' changed through the cache"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(t) = CalibrationTable::from_json(text) {
        let json = t.to_json();
        let back = CalibrationTable::from_json(&json)
            .unwrap_or_else(|e| panic!("to_json output does not parse: {e}\n{json}"));
        assert_eq!(back, t, "JSON round trip changed the table");
        check_cache_round_trip(&t);
    }

    if let Ok(t) = CalibrationTable::from_trt_cache(text) {
        t.validate()
            .unwrap_or_else(|e| panic!("a parsed cache is not a valid table: {e}"));
        let cache = t.to_trt_cache();
        let back = CalibrationTable::from_trt_cache(&cache)
            .unwrap_or_else(|e| panic!("to_trt_cache output does not parse: {e}\n{cache}"));
        assert_eq!(back, t, "cache round trip changed the table");
        let json = t.to_json();
        let from_json = CalibrationTable::from_json(&json)
            .unwrap_or_else(|e| panic!("a cache's JSON form does not parse: {e}\n{json}"));
        assert_eq!(from_json, t, "cache → JSON → table changed the table");
    }
});
