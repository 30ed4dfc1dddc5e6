//! Writers SIGKILLed at random moments leave complete outputs or none.

use crate::common::*;
use crate::support::*;

#[test]
fn killed_writers_leave_complete_outputs_or_none() {
    let inp = Inputs::new();
    let seed = std::env::var("VOXQ_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("kill moments: VOXQ_KILL_SEED={seed}");
    let mut rng = Rng(seed);
    let mut log = Vec::new();
    let out = tempfile::tempdir().unwrap();
    // Each writer writes into its own folder: out/<writer>/.
    let o = |n: &str| {
        let (w, f) = n.split_once('/').unwrap();
        std::fs::create_dir_all(out.path().join(w)).unwrap();
        out.path().join(w).join(f)
    };
    let writers = vec![
        Writer {
            name: "quantize",
            args: os(&[
                &"quantize",
                &campplus_onnx(),
                &"--table",
                &inp.path("table.json"),
                &"--out",
                &o("quantize/q.onnx"),
                &"--report",
                &o("quantize/report.json"),
            ]),
            outputs: vec![
                (o("quantize/q.onnx"), Kind::Onnx),
                (o("quantize/q.json"), Kind::Json),
                (o("quantize/report.json"), Kind::Json),
            ],
        },
        Writer {
            name: "build",
            args: os(&[
                &"build",
                &root().join("fixtures/models/ecapa_distil.onnx"),
                &"--target",
                &"cpu",
                &"--out",
                &o("build/engine"),
            ]),
            outputs: vec![(o("build/engine"), Kind::EngineDir)],
        },
        Writer {
            name: "calibrate",
            args: os(&[
                &"calibrate",
                &"--model",
                &ecapa(),
                &"--calib",
                &inp.path("calib.txt"),
                &"--audio-root",
                &inp.audio(),
                &"--method",
                &"max",
                &"--out",
                &o("calibrate/table.json"),
                &"--trt-cache",
                &o("calibrate/table.cache"),
                &"--quiet",
            ]),
            outputs: vec![
                (o("calibrate/table.json"), Kind::Json),
                (o("calibrate/table.cache"), Kind::Lines),
            ],
        },
        Writer {
            name: "eval",
            args: os(&[
                &"eval",
                &"--model",
                &ecapa(),
                &"--trials",
                &inp.path("trials.txt"),
                &"--audio-root",
                &inp.audio(),
                &"--scores",
                &o("eval/scores.txt"),
                &"--json",
                &o("eval/eval.json"),
                &"--det",
                &o("eval/det.png"),
                &"--quiet",
            ]),
            outputs: vec![
                (o("eval/scores.txt"), Kind::Lines),
                (o("eval/eval.json"), Kind::Json),
                (o("eval/det.png"), Kind::Png),
            ],
        },
    ];
    let mut writers = writers;
    writers.push(Writer {
        name: "enroll (JSON store)",
        args: os(&[
            &"enroll",
            &"--model",
            &ecapa(),
            &"--store",
            &o("enroll/store.json"),
            &"--speaker",
            &"x",
            &inp.audio().join("a.wav"),
            &inp.audio().join("b.wav"),
        ]),
        outputs: vec![(o("enroll/store.json"), Kind::Json)],
    });
    for w in &writers {
        let dir = w.outputs[0].0.parent().unwrap().to_path_buf();
        let refs = tempfile::tempdir().unwrap();
        log.extend(kill_test(w, &dir, refs.path(), &mut rng));
    }
    eprintln!("{}", log.join("\n"));
}
