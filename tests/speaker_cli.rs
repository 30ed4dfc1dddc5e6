//! End-to-end: embed, enroll, verify, identify and eval with the real CAM++ model on real speech.

mod common;
use common::*;

#[test]
fn enroll_verify_identify_on_real_speech() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    let model = campplus();
    for (spk, file) in [
        ("allison", "fixtures/trials/demo_enroll_allison.txt"),
        ("june", "fixtures/trials/demo_enroll_june.txt"),
    ] {
        let wavs = list(file, 3);
        let mut args = vec![
            "enroll",
            "--model",
            s(&model),
            "--store",
            s(&store),
            "--speaker",
            spk,
        ];
        args.extend(wavs.iter().map(|p| s(p)));
        let o = voxq(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("3 utterance(s)"), "{}", stdout(&o));
    }
    // Allison enrolled in English, tested in Spanish: a cross-language target trial.
    let test = &list("fixtures/trials/demo_test_allison.txt", 1)[0];
    let score_of = |spk: &str| -> f64 {
        let o = voxq(&[
            "verify",
            "--model",
            s(&model),
            "--store",
            s(&store),
            "--speaker",
            spk,
            "--json",
            s(test),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        v["score"].as_f64().unwrap()
    };
    let own = score_of("allison");
    let other = score_of("june");
    assert!(own > other + 0.2, "allison {own} vs june {other}");

    let o = voxq(&[
        "identify",
        "--model",
        s(&model),
        "--store",
        s(&store),
        "--top",
        "2",
        "--json",
        s(test),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v[0]["speaker"], "allison");
    assert_eq!(v.as_array().unwrap().len(), 2);

    // Unknown speaker: one-line error naming the store.
    let o = voxq(&[
        "verify",
        "--model",
        s(&model),
        "--store",
        s(&store),
        "--speaker",
        "nobody",
        "--threshold",
        "0.5",
        s(test),
    ]);
    assert_one_line_error(&o, &[s(&store), "nobody", "not enrolled"]);
}

#[test]
fn embed_writes_one_line_per_file_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let wavs = list("fixtures/trials/demo_enroll_june.txt", 2);
    let out = dir.path().join("emb.tsv");
    let model = campplus();
    let o = voxq(&[
        "embed",
        "--model",
        s(&model),
        "--out",
        s(&out),
        s(&wavs[0]),
        s(&wavs[1]),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a = std::fs::read_to_string(&out).unwrap();
    assert_eq!(a.lines().count(), 2);
    for l in a.lines() {
        let (_, vals) = l.split_once('\t').unwrap();
        assert_eq!(vals.split(' ').count(), 192);
    }
    let o = voxq(&["embed", "--model", s(&model), s(&wavs[0]), s(&wavs[1])]);
    assert!(o.status.success());
    let mut b: Vec<String> = stdout(&o).lines().map(String::from).collect();
    let mut a: Vec<String> = a.lines().map(String::from).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "file and stdout output differ");
}
