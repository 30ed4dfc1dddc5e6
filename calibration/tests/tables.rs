//! Calibration table I/O: JSON and TensorRT calibration cache, round trips and bad input.
#![allow(clippy::unwrap_used)]

mod common;

use calibration::{CalibError, CalibrationTable, Calibrator, Method, TensorRange};

fn sample_table(method: Method) -> CalibrationTable {
    let mut c = Calibrator::new(2048).unwrap();
    c.observe("input", &common::gaussian(50_000, 1)).unwrap();
    c.observe("/conv1/Conv_output_0", &common::laplace(50_000, 2))
        .unwrap();
    c.observe(
        "(Unnamed Layer* 4) [Fully Connected]_output",
        &[0.25, -1.5, 3.0],
    )
    .unwrap();
    c.observe("scope:name:0", &[0.0; 8]).unwrap();
    c.compute(method).unwrap()
}

#[test]
fn json_round_trip() {
    for m in [
        Method::Max,
        Method::Percentile(99.9),
        Method::Entropy,
        Method::Mse,
    ] {
        let t = sample_table(m);
        let text = t.to_json();
        assert_eq!(text, sample_table(m).to_json(), "JSON not deterministic");
        let back = CalibrationTable::from_json(&text).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.to_json(), text);
    }
    let text = sample_table(Method::Entropy).to_json();
    assert!(text.contains("\"format\": \"voxq-calibration/1\""));
    assert!(text.contains("\"method\": \"entropy\""));
    println!("{}", text.lines().take(16).collect::<Vec<_>>().join("\n"));
}

#[test]
fn trt_cache_round_trip() {
    let t = sample_table(Method::Entropy);
    let cache = t.to_trt_cache();
    println!("{cache}");
    let mut lines = cache.lines();
    assert_eq!(lines.next(), Some("TRT-8601-EntropyCalibration2"));
    for l in lines {
        let (_, hex) = l.rsplit_once(": ").unwrap();
        assert_eq!(hex.len(), 8, "{l}");
    }
    let back = CalibrationTable::from_trt_cache(&cache).unwrap();
    assert_eq!(back.method, "TRT-8601-EntropyCalibration2");
    assert_eq!(back.tensors.len(), t.tensors.len());
    for (name, r) in &t.tensors {
        let b = &back.tensors[name];
        assert_eq!(b.scale.to_bits(), r.scale.to_bits(), "{name}");
        assert!((b.amax - r.amax).abs() <= 1e-6 * r.amax, "{name}");
        assert!(b.stats.is_none() && b.fallback.is_none());
    }
    assert_eq!(back.to_trt_cache(), cache);
    // Cache → JSON → cache keeps the bits too.
    let again = CalibrationTable::from_json(&back.to_json()).unwrap();
    assert_eq!(again, back);
    let other = t.to_trt_cache_with_header("TRT-100300-EntropyCalibration2");
    assert!(other.starts_with("TRT-100300-EntropyCalibration2\n"));
}

#[test]
fn trt_cache_known_values() {
    let mut t = CalibrationTable::new("max");
    for (name, amax) in [("input", 127.0f32), ("out", 254.0)] {
        t.tensors.insert(
            name.into(),
            TensorRange {
                amax,
                scale: amax / 127.0,
                fallback: None,
                stats: None,
            },
        );
    }
    assert_eq!(
        t.to_trt_cache(),
        "TRT-8601-EntropyCalibration2\ninput: 3f800000\nout: 40000000\n"
    );
    // A cache as TensorRT 7.2 wrote it (CRLF, name with spaces, no trailing newline).
    let text = "TRT-7202-EntropyCalibration2\r\ndata: 3c008912\r\n(Unnamed Layer* 4) [Fully Connected]_output: 3d65992f";
    let t = CalibrationTable::from_trt_cache(text).unwrap();
    assert_eq!(t.tensors["data"].scale.to_bits(), 0x3c00_8912);
    let s = t.tensors["(Unnamed Layer* 4) [Fully Connected]_output"].scale;
    assert_eq!(s.to_bits(), 0x3d65_992f);
    println!(
        "data scale {} amax {}",
        t.tensors["data"].scale, t.tensors["data"].amax
    );
}

fn line_err(text: &str) -> (usize, String) {
    match CalibrationTable::from_trt_cache(text) {
        Err(CalibError::TableLine { line, reason }) => (line, reason),
        other => panic!("expected a line error for {text:?}, got {other:?}"),
    }
}

#[test]
fn trt_cache_bad_input() {
    let h = "TRT-8601-EntropyCalibration2\n";
    assert!(matches!(
        CalibrationTable::from_trt_cache(""),
        Err(CalibError::Table(_))
    ));
    assert_eq!(line_err("{\"format\": 1}\n").0, 1);
    assert_eq!(line_err("TRT-x-Entropy\n").0, 1);
    let cases = [
        ("a: 3f800000\nb 3f800000\n", 3, "missing ':'"),
        ("a: 3f800000\nb: zz800000\n", 3, "'b'"),
        ("a: +3f80000\n", 2, "'a'"),
        ("a: 3f8000001\n", 2, "'a'"),
        ("a:\n", 2, "'a'"),
        ("a: bf800000\n", 2, "'a'"),
        ("a: 00000000\n", 2, "'a'"),
        ("a: 7fc00000\n", 2, "'a'"),
        ("a: 7f800000\n", 2, "'a'"),
        ("a: 00000001\n", 2, "'a'"),
        ("a: 7f7fffff\n", 2, "overflows"),
        ("a: 3f800000\n\na: 3f800000\n", 4, "twice"),
        (": 3f800000\n", 2, "empty tensor name"),
    ];
    for (body, line, needle) in cases {
        let (l, reason) = line_err(&format!("{h}{body}"));
        println!("trt cache error line {l}: {reason}");
        assert_eq!(l, line, "{body:?}: {reason}");
        assert!(reason.contains(needle), "{body:?}: {reason}");
    }
}

#[test]
fn json_bad_input() {
    let good = sample_table(Method::Max);
    let text = good.to_json();
    let err = |t: &str| CalibrationTable::from_json(t).unwrap_err().to_string();

    let e = err("{ \"format\": ");
    assert!(e.contains("malformed JSON") && e.contains("line"), "{e}");
    let e = err(&text.replace("voxq-calibration/1", "onnx-calib/1"));
    assert!(e.contains("not a voxq calibration table"), "{e}");
    let e = err(&text.replace("voxq-calibration/1", "voxq-calibration/2"));
    assert!(e.contains("unsupported version"), "{e}");

    let mut t = good.clone();
    let r = t.tensors.get_mut("input").unwrap();
    r.scale = -r.scale;
    r.amax = -r.amax;
    let e = err(&t.to_json());
    assert!(e.contains("'input'") && e.contains("scale"), "{e}");

    let mut t = good.clone();
    t.tensors.get_mut("input").unwrap().scale *= 2.0;
    let e = err(&t.to_json());
    assert!(e.contains("'input'") && e.contains("amax/127"), "{e}");

    let mut t = good.clone();
    t.tensors.get_mut("input").unwrap().scale = 0.0;
    let e = err(&t.to_json());
    assert!(e.contains("'input'"), "{e}");

    // Non-finite floats serialise as null and must not parse.
    let mut t = good.clone();
    t.tensors.get_mut("input").unwrap().scale = f32::NAN;
    let e = err(&t.to_json());
    assert!(e.contains("malformed JSON"), "{e}");
    println!("json errors ok, e.g.: {e}");
}
