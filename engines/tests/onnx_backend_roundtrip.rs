//! Every ONNX backend node test case through our model load/save: ONNX Runtime must reproduce
//! the expected outputs with our round-tripped model wherever it does so with the original.
//!
//! Per case: load `model.onnx` with `exporter::model::load`, save it with `save`, re-load the
//! saved file and require structural equality with the original. Then run the original in ONNX
//! Runtime with the case inputs; if ORT cannot load/run it or disagrees with the expected
//! outputs, record why; otherwise run our round-tripped file and require it to match the
//! expected outputs (rtol 1e-3, atol 1e-7; exact for ints, bools, strings; NaN == NaN).
//! The full per-case list goes to `target/onnx-backend-roundtrip.tsv`.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use engines::ort::{cpu_session, first_line, CpuOptions};
use engines::tensor::{compare, HostValue, Tolerance};
use engines::EngineError;
use exporter::model::{self, IoSummary, SaveOptions};
use ort::session::Session;
use ort::value::DynValue;

#[derive(Debug, Clone)]
enum Outcome {
    Passed,
    OrtCannotRun(String),
    OrtDisagrees(String),
    Unsupported(String),
    Failed(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::OrtCannotRun(_) => "ort-cannot-run",
            Outcome::OrtDisagrees(_) => "ort-disagrees",
            Outcome::Unsupported(_) => "unsupported-input-kind",
            Outcome::Failed(_) => "FAILED",
        }
    }

    fn reason(&self) -> &str {
        match self {
            Outcome::Passed => "",
            Outcome::OrtCannotRun(r)
            | Outcome::OrtDisagrees(r)
            | Outcome::Unsupported(r)
            | Outcome::Failed(r) => r,
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => repo_root().join("target"),
    }
}

struct DataSet {
    inputs: Vec<(String, HostValue)>,
    outputs: Vec<(String, HostValue)>,
}

/// Reads every `test_data_set_N` of a case, typed by the model's declared inputs/outputs.
fn read_data_sets(
    case: &Path,
    inputs: &[IoSummary],
    outputs: &[IoSummary],
) -> Result<Vec<DataSet>, String> {
    let mut sets: Vec<PathBuf> = std::fs::read_dir(case)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("test_data_set_"))
        })
        .collect();
    sets.sort();
    let read = |dir: &Path,
                prefix: &str,
                decl: &[IoSummary]|
     -> Result<Vec<(String, HostValue)>, String> {
        let mut out = Vec::new();
        for k in 0.. {
            let f = dir.join(format!("{prefix}_{k}.pb"));
            if !f.is_file() {
                break;
            }
            let Some(d) = decl.get(k) else {
                return Err(format!("{prefix}_{k}.pb has no matching graph {prefix}"));
            };
            let bytes = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            let v = HostValue::from_pb(&d.name, &bytes, &d.ty)
                .map_err(|e| format!("{prefix} '{}' ({}): {e}", d.name, d.ty))?;
            out.push((d.name.clone(), v));
        }
        Ok(out)
    };
    sets.iter()
        .map(|s| {
            Ok(DataSet {
                inputs: read(s, "input", inputs)?,
                outputs: read(s, "output", outputs)?,
            })
        })
        .collect()
}

enum RunError {
    /// ORT refused to run (its first error line).
    Ort(String),
    /// An input or output value we cannot hand to / read from ORT.
    Kind(String),
}

