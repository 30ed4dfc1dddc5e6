//! `voxq sensitivity` / `voxq autoquant` end to end on CAM++ and real speech: the cache is
//! reused for identical inputs and invalidated when the model or calibration table changes,
//! figures are reproducible, autoquant writes a model within its budget.

use crate::common;

use std::path::{Path, PathBuf};

use common::{assert_one_line_error, calib_list, campplus, root, s, speech, stderr, stdout, voxq};
use serde_json::Value;

/// A group spec over CAM++ with the given `(name, pattern)` groups (the rest is `(other)`).
fn spec(dir: &Path, file: &str, groups: &[(&str, &str)]) -> PathBuf {
    let g: Vec<Value> = groups
        .iter()
        .map(|(n, p)| serde_json::json!({"name": n, "patterns": [p]}))
        .collect();
    let p = dir.join(file);
    std::fs::write(
        &p,
        serde_json::to_string(&serde_json::json!({"name": file, "groups": g})).unwrap(),
    )
    .unwrap();
    p
}

fn run_sensitivity(
    model: &Path,
    calib: &Path,
    groups: &Path,
    method: &str,
    cache: &Path,
    out: &Path,
) -> Value {
    run_sensitivity_with(model, calib, groups, method, cache, out, &[])
}

fn run_sensitivity_with(
    model: &Path,
    calib: &Path,
    groups: &Path,
    method: &str,
    cache: &Path,
    out: &Path,
    more: &[&str],
) -> Value {
    let sp = speech();
    let mut args = vec![
        "sensitivity",
        s(model),
        "--calib",
        s(calib),
        "--audio-root",
        s(&sp),
        "--groups",
        s(groups),
        "--method",
        method,
        "--metric",
        "sqnr",
        "--cache",
        s(cache),
        "--out",
        s(out),
        "--threads",
        "2",
        "--quiet",
    ];
    args.extend_from_slice(more);
    let o = voxq(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("| none (fp32) |"), "{}", stdout(&o));
    for f in ["sensitivity.md", "sensitivity.json", "sensitivity.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    serde_json::from_str(&std::fs::read_to_string(out.join("sensitivity.json")).unwrap()).unwrap()
}

/// label -> (metric, cached) for every row.
fn rows(r: &Value) -> Vec<(String, f64, bool)> {
    let mut v = vec![&r["fp32"], &r["all_int8"]];
    v.extend(r["groups"].as_array().unwrap());
    v.iter()
        .map(|x| {
            (
                x["label"].as_str().unwrap().to_string(),
                x["metric"].as_f64().unwrap(),
                x["cached"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn cached_labels(r: &Value) -> Vec<String> {
    rows(r).into_iter().filter(|x| x.2).map(|x| x.0).collect()
}

/// A copy of CAM++ (ONNX + config) with one weight nudged: a different model, same graph.
fn changed_model(dir: &Path) -> PathBuf {
    let src = root().join("fixtures/models/campplus.onnx");
    let mut m = exporter::model::load(&src).unwrap();
    let t = m
        .graph
        .mut_or_insert_default()
        .initializer
        .iter_mut()
        .find(|t| t.data_type == 1 && !t.raw_data.is_empty())
        .expect("a float initializer with raw data");
    t.raw_data[0] ^= 0x01; // lowest mantissa bit of the first value
    let onnx = dir.join("campplus.onnx");
    exporter::model::save(&m, &onnx, &exporter::model::SaveOptions::inline()).unwrap();
    std::fs::copy(
        root().join("fixtures/models/campplus.json"),
        dir.join("campplus.json"),
    )
    .unwrap();
    dir.join("campplus.json")
}

#[test]
fn cache_reused_for_same_inputs_and_invalidated_by_model_or_table() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cal = calib_list(d, 6);
    let cache = d.join("cache");
    let g1 = spec(
        d,
        "g1.json",
        &[
            ("block2", "^/xvector/block2/"),
            ("block3", "^/xvector/block3/"),
        ],
    );

    // first run: everything measured
    let a = run_sensitivity(&campplus(), &cal, &g1, "entropy", &cache, &d.join("a"));
    let ra = rows(&a);
    assert_eq!(ra.len(), 5, "fp32, all int8, block2, block3, (other)");
    assert!(cached_labels(&a).is_empty(), "{ra:?}");
    let fp32 = ra[0].1;
    let all = ra[1].1;
    assert!(
        fp32 >= 100.0,
        "fp32 against itself has (capped) infinite SQNR: {fp32}"
    );
    assert!(all > 5.0 && all < 60.0, "all-int8 SQNR {all} dB");
    for (label, v, _) in &ra[2..] {
        assert!(
            *v >= all - 1e-9,
            "{label} alone ({v} dB) should not be worse than all int8 ({all} dB)"
        );
    }

    // same inputs: every figure from the cache, identical
    let b = run_sensitivity(&campplus(), &cal, &g1, "entropy", &cache, &d.join("b"));
    assert_eq!(cached_labels(&b).len(), 5);
    let rb = rows(&b);
    for (x, y) in ra.iter().zip(&rb) {
        assert_eq!((&x.0, x.1), (&y.0, y.1));
    }

    // recomputed from scratch (cache neither read nor written): the same figures
    let fresh = run_sensitivity_with(
        &campplus(),
        &cal,
        &g1,
        "entropy",
        &cache,
        &d.join("fresh"),
        &["--no-cache"],
    );
    assert!(cached_labels(&fresh).is_empty());
    for (x, y) in ra.iter().zip(&rows(&fresh)) {
        assert_eq!((&x.0, x.1), (&y.0, y.1), "a recomputation differs");
    }

    // an added group: only the groups whose node sets changed are measured again
    let g2 = spec(
        d,
        "g2.json",
        &[
            ("block2", "^/xvector/block2/"),
            ("block3", "^/xvector/block3/"),
            ("block1", "^/xvector/block1/"),
        ],
    );
    let c = run_sensitivity(&campplus(), &cal, &g2, "entropy", &cache, &d.join("c"));
    let mut cached = cached_labels(&c);
    cached.sort();
    assert_eq!(
        cached,
        ["all int8", "block2", "block3", "fp32"],
        "{:?}",
        rows(&c)
    );

    // another calibration table (method): fp32 still cached, every quantized variant measured again
    let e = run_sensitivity(&campplus(), &cal, &g1, "max", &cache, &d.join("e"));
    assert_eq!(cached_labels(&e), ["fp32"], "{:?}", rows(&e));

    // another model (one weight bit changed): nothing cached
    let mdir = d.join("model");
    std::fs::create_dir_all(&mdir).unwrap();
    let changed = changed_model(&mdir);
    let f = run_sensitivity(&changed, &cal, &g1, "entropy", &cache, &d.join("f"));
    assert!(cached_labels(&f).is_empty(), "{:?}", rows(&f));
}

#[test]
fn autoquant_writes_a_model_within_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cal = calib_list(d, 6);
    let out = d.join("aq");
    let o = voxq(&[
        "autoquant",
        s(&campplus()),
        "--calib",
        s(&cal),
        "--audio-root",
        s(&speech()),
        "--groups",
        "preset:campplus",
        "--metric",
        "sqnr",
        "--min-sqnr",
        "30",
        "--cache",
        s(&d.join("cache")),
        "--out",
        s(&out),
        "--threads",
        "2",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("autoquant.json")).unwrap())
            .unwrap();
    assert_eq!(
        r["search"], "exhaustive",
        "10 groups are searched exhaustively"
    );
    let chosen = &r["chosen_row"];
    let fp32 = &r["sensitivity"]["fp32"];
    let all = &r["sensitivity"]["all_int8"];
    assert!(chosen["metric"].as_f64().unwrap() >= 30.0, "{chosen}");
    assert!(
        all["metric"].as_f64().unwrap() < 30.0,
        "all int8 already meets 30 dB: the test needs a tighter budget"
    );
    let size = chosen["deployable_bytes"].as_u64().unwrap();
    assert!(size < fp32["deployable_bytes"].as_u64().unwrap());
    assert!(size > all["deployable_bytes"].as_u64().unwrap());
    // every set measured while searching is reported with its verdict
    for t in r["tried"].as_array().unwrap() {
        assert_eq!(
            t["within_budget"].as_bool().unwrap(),
            t["measured_degradation"].as_f64().unwrap() <= r["budget"].as_f64().unwrap()
        );
    }
    let md = std::fs::read_to_string(out.join("autoquant.md")).unwrap();
    assert!(
        md.contains("| fp32 |") && md.contains("| all int8 |") && md.contains("| chosen (float: "),
        "{md}"
    );
    // the chosen model is written, with its config, and runs
    let model = out.join("campplus-autoquant-tensorrt.onnx");
    assert!(model.is_file() && out.join("campplus-autoquant-tensorrt.json").is_file());
    let wav = common::list("fixtures/trials/calib.txt", 1).remove(0);
    let e = voxq(&[
        "embed",
        "--model",
        s(&out.join("campplus-autoquant-tensorrt.json")),
        s(&wav),
    ]);
    assert!(e.status.success(), "{}", stderr(&e));
    let q = voxq(&["inspect", s(&model), "--qdq", "--json"]);
    assert!(q.status.success(), "{}", stderr(&q));
    let inv: Value = serde_json::from_str(&stdout(&q)).unwrap();
    let n_q = inv["inventory"]["total"]["ops"]["QuantizeLinear"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        n_q > 0,
        "chosen model has no QuantizeLinear: {}",
        stdout(&q)
    );
}

#[test]
fn bad_sensitivity_arguments_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cal = calib_list(tmp.path(), 2);
    let out = tmp.path().join("o");
    let o = voxq(&[
        "sensitivity",
        s(&campplus()),
        "--calib",
        s(&cal),
        "--audio-root",
        s(&speech()),
        "--metric",
        "eer",
        "--out",
        s(&out),
        "--quiet",
        "--table",
        "fixtures/models/campplus.json",
    ]);
    assert_one_line_error(&o, &["--metric eer needs --trials"]);
    let o = voxq(&[
        "sensitivity",
        s(&campplus()),
        "--calib",
        s(&cal),
        "--audio-root",
        s(&speech()),
        "--groups",
        "preset:nope",
        "--out",
        s(&out),
        "--quiet",
        "--cache",
        s(&tmp.path().join("c")),
    ]);
    assert_one_line_error(&o, &["nope"]);
    let o = voxq(&[
        "autoquant",
        s(&campplus()),
        "--calib",
        s(&cal),
        "--audio-root",
        s(&speech()),
        "--metric",
        "sqnr",
        "--max-increase",
        "0.1",
        "--out",
        s(&out),
        "--quiet",
        "--cache",
        s(&tmp.path().join("c")),
    ]);
    assert_one_line_error(&o, &["SQNR", "--min-sqnr"]);
    assert!(!out.join("campplus-autoquant-tensorrt.onnx").exists());
    assert!(
        !tmp.path().join("c").exists(),
        "bad arguments are found before calibrating"
    );
}

/// `--objective latency --engine openvino`: every variant is evaluated and timed on OpenVINO,
/// the choice is the fastest measured set within the budget, and with two calibration methods
/// the search runs per method and keeps the better one.
#[test]
fn autoquant_latency_objective_on_openvino_picks_the_fastest_verified_set() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cal = calib_list(d, 4);
    let g = spec(
        d,
        "g.json",
        &[
            ("block2", "^/xvector/block2/"),
            ("block3", "^/xvector/block3/"),
        ],
    );
    let out = d.join("aq");
    let o = voxq(&[
        "autoquant",
        s(&campplus()),
        "--calib",
        s(&cal),
        "--audio-root",
        s(&speech()),
        "--groups",
        s(&g),
        "--metric",
        "sqnr",
        "--min-sqnr",
        "10",
        "--method",
        "entropy,max",
        "--target",
        "ort-cpu",
        "--engine",
        "openvino",
        "--objective",
        "latency",
        "--latency-frames",
        "100",
        "--latency-runs",
        "5",
        "--threads",
        "1",
        "--cache",
        s(&d.join("cache")),
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("autoquant.json")).unwrap())
            .unwrap();
    assert_eq!(r["objective"], "latency (p50_ms)");
    let sens = &r["sensitivity"];
    let p50 = |row: &Value| row["extra"]["p50_ms"].as_f64().unwrap();
    let mut within = vec![sens["fp32"].clone(), sens["all_int8"].clone()];
    within.extend(sens["groups"].as_array().unwrap().iter().cloned());
    let budget = r["budget"].as_f64().unwrap();
    let fp32_noise = 10f64.powf(-sens["fp32"]["metric"].as_f64().unwrap() / 10.0);
    let chosen = p50(&r["chosen_row"]);
    for row in &within {
        assert!(p50(row) > 0.0, "{row}");
        let deg = 10f64.powf(-row["metric"].as_f64().unwrap() / 10.0) - fp32_noise;
        if deg <= budget {
            assert!(
                chosen <= p50(row) + 1e-9,
                "chosen {chosen} ms, but {} measured {} ms within the budget",
                row["label"],
                p50(row)
            );
        }
    }
    for t in r["tried"].as_array().unwrap() {
        if t["within_budget"].as_bool().unwrap() {
            assert!(chosen <= t["cost"].as_f64().unwrap() + 1e-9, "{t}");
        }
    }
    let md = std::fs::read_to_string(out.join("autoquant.md")).unwrap();
    assert!(md.contains("smallest latency (p50_ms)"), "{md}");
    assert!(md.contains("Calibration methods compared"), "{md}");
    assert!(md.contains("| entropy |") && md.contains("| max |"), "{md}");
    assert!(out.join("campplus-autoquant-ort-cpu.onnx").is_file());
}
