//! Engine manifests (`manifest.json`): parse, check against a few hosts, write and parse again.
//!
//! Invariants: a manifest that parses serialises (as `Manifest::write` does) to JSON that
//! parses as an equal manifest; the host check answers Ok or an error, never panics.

#![no_main]

use std::path::Path;

use engines::manifest::{Gpu, Host, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz/manifest.json");
    let Ok(m) = Manifest::from_json(path, text) else {
        return;
    };

    let json = serde_json::to_string_pretty(&m).expect("a parsed manifest serialises");
    let back = Manifest::from_json(path, &json)
        .unwrap_or_else(|e| panic!("a written manifest does not parse: {e}\n{json}"));
    assert_eq!(back, m, "write → read changed the manifest");

    let hosts = [
        Host::default(),
        Host {
            builder_version: Some(m.builder.version.clone()),
            gpu: m.gpu.clone(),
            isa: m
                .openvino
                .as_ref()
                .map(|o| o.isa.clone())
                .unwrap_or_default(),
        },
        Host {
            builder_version: Some("1.31.1".into()),
            gpu: Some(Gpu {
                name: "NVIDIA H100 80GB HBM3".into(),
                compute_capability: "9.0".into(),
            }),
            isa: vec!["avx2".into()],
        },
    ];
    let sha = "9053539f01ff92b5387d91ef8c7d3470afb7978b163aa95b14b580eff209c998";
    for host in &hosts {
        for model_sha in [None, Some(sha), Some(m.source_model.sha256.as_str())] {
            if let Err(e) = m.check(Path::new("fuzz"), model_sha, host) {
                assert!(!e.to_string().is_empty());
            }
        }
    }
    for t in m.inputs.iter().chain(&m.outputs) {
        let shape = t.concrete(4, 300);
        assert_eq!(shape.len(), t.shape.len());
    }
});
