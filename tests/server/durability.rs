//! SIGKILL loses no acknowledged enrollment; SIGTERM lets in-flight requests finish.

use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;

use crate::common::{s, stderr, stdout, voxq};
use crate::process::Server;
use crate::support::*;

#[test]
fn sigkill_loses_no_acknowledged_enrollment() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("speakers.db");
    let base = campplus_args();
    let wav = sp("allison/en/agent-pass.wav");
    let srv = Server::start(&args_with(&base, &["--store", s(&store)]));
    let url = srv.url("/v1/speakers");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(0usize));
    let client_thread = {
        let (acked, stop, sent, wav) = (acked.clone(), stop.clone(), sent.clone(), wav.clone());
        thread::spawn(move || {
            let c = Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let mut i = 0;
            let mut errors = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let name = format!("s{i}");
                *sent.lock().unwrap() = i + 1;
                match c.post(&url).form_data(enroll_form(&name, &[&wav])).send() {
                    Ok(r) if r.status().as_u16() == 201 || r.status().as_u16() == 200 => {
                        acked.lock().unwrap().push(name)
                    }
                    Ok(r) => errors.push(format!("{name}: {}", r.status())),
                    Err(_) => thread::sleep(Duration::from_millis(5)), // server gone
                }
                i += 1;
            }
            errors
        })
    };
    let t0 = Instant::now();
    loop {
        let n = acked.lock().unwrap().len();
        if n >= 10 && t0.elapsed() > Duration::from_millis(1500) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "only {n} enrollments acknowledged in 60 s\n{}",
            srv.tail()
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(unsafe { libc::kill(srv.pid(), libc::SIGKILL) }, 0);
    thread::sleep(Duration::from_millis(300)); // the client keeps sending into the void
    stop.store(true, Ordering::SeqCst);
    let errors = client_thread.join().unwrap();
    assert!(
        errors.is_empty(),
        "non-2xx answers before the kill: {errors:?}"
    );
    drop(srv);
    let acked = acked.lock().unwrap().clone();
    let sent = *sent.lock().unwrap();
    // the database as the killed process left it (WAL and all) passes the integrity check
    let o = voxq(&["store-check", s(&store)]);
    assert!(o.status.success(), "store-check: {}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "ok");

    let srv = Server::start(&args_with(&base, &["--store", s(&store)]));
    let r = srv.get("/v1/speakers");
    assert_eq!(r.status, 200, "{}", r.body);
    let listed: Vec<(String, u64)> = r.json()["speakers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["utterances"].as_u64().unwrap(),
            )
        })
        .collect();
    for name in &acked {
        assert!(
            listed.iter().any(|(n, u)| n == name && *u == 1),
            "acknowledged {name} lost after SIGKILL; listed {listed:?}"
        );
    }
    let sent_names: Vec<String> = (0..sent).map(|i| format!("s{i}")).collect();
    for (n, _) in &listed {
        assert!(sent_names.contains(n), "{n} was never sent");
    }
    eprintln!(
        "{} acknowledged, {} listed, {} sent",
        acked.len(),
        listed.len(),
        sent
    );
    // the restarted server still enrolls and verifies
    let r = srv.post_form("/v1/speakers", enroll_form("after", &[&wav]));
    assert_eq!(r.status, 201, "{}", r.body);
    let r = srv.post_form("/v1/verify", verify_form(&acked[0], &wav));
    assert_eq!(r.status, 200, "{}", r.body);
    drop(srv);
    let db = runtime::speaker::db::SpeakerDb::open(&store).unwrap();
    assert_eq!(db.integrity_check().unwrap(), "ok");
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let base = campplus_args();
    let mut srv = Server::start(&args_with(&base, &[]));
    let long = long_speech(tmp.path(), 55.0);
    let url = srv.url("/v1/embeddings");
    // what voxq_in_flight reads with no other request (the /metrics request may count)
    let idle = sample_sum(&srv.metrics(), "voxq_in_flight", "");
    let h = {
        let long = long.clone();
        thread::spawn(move || send(client().post(url).form_data(file_form(&long))))
    };
    // wait until the request is being worked on
    let t0 = Instant::now();
    loop {
        let m = srv.metrics();
        if sample_sum(&m, "voxq_in_flight", "") > idle {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the embedding request never showed in voxq_in_flight:\n{m}"
        );
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(unsafe { libc::kill(srv.pid(), libc::SIGTERM) }, 0);
    let r = h.join().unwrap();
    assert_eq!(r.status, 200, "in-flight request after SIGTERM: {}", r.body);
    embedding_of(&r.json());
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = srv.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "still running 30 s after SIGTERM\n{}",
            srv.tail()
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.signal().is_none(),
        "SIGTERM is handled (graceful stop), not fatal: {status:?}\n{}",
        srv.tail()
    );
    assert!(!srv.log().contains("panicked"), "{}", srv.log());
}