/// Runs one data set and compares every expected output; `Ok(Err(msg))` is a mismatch.
fn run_and_compare(session: &mut Session, ds: &DataSet) -> Result<Result<(), String>, RunError> {
    let mut feed: Vec<(String, DynValue)> = Vec::new();
    for (name, v) in &ds.inputs {
        match v.to_ort() {
            Ok(Some(val)) => feed.push((name.clone(), val)),
            Ok(None) => {} // empty optional: leave the input out
            Err(e) => return Err(RunError::Kind(format!("input '{name}': {e}"))),
        }
    }
    let outputs = session
        .run(feed)
        .map_err(|e| RunError::Ort(first_line(&e.to_string())))?;
    for (name, expected) in &ds.outputs {
        let Some(actual) = outputs.get(name) else {
            return Ok(Err(format!("no output '{name}'")));
        };
        let actual = HostValue::from_ort(name, actual)
            .map_err(|e| RunError::Kind(format!("output '{name}': {e}")))?;
        if let Err(m) = compare(expected, &actual, Tolerance::default()) {
            return Ok(Err(format!("output '{name}': {m}")));
        }
    }
    Ok(Ok(()))
}

fn open_reason(e: EngineError) -> String {
    match e {
        EngineError::Open { reason, .. } => reason,
        other => first_line(&other.to_string()),
    }
}

fn run_case(case: &Path, tmp: &Path) -> Outcome {
    let name = case
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let model_path = case.join("model.onnx");
    let original = match model::load(&model_path) {
        Ok(m) => m,
        Err(e) => return Outcome::Failed(format!("our load failed: {e}")),
    };
    let saved_path = tmp.join(format!("{name}.onnx"));
    if let Err(e) = model::save(&original, &saved_path, &SaveOptions::inline()) {
        return Outcome::Failed(format!("our save failed: {e}"));
    }
    match model::load(&saved_path) {
        Ok(m) if model::same_model(&m, &original) => {}
        Ok(_) => return Outcome::Failed("re-loaded model differs from the original".into()),
        Err(e) => return Outcome::Failed(format!("re-loading our file failed: {e}")),
    }
    let s = model::summary(&original);
    let sets = match read_data_sets(case, &s.inputs, &s.outputs) {
        Ok(s) => s,
        Err(e) => return Outcome::Unsupported(e),
    };
    let opts = CpuOptions {
        intra_threads: 1,
        ..CpuOptions::default()
    };

    // (a) the original model in ONNX Runtime.
    let mut orig = match cpu_session(&model_path, &opts) {
        Ok(s) => s,
        Err(e) => return Outcome::OrtCannotRun(open_reason(e)),
    };
    for (i, ds) in sets.iter().enumerate() {
        match run_and_compare(&mut orig, ds) {
            Ok(Ok(())) => {}
            Ok(Err(m)) => return Outcome::OrtDisagrees(format!("data set {i}: {m}")),
            Err(RunError::Ort(m)) => return Outcome::OrtCannotRun(m),
            Err(RunError::Kind(m)) => return Outcome::Unsupported(m),
        }
    }
    drop(orig);

    // (b) our round-tripped file must do what the original did.
    let mut ours = match cpu_session(&saved_path, &opts) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(format!("ORT cannot open our file: {}", open_reason(e))),
    };
    for (i, ds) in sets.iter().enumerate() {
        match run_and_compare(&mut ours, ds) {
            Ok(Ok(())) => {}
            Ok(Err(m)) => return Outcome::Failed(format!("round trip, data set {i}: {m}")),
            Err(RunError::Ort(m) | RunError::Kind(m)) => {
                return Outcome::Failed(format!("round trip, data set {i}: {m}"))
            }
        }
    }
    let _ = std::fs::remove_file(&saved_path);
    Outcome::Passed
}

