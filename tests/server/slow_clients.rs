//! Slow clients on loopback: connections that send their headers a byte at a time are closed
//! after `--header-timeout-s`, connections that send their body a byte at a time get 408 after
//! `--body-timeout-s` without taking a processing slot, and a well-behaved client is served
//! meanwhile.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::process::Server;
use crate::support::*;

/// How long a slow client keeps trying before it reports the connection still open.
const GIVE_UP: Duration = Duration::from_secs(12);

#[derive(Debug)]
enum Outcome {
    /// The server closed (or reset) the connection without answering.
    Closed(Duration),
    /// The server answered with this status.
    Answered(u16, Duration),
    /// Still open when the client gave up.
    Open,
}

/// Sends `head`, then one byte of `drip` every 100 ms, reading what the server says between
/// bytes.
fn slow_client(addr: &str, head: &[u8], drip: u8, bar: &Barrier) -> Outcome {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    bar.wait();
    let t0 = Instant::now();
    let mut sent_head = false;
    let mut got = Vec::new();
    while t0.elapsed() < GIVE_UP {
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => {
                return match status_of(&got) {
                    Some(code) => Outcome::Answered(code, t0.elapsed()),
                    None => Outcome::Closed(t0.elapsed()),
                }
            }
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if let Some(code) = status_of(&got) {
                    return Outcome::Answered(code, t0.elapsed());
                }
                continue;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Outcome::Closed(t0.elapsed()),
        }
        let w = if sent_head {
            s.write_all(&[drip])
        } else {
            sent_head = true;
            s.write_all(head)
        };
        if w.is_err() {
            return Outcome::Closed(t0.elapsed());
        }
    }
    Outcome::Open
}

fn status_of(resp: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(resp);
    let line = text.split("\r\n").next()?;
    if !text.contains("\r\n") {
        return None;
    }
    line.split(' ').nth(1)?.parse().ok()
}

#[test]
fn slow_clients_time_out_and_a_good_client_is_served() {
    let base = campplus_args();
    let srv = Server::start(&args_with(
        &base,
        &["--header-timeout-s", "1", "--body-timeout-s", "2"],
    ));
    let addr = srv.base.strip_prefix("http://").unwrap().to_string();
    let n_head = 20;
    let n_body = 20;
    let bar = Arc::new(Barrier::new(n_head + n_body + 1));
    let head_only = "POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".to_string();
    let with_body = "POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\n\
        Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 100000\r\n\r\n--XyZ\r\n"
        .to_string();
    let spawn = |head: String, drip: u8| {
        let (addr, bar) = (addr.clone(), bar.clone());
        thread::spawn(move || slow_client(&addr, head.as_bytes(), drip, &bar))
    };
    let heads: Vec<_> = (0..n_head)
        .map(|_| spawn(head_only.clone(), b'a'))
        .collect();
    let bodies: Vec<_> = (0..n_body)
        .map(|_| spawn(with_body.clone(), b'x'))
        .collect();
    bar.wait();
    thread::sleep(Duration::from_millis(500));

    // a well-behaved client while the slow ones hold their connections
    let t = Instant::now();
    let e = srv.embed(&sp("allison/en/agent-pass.wav"));
    assert_eq!(e.len(), 192);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "good request took {:?} among slow clients",
        t.elapsed()
    );

    for h in heads {
        match h.join().unwrap() {
            Outcome::Closed(d) | Outcome::Answered(408, d) => assert!(
                d >= Duration::from_millis(900) && d < Duration::from_secs(6),
                "slow headers ended after {d:?} with --header-timeout-s 1"
            ),
            o => panic!(
                "slow headers: {o:?} (want closed after ~1 s)\n{}",
                srv.tail()
            ),
        }
    }
    for h in bodies {
        match h.join().unwrap() {
            Outcome::Answered(408, d) => assert!(
                d >= Duration::from_millis(1900) && d < Duration::from_secs(7),
                "slow body answered 408 after {d:?} with --body-timeout-s 2"
            ),
            o => panic!("slow body: {o:?} (want 408 after ~2 s)\n{}", srv.tail()),
        }
    }
    // none of them took a processing slot; the server still serves
    let m = srv.metrics();
    assert_eq!(sample_sum(&m, "voxq_queue_depth", ""), 0.0, "{m}");
    assert_eq!(
        sample_sum(&m, "voxq_rejected_total", "reason=\"slow_client\""),
        n_body as f64,
        "{m}"
    );
    srv.embed(&sp("allison/en/agent-pass.wav"));
}
