//! Enrollment stores (SQLite and JSON) of enroll, verify, identify and store-check.

use crate::common::*;
use crate::files::*;
use crate::harness::*;

use std::ffi::OsString;

// ---------------------------------------------------------------------------------------------
// Enrollment stores (`--store X.db` / `X.json` of enroll, verify, identify; `store-check`)

#[test]
fn enrollment_stores() {
    let env = Env::new();
    let out = env.out();
    let wav = root().join("fixtures/audio/speech_16k.wav");
    let model = speaker();
    let db = env.path("good.db");
    must_succeed(&os(&[
        &"enroll",
        &"--model",
        &model,
        &"--store",
        &db,
        &"--speaker",
        &"x",
        &wav,
    ]));
    must_succeed(&os(&[
        &"verify",
        &"--model",
        &model,
        &"--store",
        &db,
        &"--speaker",
        &"x",
        &wav,
    ]));
    must_succeed(&os(&[&"store-check", &db]));
    let good = std::fs::read(&db).unwrap();
    assert!(good.len() >= 8192, "a SQLite file of at least two pages");
    let mut files = generic_cases(&env, "db", &good, &garbage(8192, 6));
    // Oversized: 2 GiB of zeros. (A real database followed by 2 GiB of zeros is a valid
    // store: SQLite reads only the pages its header counts, so that is no error case.)
    files[3].1 = env.sparse("zeros.db", b"", HUGE);
    files.push((
        "wrong-type-text",
        env.write("text.db", "speaker x: 0.1 0.2\n"),
    ));
    let mut sqlite_junk = b"SQLite format 3\0".to_vec();
    sqlite_junk.extend(garbage(8192, 8));
    files.push((
        "adversarial-sqlite-header-junk",
        env.write("junk.db", sqlite_junk),
    ));
    let mut bad_page = good.clone();
    bad_page[16] = 0x03; // page size 0x0300: not a power of two
    bad_page[17] = 0x00;
    files.push((
        "adversarial-bad-page-size",
        env.write("pagesize.db", bad_page),
    ));
    let mut cases = Vec::new();
    for (case, p) in &files {
        let f = s(p);
        let cmds: Vec<(&str, Vec<OsString>)> = vec![
            (
                "verify",
                os(&[
                    &"verify",
                    &"--model",
                    &model,
                    &"--store",
                    &f,
                    &"--speaker",
                    &"x",
                    &wav,
                ]),
            ),
            (
                "identify",
                os(&[&"identify", &"--model", &model, &"--store", &f, &wav]),
            ),
            ("store-check", os(&[&"store-check", &f])),
        ];
        for (cmd, args) in cmds {
            cases.push(Case {
                label: format!("{cmd}/store-db/{case}"),
                args,
                needles: vec![f.to_string()],
            });
        }
    }
    // enroll writes to the store: each case gets its own copy. An empty file is SQLite's
    // empty database, which enroll initialises (valid input, not a case).
    for (case, p) in files.iter().filter(|(c, _)| *c != "empty") {
        let copy = env.path(&format!(
            "enroll-{}",
            p.file_name().unwrap().to_str().unwrap()
        ));
        if p.is_dir() {
            std::fs::create_dir(&copy).unwrap();
        } else if *case == "oversized" {
            env.sparse(copy.file_name().unwrap().to_str().unwrap(), b"", HUGE);
        } else {
            std::fs::copy(p, &copy).unwrap();
        }
        cases.push(Case::naming(
            format!("enroll/store-db/{case}"),
            os(&[
                &"enroll",
                &"--model",
                &model,
                &"--store",
                &copy,
                &"--speaker",
                &"y",
                &wav,
            ]),
            &copy,
        ));
    }
    // JSON stores.
    let js = env.path("good.json");
    must_succeed(&os(&[
        &"enroll",
        &"--model",
        &model,
        &"--store",
        &js,
        &"--speaker",
        &"x",
        &wav,
    ]));
    let good_json = std::fs::read_to_string(&js).unwrap();
    let jv: serde_json::Value = serde_json::from_str(&good_json).unwrap();
    let mut jfiles = generic_cases(&env, "json", good_json.as_bytes(), b"{\"format\": ");
    let mut short_mean = jv.clone();
    short_mean["speakers"]["x"]["mean"] = serde_json::json!([0.5, 0.5]);
    let mut big_dim = jv.clone();
    big_dim["embedding_dim"] = 1_000_000_000_000u64.into();
    for (case, text) in [
        ("adversarial-short-embedding", short_mean.to_string()),
        ("adversarial-dim-1e12", big_dim.to_string()),
        ("adversarial-deep-nesting", deep_json(100_000)),
    ] {
        jfiles.push((case, env.write(&format!("{case}.json"), text)));
    }
    for (case, p) in &jfiles {
        let f = s(p);
        cases.push(Case {
            label: format!("verify/store-json/{case}"),
            args: os(&[
                &"verify",
                &"--model",
                &model,
                &"--store",
                &f,
                &"--speaker",
                &"x",
                &wav,
            ]),
            needles: vec![f.to_string()],
        });
    }
    run_matrix("store", &cases, &out);
    // No bad case changed the good stores.
    assert_eq!(std::fs::read(&db).unwrap(), good);
}