/// Groups an ORT-cannot-run reason into a category for the summary.
fn category(reason: &str) -> String {
    let r = reason;
    let word_after = |pat: &str| -> Option<String> {
        let i = r.find(pat)? + pat.len();
        let rest = &r[i..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || "._:()-".contains(c)))
            .unwrap_or(rest.len());
        Some(rest[..end].to_string())
    };
    if r.contains("ai.onnx.preview.training") {
        return "training op (ai.onnx.preview.training domain)".into();
    }
    if r.contains("is under development") {
        return "opset still under development in ONNX 1.22 (ORT refuses it)".into();
    }
    if let Some(op) = word_after("Fatal error: ") {
        if r.contains("is not a registered function/op") {
            return format!("op not registered in ORT: {op}");
        }
    }
    if let Some(op) = word_after("Could not find an implementation for ")
        .or_else(|| word_after("Failed to find kernel for "))
    {
        return format!("no CPU kernel for {op} (this opset version or these types)");
    }
    if r.contains("layout_ == 0") {
        return "RNN/GRU/LSTM with layout=1 (batch first) not supported".into();
    }
    if r.contains("Failed to construct locale") {
        return "StringNormalizer needs the en_US.UTF-8 locale (not installed here)".into();
    }
    if let Some(op) = word_after("Non-zero status code returned while running ") {
        return format!("kernel error at run time: {op}");
    }
    if r.contains("panicked") {
        return "ort crate panicked reading an output".into();
    }
    format!("other: {}", r.chars().take(80).collect::<String>())
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

#[test]
fn onnx_backend_roundtrip() {
    let cases_dir = repo_root().join(".cache/onnx-node-tests");
    assert!(
        cases_dir.is_dir(),
        "ONNX backend test cases missing at {}: run `bash tools/setup_onnx_tests.sh` (make test does it)",
        cases_dir.display()
    );
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&cases_dir)
        .expect("list cases")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    cases.sort();
    assert!(
        cases.len() > 1000,
        "only {} cases in {}: re-run `bash tools/setup_onnx_tests.sh`",
        cases.len(),
        cases_dir.display()
    );
    engines::ort::environment().expect("ONNX Runtime");
    let tmp = tempfile::tempdir().expect("temp dir");
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(String, Outcome)>> = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 4);
    // ORT-side panics (e.g. reading an empty optional output) are caught per case; keep the
    // default hook from printing each one.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(i) else { break };
                let name = case
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let outcome =
                    std::panic::catch_unwind(AssertUnwindSafe(|| run_case(case, tmp.path())))
                        .unwrap_or_else(|p| {
                            Outcome::OrtCannotRun(format!(
                                "ort crate panicked: {}",
                                first_line(&panic_message(&*p))
                            ))
                        });
                results.lock().expect("results").push((name, outcome));
            });
        }
    });
    std::panic::set_hook(hook);
    let elapsed = start.elapsed();
    let mut results = results.into_inner().expect("results");
    results.sort_by(|a, b| a.0.cmp(&b.0));

    let mut tsv = String::from("case\toutcome\tcategory\treason\n");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut cats: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = Vec::new();
    for (name, o) in &results {
        *counts.entry(o.label()).or_default() += 1;
        let cat = match o {
            Outcome::OrtCannotRun(r) => {
                let c = category(r);
                *cats.entry(c.clone()).or_default() += 1;
                c
            }
            _ => String::new(),
        };
        tsv.push_str(&format!(
            "{name}\t{}\t{cat}\t{}\n",
            o.label(),
            o.reason().replace(['\t', '\n'], " ")
        ));
        if let Outcome::Failed(r) = o {
            failed.push(format!("{name}: {r}"));
        }
    }
    let target = target_dir();
    let target = target.canonicalize().unwrap_or(target);
    let tsv_path = target.join("onnx-backend-roundtrip.tsv");
    if let Some(dir) = tsv_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&tsv_path, tsv).expect("write tsv");
    println!(
        "ONNX backend round trip: {} cases in {:.1}s on {threads} threads",
        results.len(),
        elapsed.as_secs_f64()
    );
    for (k, v) in &counts {
        println!("  {k:<24} {v}");
    }
    println!("  ORT-cannot-run by category:");
    for (k, v) in &cats {
        println!("    {v:>4}  {k}");
    }
    println!("  per-case list: {}", tsv_path.display());
    assert!(
        failed.is_empty(),
        "{} cases failed the round trip:\n{}",
        failed.len(),
        failed.join("\n")
    );
    assert!(
        counts.get("passed").copied().unwrap_or(0) > 1000,
        "suspiciously few cases passed: {counts:?}"
    );
}
