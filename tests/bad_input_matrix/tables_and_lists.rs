//! Calibration tables, trial lists, layer-group specs and calibration lists.

use crate::common::*;
use crate::files::*;
use crate::harness::*;

use std::ffi::OsString;
use std::path::Path;

// ---------------------------------------------------------------------------------------------
// Calibration tables: voxq JSON and TensorRT calibration caches (`quantize --table`)

#[test]
fn calibration_tables() {
    let env = Env::new();
    let out = env.out();
    let good = unit_range_table(&campplus_onnx());
    let entry = |amax: &str, scale: &str| {
        format!(
            r#"{{"format": "voxq-calibration/1", "method": "max", "tensors": {{"feats": {{"amax": {amax}, "scale": {scale}}}}}}}"#
        )
    };
    let mut files = generic_cases(&env, "json", good.as_bytes(), b"{ \"format\": not json");
    files.push((
        "wrong-type-onnx",
        env.write("onnx.json", std::fs::read(campplus_onnx()).unwrap()),
    ));
    let json_adv: Vec<(&str, String)> = vec![
        ("adversarial-nan-scale", entry("1.0", "\"NaN\"")),
        ("adversarial-negative-scale", entry("-1.0", "-0.007874016")),
        ("adversarial-zero-scale", entry("0.0", "0.0")),
        ("adversarial-inf-amax", entry("1e39", "1e37")),
        (
            "adversarial-overflow-exponent",
            entry("1e99999999999", "1.0"),
        ),
        ("adversarial-subnormal-scale", entry("1.0e-43", "1.0e-45")),
        ("adversarial-scale-mismatch", entry("1.0", "0.5")),
        ("adversarial-deep-nesting", deep_json(100_000)),
        (
            "adversarial-million-char-name",
            format!(
                r#"{{"format": "voxq-calibration/1", "method": "max", "tensors": {{"{}": {{"amax": 1.0, "scale": 0.007874016}}}}}}"#,
                "n".repeat(1_000_000)
            ),
        ),
        (
            "adversarial-future-format",
            r#"{"format": "voxq-calibration/999", "method": "max", "tensors": {}}"#.into(),
        ),
    ];
    for (i, (case, text)) in json_adv.into_iter().enumerate() {
        files.push((case, env.write(&format!("adv{i}.json"), text)));
    }
    // TensorRT calibration caches.
    let header = "TRT-8601-EntropyCalibration2\n";
    let cache = |line: &str| format!("{header}{line}\n");
    let good_cache = format!("{header}feats: 3c010204\n");
    files.push((
        "cache-malformed",
        env.write("malformed.cache", "hello world\nx y z\n"),
    ));
    files.push((
        "cache-truncated",
        env.write("truncated.cache", &good_cache[..good_cache.len() - 6]),
    ));
    files.push(("cache-empty", env.write("empty.cache", "")));
    files.push((
        "cache-oversized",
        env.sparse("oversized.cache", good_cache.as_bytes(), HUGE),
    ));
    files.push(("cache-wrong-type-png", env.write("png.cache", png())));
    let cache_adv: Vec<(&str, String)> = vec![
        ("cache-adversarial-nan", cache("feats: 7fc00000")),
        ("cache-adversarial-inf", cache("feats: 7f800000")),
        ("cache-adversarial-negative", cache("feats: bf800000")),
        ("cache-adversarial-zero", cache("feats: 00000000")),
        ("cache-adversarial-subnormal", cache("feats: 00000001")),
        ("cache-adversarial-not-hex", cache("feats: zzzzzzzz")),
        (
            "cache-adversarial-million-char-line",
            cache(&format!("{}: 3c010204", "n".repeat(1_000_000))),
        ),
        (
            "cache-adversarial-duplicate",
            cache("feats: 3c010204\nfeats: 3c010204"),
        ),
    ];
    for (i, (case, text)) in cache_adv.into_iter().enumerate() {
        files.push((case, env.write(&format!("adv{i}.cache"), text)));
    }
    let table = env.write("good.json", &good);
    must_succeed(&os(&[
        &"quantize",
        &campplus_onnx(),
        &"--table",
        &table,
        &"--out",
        &env.path("q.onnx"),
    ]));
    let cases: Vec<Case> = files
        .iter()
        .map(|(case, p)| {
            Case::naming(
                format!("quantize/table/{case}"),
                os(&[
                    &"quantize",
                    &campplus_onnx(),
                    &"--table",
                    p,
                    &"--out",
                    &out.join("q.onnx"),
                    &"--report",
                    &out.join("report.json"),
                ]),
                p,
            )
        })
        .collect();
    run_matrix("table", &cases, &out);
}

