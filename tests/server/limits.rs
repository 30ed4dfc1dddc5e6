//! Overload (503 with Retry-After), slow work (504) and dynamic batching.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::cosine;
use crate::process::Server;
use crate::support::*;

#[test]
fn overload_gives_503_with_retry_after() {
    let base = campplus_args();
    let srv = Server::start(&args_with(
        &base,
        &[
            "--max-concurrent",
            "1",
            "--max-queue",
            "1",
            "--max-batch",
            "1",
        ],
    ));
    let long = sp("allison/es/conf-usermenu-162.wav"); // 27.4 s
    let n = 12;
    let bar = Arc::new(Barrier::new(n));
    let srv = Arc::new(srv);
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (bar, srv, long) = (bar.clone(), srv.clone(), long.clone());
            thread::spawn(move || {
                let form = file_form(&long);
                let c = client();
                bar.wait();
                send(c.post(srv.url("/v1/embeddings")).form_data(form))
            })
        })
        .collect();
    let res: Vec<Resp> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut n503 = 0;
    for r in &res {
        match r.status {
            200 => {
                embedding_of(&r.json());
            }
            503 => {
                n503 += 1;
                assert_error(r, 503, "overloaded", "overload");
                assert_eq!(
                    r.header("retry-after").as_deref(),
                    Some("1"),
                    "Retry-After on 503"
                );
            }
            s => panic!("status {s} under overload: {}\n{}", r.body, srv.tail()),
        }
    }
    let statuses: Vec<u16> = res.iter().map(|r| r.status).collect();
    assert!(
        n503 >= 1,
        "no 503 from 12 concurrent requests: {statuses:?}"
    );
    assert!(n503 < n, "every request refused: {statuses:?}");
    let m = srv.metrics();
    let rejected = sample_sum(&m, "voxq_rejected_total", "reason=\"overloaded\"");
    assert_eq!(
        rejected, n503 as f64,
        "voxq_rejected_total{{reason=\"overloaded\"}} ({statuses:?}):\n{m}"
    );
    // nothing is stuck afterwards
    assert_eq!(sample_sum(&m, "voxq_queue_depth", ""), 0.0, "{m}");
    srv.embed(&sp("allison/en/agent-pass.wav"));
}

#[test]
fn slow_work_gives_504_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let base = campplus_args();
    let common_args = [
        "--max-concurrent",
        "1",
        "--max-queue",
        "16",
        "--max-batch",
        "1",
    ];
    // A fractional --timeout-s if the CLI takes one; else 1 s, and the queue wait behind
    // seven ~55 s clips on one worker does the rest.
    let mut a = args_with(&base, &common_args);
    a.extend(["--timeout-s", "0.05"]);
    let (srv, timeout) = match Server::spawn(&a, &[]) {
        Ok(mut srv) => {
            srv.wait_ready();
            (srv, 0.05)
        }
        Err(log) => {
            eprintln!("--timeout-s 0.05 refused, using 1:\n{log}");
            let mut a = args_with(&base, &common_args);
            a.extend(["--timeout-s", "1"]);
            (Server::start(&a), 1.0)
        }
    };
    let long = long_speech(tmp.path(), 55.0);
    let n = 8;
    let bar = Arc::new(Barrier::new(n));
    let srv = Arc::new(srv);
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (bar, srv, long) = (bar.clone(), srv.clone(), long.clone());
            thread::spawn(move || {
                let form = file_form(&long);
                let c = client();
                bar.wait();
                let t = Instant::now();
                let r = send(c.post(srv.url("/v1/embeddings")).form_data(form));
                (r, t.elapsed())
            })
        })
        .collect();
    let res: Vec<(Resp, Duration)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let statuses: Vec<u16> = res.iter().map(|(r, _)| r.status).collect();
    let mut n504 = 0;
    for (r, took) in &res {
        match r.status {
            200 => {}
            504 => {
                n504 += 1;
                assert_error(r, 504, "timeout", "timeout");
                // answered at the deadline, not after the work it gave up on
                assert!(
                    took.as_secs_f64() < timeout + 5.0,
                    "504 after {took:?} with --timeout-s {timeout}"
                );
            }
            s => panic!(
                "status {s} (timeout test, --timeout-s {timeout}): {}\n{}",
                r.body,
                srv.tail()
            ),
        }
    }
    assert!(
        n504 >= 1,
        "no 504 with --timeout-s {timeout}: {statuses:?}\n{}",
        srv.tail()
    );
    let m = srv.metrics();
    let rejected = sample_sum(&m, "voxq_rejected_total", "reason=\"timeout\"");
    assert_eq!(
        rejected, n504 as f64,
        "voxq_rejected_total{{reason=\"timeout\"}} ({statuses:?}):\n{m}"
    );
}

#[test]
fn dynamic_batching_gives_the_same_embeddings() {
    let base = campplus_args();
    let srv = Server::start(&args_with(
        &base,
        &["--max-batch", "8", "--batch-delay-ms", "20"],
    ));
    let wav = sp("allison/en/agent-pass.wav");
    let single = srv.embed(&wav);
    let n = 16;
    let bar = Arc::new(Barrier::new(n));
    let srv = Arc::new(srv);
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (bar, srv, wav) = (bar.clone(), srv.clone(), wav.clone());
            thread::spawn(move || {
                let form = file_form(&wav);
                let c = client();
                bar.wait();
                send(c.post(srv.url("/v1/embeddings")).form_data(form))
            })
        })
        .collect();
    for h in handles {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200, "{}\n{}", r.body, srv.tail());
        let e = embedding_of(&r.json());
        let c = cosine(&e, &single);
        assert!(c > 0.9999, "batched vs single embedding cosine {c}");
    }
    let m = srv.metrics();
    let sum = sample_sum(&m, "voxq_batch_size_sum", "");
    let count = sample_sum(&m, "voxq_batch_size_count", "");
    assert!(count >= 1.0 && sum == 17.0, "17 utterances embedded:\n{m}");
    assert!(
        sum / count > 1.0,
        "no batch bigger than 1 (sum {sum}, count {count}):\n{m}"
    );
    // no batch bigger than --max-batch
    let buckets = samples(&m, "voxq_batch_size_bucket");
    let le = |b: &str| {
        buckets
            .iter()
            .find(|(l, _)| l.contains(&format!("le=\"{b}\"")))
            .map(|(_, v)| *v)
    };
    assert_eq!(le("+Inf"), Some(count), "{m}");
    if let Some(under8) = le("8").or(le("8.0")) {
        assert_eq!(under8, count, "a batch over --max-batch 8:\n{m}");
    }
}
