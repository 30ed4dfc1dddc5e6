//! What voxq reads back from `trtexec`: `--exportOutput` JSON, the performance summary of its
//! log, the failure line of a failed run, and the `--exportLayerInfo` layer report.
//!
//! Invariants: parsed outputs have non-negative dimensions and as many values as they say; a layer report
//! counts every layer once by precision and renders as text.

#![no_main]

use std::path::Path;

use engines::tensorrt::layers;
use engines::tensorrt::trtexec::{failure_line, parse_outputs, parse_perf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(outputs) = parse_outputs(Path::new("fuzz/outputs.json"), text) {
        for o in &outputs {
            let n = o.dims.iter().try_fold(1usize, |acc, &d| {
                usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
            });
            assert_eq!(n, Some(o.values.len()), "output '{}': {:?}", o.name, o.dims);
        }
    }
    let _ = parse_perf(text);
    for code in [None, Some(1)] {
        assert!(failure_line(text, code).starts_with("trtexec failed"));
    }
    if let Ok(r) = layers::parse(Path::new("fuzz/layers.json"), text) {
        assert_eq!(r.by_precision.values().sum::<usize>(), r.layers);
        assert!(r.float_compute.len() + r.reformats.len() <= r.layers);
        let _ = r.summary();
        let _ = r.markdown();
    }
});