// ---------------------------------------------------------------------------------------------
// Trial lists (`eval --trials`)

#[test]
fn trial_lists() {
    let env = Env::new();
    let out = env.out();
    let audio = audio_root(&env);
    let good = "1 a.wav a.wav\n0 a.wav b.wav\n";
    let mut files = generic_cases(&env, "txt", good.as_bytes(), b"2 a.wav b.wav\n");
    files[1].1 = env.write("truncated.txt", &good[..good.len() - 8]); // "0 a.wa"
    files.push((
        "wrong-type-onnx",
        env.write("onnx.txt", std::fs::read(campplus_onnx()).unwrap()),
    ));
    let adv: Vec<(&str, String)> = vec![
        ("adversarial-two-fields", "1 a.wav\n".into()),
        (
            "adversarial-million-char-line",
            format!("1 a.wav {}\n0 a.wav b.wav\n", "x".repeat(1_000_000)),
        ),
        (
            "adversarial-million-fields",
            format!("1 a.wav b.wav{}\n", " x".repeat(500_000)),
        ),
        (
            "adversarial-nul-in-path",
            "1 a.wav a\0.wav\n0 a.wav b.wav\n".into(),
        ),
        (
            "adversarial-only-targets",
            "1 a.wav a.wav\n1 b.wav b.wav\n".into(),
        ),
        ("adversarial-only-comments", "# nothing\n\n# here\n".into()),
    ];
    for (i, (case, text)) in adv.into_iter().enumerate() {
        files.push((case, env.write(&format!("adv{i}.txt"), text)));
    }
    let model = speaker();
    let eval = |t: &Path| {
        os(&[
            &"eval",
            &"--model",
            &model,
            &"--trials",
            &t,
            &"--audio-root",
            &audio,
            &"--scores",
            &out.join("scores.txt"),
            &"--json",
            &out.join("eval.json"),
            &"--quiet",
        ])
    };
    must_succeed(&eval(&env.write("good.txt", good))[..]);
    for e in std::fs::read_dir(&out).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let cases: Vec<Case> = files
        .iter()
        .map(|(case, p)| Case::naming(format!("eval/trials/{case}"), eval(p), p))
        .collect();
    run_matrix("trials", &cases, &out);
}

// ---------------------------------------------------------------------------------------------
// Layer-group specs (`--groups FILE` of quantize, inspect, sensitivity)

