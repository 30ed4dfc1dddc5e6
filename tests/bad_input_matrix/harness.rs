//! Running one bad case under the address-space, RSS and time limits, and its verdict.

use crate::common::*;

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Address-space limit of every child (ONNX Runtime's own reservations fit well inside).
pub const AS_LIMIT: u64 = 4 << 30;
/// Peak resident size allowed to a failing run.
pub const MAX_RSS: u64 = 1 << 30;
/// Wall-clock limit of one run; the child is killed past it.
pub const TIME_LIMIT: Duration = Duration::from_secs(60);
/// Length of the sparse "oversized" files.
pub const HUGE: u64 = (2 << 30) + 4096;

// ---------------------------------------------------------------------------------------------
// Running a case

pub struct Run {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stderr: String,
    pub secs: f64,
    pub max_rss: u64,
    pub timed_out: bool,
}

/// Runs `voxq args` under the address-space limit, killing it after [`TIME_LIMIT`].
// The child is reaped with wait4 (for its peak RSS), not Child::wait.
#[allow(clippy::zombie_processes)]
pub fn run_limited(args: &[OsString]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_voxq"));
    cmd.args(args)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only setrlimit (async-signal-safe) runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let as_limit = libc::rlimit {
                rlim_cur: AS_LIMIT as libc::rlim_t,
                rlim_max: AS_LIMIT as libc::rlim_t,
            };
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &as_limit) != 0
                || libc::setrlimit(libc::RLIMIT_CORE, &no_core) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("voxq starts");
    let pid = child.id() as libc::pid_t;
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let mut status = 0;
    // SAFETY: plain C structs and calls on our own child's pid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let mut timed_out = false;
    loop {
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break;
        }
        assert!(r == 0, "wait4: {}", std::io::Error::last_os_error());
        if start.elapsed() > TIME_LIMIT {
            timed_out = true;
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::wait4(pid, &mut status, 0, &mut ru);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = out.join();
    let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    Run {
        code,
        signal,
        stderr,
        secs,
        max_rss: ru.ru_maxrss as u64 * 1024,
        timed_out,
    }
}

/// One bad input: the command line and what its error line must contain.
pub struct Case {
    /// `command/kind/case`.
    pub label: String,
    pub args: Vec<OsString>,
    /// The error line must contain each of these (the file's path first).
    pub needles: Vec<String>,
}

impl Case {
    /// A case whose error line must name `file` (and nothing more).
    pub fn naming(label: String, args: Vec<OsString>, file: &Path) -> Case {
        Case {
            label,
            args,
            needles: vec![s(file).to_string()],
        }
    }
}

pub fn short(s: &str) -> String {
    let s = s.trim();
    if s.len() <= 400 {
        return s.to_string();
    }
    let mut cut = 400;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes)", &s[..cut], s.len())
}

/// Why a finished bad case does not pass, if it does not.
pub fn verdict(c: &Case, r: &Run, out_dir: &Path) -> Result<(), String> {
    if r.timed_out {
        return Err(format!("still running after {TIME_LIMIT:?}: killed"));
    }
    if let Some(sig) = r.signal {
        return Err(format!(
            "killed by signal {sig}; stderr: {}",
            short(&r.stderr)
        ));
    }
    if r.code != Some(1) {
        return Err(format!(
            "exit status {:?} (want 1); stderr: {}",
            r.code,
            short(&r.stderr)
        ));
    }
    if r.stderr.contains("panicked") {
        return Err(format!("panic: {}", short(&r.stderr)));
    }
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() != 1 {
        return Err(format!(
            "{} stderr lines (want 1): {}",
            lines.len(),
            short(&r.stderr)
        ));
    }
    if !lines[0].starts_with("voxq: error: ") {
        return Err(format!("not a voxq error line: {}", short(lines[0])));
    }
    for n in &c.needles {
        if !lines[0].contains(n.as_str()) {
            return Err(format!("error line lacks {n:?}: {}", short(lines[0])));
        }
    }
    if r.max_rss > MAX_RSS {
        return Err(format!(
            "peak RSS {} MiB over {} MiB",
            r.max_rss >> 20,
            MAX_RSS >> 20
        ));
    }
    let left: Vec<_> = std::fs::read_dir(out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    if !left.is_empty() {
        return Err(format!("left behind in the output folder: {left:?}"));
    }
    Ok(())
}

/// Runs every case, then fails listing all that did not pass. With `VOXQ_MATRIX_SHOW=1` in
/// the environment every case's error line is printed (`cargo test -- --nocapture`).
pub fn run_matrix(kind: &str, cases: &[Case], out_dir: &Path) {
    let show = std::env::var_os("VOXQ_MATRIX_SHOW").is_some();
    let t0 = Instant::now();
    let mut failures = Vec::new();
    let (mut slowest, mut slowest_label) = (0.0f64, String::new());
    let mut max_rss = 0u64;
    for c in cases {
        let r = run_limited(&c.args);
        if show {
            eprintln!("{} [{:.2} s]: {}", c.label, r.secs, short(&r.stderr));
        }
        if let Err(why) = verdict(c, &r, out_dir) {
            failures.push(format!("{}: {why}", c.label));
            // Leave the output folder empty for the next case.
            for e in std::fs::read_dir(out_dir).unwrap() {
                let p = e.unwrap().path();
                let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
            }
        }
        if r.secs > slowest {
            slowest = r.secs;
            slowest_label = c.label.clone();
        }
        max_rss = max_rss.max(r.max_rss);
    }
    eprintln!(
        "{kind}: {} bad cases in {:.1} s, {} failed; slowest {:.2} s ({slowest_label}); peak RSS {} MiB",
        cases.len(),
        t0.elapsed().as_secs_f64(),
        failures.len(),
        slowest,
        max_rss >> 20
    );
    assert!(
        failures.is_empty(),
        "{kind}: {} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Runs good input under the same limits; it must succeed.
pub fn must_succeed(args: &[OsString]) {
    let r = run_limited(args);
    assert!(
        r.code == Some(0) && !r.timed_out,
        "good run {:?} failed under the limits (status {:?}, signal {:?}): {}",
        args,
        r.code,
        r.signal,
        short(&r.stderr)
    );
}
