//! End-to-end: embed, enroll, verify, identify and eval with the real CAM++ model on real speech.

use crate::common;
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

#[test]
fn sqlite_store_enrolls_durably_and_refuses_another_model() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("speakers.db");
    let sp = speech();
    let files = |list: &str, n: usize| -> Vec<String> {
        std::fs::read_to_string(root().join(list))
            .unwrap()
            .lines()
            .take(n)
            .map(|l| sp.join(l).display().to_string())
            .collect()
    };
    let enroll = |who: &str, wavs: &[String]| {
        let mut args = vec![
            "enroll",
            "--model",
            "fixtures/models/campplus.json",
            "--store",
            s(&db),
            "--speaker",
            who,
        ];
        args.extend(wavs.iter().map(String::as_str));
        let o = voxq(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    enroll(
        "allison",
        &files("fixtures/trials/demo_enroll_allison.txt", 2),
    );
    enroll("june", &files("fixtures/trials/demo_enroll_june.txt", 2));
    // a second enrollment of the same speaker updates it in place
    let f = files("fixtures/trials/demo_enroll_allison.txt", 3);
    let out = enroll("allison", &f[2..]);
    assert!(out.contains("3 utterance(s) in total"), "{out}");
    let test = files("fixtures/trials/demo_test_allison.txt", 1).remove(0);
    let o = voxq(&[
        "identify",
        "--model",
        "fixtures/models/campplus.json",
        "--store",
        s(&db),
        "--top",
        "2",
        "--json",
        &test,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let top: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(top[0]["speaker"], "allison");
    let o = voxq(&[
        "verify",
        "--model",
        "fixtures/models/ecapa_distil.json",
        "--store",
        s(&db),
        "--speaker",
        "allison",
        "--threshold",
        "0.5",
        &test,
    ]);
    assert_one_line_error(
        &o,
        &[
            "speakers.db",
            "enrolled with model 'campplus_cn_en_common'",
            "re-enroll",
        ],
    );
    let o = voxq(&[
        "verify",
        "--model",
        "fixtures/models/campplus.json",
        "--store",
        s(&db),
        "--speaker",
        "nobody",
        "--threshold",
        "0.5",
        &test,
    ]);
    assert_one_line_error(&o, &["speakers.db", "'nobody' is not enrolled"]);
    // what the processes committed is there, in a sound WAL database
    let d = runtime::speaker::db::SpeakerDb::open(&db).unwrap();
    let all = d.list().unwrap();
    assert_eq!(
        all.iter()
            .map(|r| (r.name.as_str(), r.utterances))
            .collect::<Vec<_>>(),
        [("allison", 3), ("june", 2)]
    );
    assert_eq!(d.integrity_check().unwrap(), "ok");
}