#[test]
fn group_specs() {
    let env = Env::new();
    let out = env.out();
    let audio = audio_root(&env);
    let calib = env.write("calib.txt", "a.wav\n");
    let table = env.write("table.json", unit_range_table(&campplus_onnx()));
    let good = r#"{"name": "two", "groups": [{"name": "head", "patterns": ["^/head"]}, {"name": "rest", "patterns": ["."]}]}"#;
    let mut files = generic_cases(
        &env,
        "json",
        good.as_bytes(),
        b"{\"groups\": [{\"name\": 3}",
    );
    let spec = |patterns: &str| {
        format!(r#"{{"name": "x", "groups": [{{"name": "g", "patterns": [{patterns}]}}]}}"#)
    };
    let adv: Vec<(&str, String)> =
        vec![
        ("adversarial-bad-regex", spec(r#""(""#)),
        ("adversarial-huge-regex", spec(r#""(?:a{1000}){1000}""#)),
        ("adversarial-no-groups", r#"{"name": "x", "groups": []}"#.into()),
        (
            "adversarial-duplicate-group",
            r#"{"groups": [{"name": "g", "patterns": ["a"]}, {"name": "g", "patterns": ["b"]}]}"#
                .into(),
        ),
        ("adversarial-unknown-field", r#"{"groups": [], "evil": 1}"#.into()),
        ("adversarial-deep-nesting", deep_json(100_000)),
    ];
    for (i, (case, text)) in adv.into_iter().enumerate() {
        files.push((case, env.write(&format!("adv{i}.json"), text)));
    }
    let good_spec = env.write("good.json", good);
    must_succeed(&os(&[
        &"inspect",
        &campplus_onnx(),
        &"--groups",
        &good_spec,
    ]));
    let mut cases = Vec::new();
    for (case, p) in &files {
        let cmds: Vec<(&str, Vec<OsString>)> = vec![
            (
                "inspect",
                os(&[&"inspect", &campplus_onnx(), &"--groups", p]),
            ),
            (
                "quantize",
                os(&[
                    &"quantize",
                    &campplus_onnx(),
                    &"--table",
                    &table,
                    &"--groups",
                    p,
                    &"--out",
                    &out.join("q.onnx"),
                ]),
            ),
            (
                "sensitivity",
                os(&[
                    &"sensitivity",
                    &campplus(),
                    &"--calib",
                    &calib,
                    &"--audio-root",
                    &audio,
                    &"--groups",
                    p,
                    &"--out",
                    &out.join("sens"),
                    &"--no-cache",
                    &"--quiet",
                ]),
            ),
        ];
        for (cmd, args) in cmds {
            cases.push(Case {
                label: format!("{cmd}/groups/{case}"),
                args,
                needles: vec![s(p).to_string()],
            });
        }
    }
    run_matrix("groups", &cases, &out);
}

// ---------------------------------------------------------------------------------------------
// Calibration lists (`calibrate --calib`, `sensitivity --calib`)

#[test]
fn calibration_lists() {
    let env = Env::new();
    let out = env.out();
    let audio = audio_root(&env);
    let good = "a.wav\nb.wav\n";
    let mut files = generic_cases(&env, "txt", good.as_bytes(), &garbage(4096, 5));
    std::fs::write(audio.join("nan.wav"), float32(16000, &[f32::NAN; 16000])).unwrap();
    let adv: Vec<(&str, String)> = vec![
        ("adversarial-only-comments", "# a.wav\n\n   \n".into()),
        (
            "adversarial-million-char-line",
            format!("{}\n", "x".repeat(1_000_000)),
        ),
        ("adversarial-nul-in-path", "a\0.wav\n".into()),
    ];
    for (i, (case, text)) in adv.into_iter().enumerate() {
        files.push((case, env.write(&format!("adv{i}.txt"), text)));
    }
    // Half of a list is a shorter valid list; "truncated" is cut inside a path instead (below,
    // where the error names the entry).
    files.retain(|(c, _)| *c != "truncated");
    let table = env.path("good.json");
    must_succeed(&os(&[
        &"calibrate",
        &"--model",
        &speaker(),
        &"--calib",
        &env.write("good.txt", "a.wav\n"),
        &"--audio-root",
        &audio,
        &"--out",
        &table,
        &"--method",
        &"max",
        &"--single-pass",
        &"--quiet",
    ]));
    let mut cases = Vec::new();
    let calibrate = |list: &Path| {
        os(&[
            &"calibrate",
            &"--model",
            &speaker(),
            &"--calib",
            &list,
            &"--audio-root",
            &audio,
            &"--out",
            &out.join("t.json"),
            &"--trt-cache",
            &out.join("t.cache"),
            &"--quiet",
        ])
    };
    for (case, p) in &files {
        cases.push(Case::naming(
            format!("calibrate/calib-list/{case}"),
            calibrate(p),
            p,
        ));
        cases.push(Case::naming(
            format!("sensitivity/calib-list/{case}"),
            os(&[
                &"sensitivity",
                &speaker(),
                &"--calib",
                p,
                &"--audio-root",
                &audio,
                &"--metric",
                &"sqnr",
                &"--out",
                &out.join("sens"),
                &"--no-cache",
                &"--quiet",
            ]),
            p,
        ));
    }
    // Lists whose entries are bad: the error names the entry.
    for (case, line, bad) in [
        ("truncated", "b.w", audio.join("b.w")),
        ("adversarial-entry-is-folder", ".", audio.join(".")),
        (
            "adversarial-entry-nan-audio",
            "nan.wav",
            audio.join("nan.wav"),
        ),
    ] {
        let p = env.write(&format!("{case}.txt"), format!("a.wav\n{line}\n"));
        cases.push(Case::naming(
            format!("calibrate/calib-list/{case}"),
            calibrate(&p),
            &bad,
        ));
    }
    run_matrix("calib-list", &cases, &out);
}
