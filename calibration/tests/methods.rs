//! Methods on known distributions, histogram growth and degenerate tensors.
#![allow(clippy::unwrap_used)]

mod common;

use calibration::{CalibError, Calibrator, Method};

const ALL: [Method; 5] = [
    Method::Max,
    Method::Percentile(99.99),
    Method::Percentile(99.9),
    Method::Entropy,
    Method::Mse,
];

fn amax(c: &Calibrator, t: &str, m: Method) -> f64 {
    let r = c.compute_tensor(t, m).expect("compute");
    assert!(r.scale > 0.0 && r.scale.is_finite());
    assert_eq!(r.scale, r.amax / 127.0);
    assert!(
        r.fallback.is_none(),
        "{t} {m}: unexpected fallback {:?}",
        r.fallback
    );
    f64::from(r.amax)
}

#[test]
fn gaussian_methods() {
    let data = common::gaussian(1_000_000, 42);
    let sample_max = data.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    // Two-pass flow: the histogram starts at the abs-max (TensorRT's 2048 bins over [0, max]).
    let mut c = Calibrator::new(2048).unwrap();
    c.preset_range("g", f64::from(sample_max)).unwrap();
    // One-pass flow: the first chunk's abs-max (~4.0) sets the range, which then doubles.
    c.observe("grown", &[]).unwrap();
    for chunk in data.chunks(16_000) {
        c.observe("g", chunk).unwrap();
        c.observe("grown", chunk).unwrap();
    }
    let s = c.stats("g").unwrap();
    println!(
        "gaussian N(0,1) 1e6: mean {:.5} std {:.5} sample abs-max {sample_max}",
        s.mean, s.std
    );
    for t in ["g", "grown"] {
        let max = amax(&c, t, Method::Max);
        let p9999 = amax(&c, t, Method::Percentile(99.99));
        let p999 = amax(&c, t, Method::Percentile(99.9));
        let ent = amax(&c, t, Method::Entropy);
        let mse = amax(&c, t, Method::Mse);
        println!(
            "gaussian [{t}, hist range {:.3}]: max {max:.4} p99.99 {p9999:.4} p99.9 {p999:.4} \
             entropy {ent:.4} mse {mse:.4}",
            c.histogram(t).unwrap().range()
        );
        assert_eq!(max, f64::from(sample_max));
        assert!((p9999 - 3.89).abs() < 0.1, "p99.99 {p9999}");
        assert!((p999 - 3.29).abs() < 0.1, "p99.9 {p999}");
        // Theory (Banner et al., ACIQ): the MSE-optimal 8-bit clip of N(0,1) is ~3.92.
        assert!(
            (2.0..=4.0).contains(&mse) && (mse - 3.92).abs() < 0.15,
            "mse {mse}"
        );
        if t == "g" {
            assert!((2.5..=4.5).contains(&ent) && ent < max, "entropy {ent}");
        } else {
            // At half resolution the KL search keeps (nearly) the whole range.
            assert!((2.5..=max).contains(&ent), "entropy {ent}");
        }
    }
    let table = c.compute(Method::Entropy).unwrap();
    assert_eq!(table.method, "entropy");
    assert_eq!(
        f64::from(table.tensors["g"].amax),
        amax(&c, "g", Method::Entropy)
    );
}

#[test]
fn heavy_tails_clip_well_below_max() {
    let mut c = Calibrator::new(2048).unwrap();
    c.observe("laplace", &common::laplace(1_000_000, 7))
        .unwrap();
    c.observe("mixture", &common::outlier_mixture(1_000_000, 9))
        .unwrap();
    let mut got = Vec::new();
    for t in ["laplace", "mixture"] {
        let max = amax(&c, t, Method::Max);
        let p = amax(&c, t, Method::Percentile(99.99));
        let ent = amax(&c, t, Method::Entropy);
        let mse = amax(&c, t, Method::Mse);
        println!("{t}: max {max:.4} p99.99 {p:.4} entropy {ent:.4} mse {mse:.4}");
        assert!(mse < 0.8 * max, "{t}: mse {mse} vs max {max}");
        got.push((max, p, ent, mse));
    }
    let (lmax, lp, lent, lmse) = got[0];
    // Laplace(0,1): |x| ~ Exp(1), so p99.99 = ln(1e4) ≈ 9.21; ACIQ's 8-bit MSE clip ≈ 9.89.
    assert!((lp - 9.21).abs() < 0.3, "laplace p99.99 {lp}");
    assert!((lmse - 9.89).abs() < 0.5, "laplace mse {lmse}");
    assert!(lent < 0.9 * lmax, "laplace entropy {lent} vs max {lmax}");
    // 0.1 % outliers from N(0, 30²): KL ignores them, MSE pays for clipping them.
    let (mmax, _, ment, _) = got[1];
    assert!(
        ment < 0.4 * mmax && ment > 3.0,
        "mixture entropy {ment} vs max {mmax}"
    );
}

#[test]
fn growth_in_small_batches_matches_one_batch() {
    // Sorting by |x| makes the range grow in almost every batch (first batch ~1e-6).
    let mut data = common::gaussian(1_000_000, 3);
    data.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
    let mut one = Calibrator::new(2048).unwrap();
    one.observe("x", &data).unwrap();
    let mut many = Calibrator::new(2048).unwrap();
    let mut mem_after_10 = 0;
    for (i, chunk) in data.chunks(100).enumerate() {
        many.observe("x", chunk).unwrap();
        if i == 9 {
            mem_after_10 = many.memory_bytes();
        }
    }
    assert_eq!(data.chunks(100).count(), 10_000);
    assert_eq!(
        many.memory_bytes(),
        mem_after_10,
        "memory grew with batches"
    );
    assert_eq!(many.memory_bytes(), one.memory_bytes());
    let (h1, hm) = (one.histogram("x").unwrap(), many.histogram("x").unwrap());
    assert_eq!(h1.total(), hm.total());
    println!(
        "growth: one-batch range {:.4}, 10,000-batch range {:.4} (first batch abs-max {:.2e}), memory {} B",
        h1.range(),
        hm.range(),
        data[99].abs(),
        many.memory_bytes()
    );
    let width = h1.bin_width().max(hm.bin_width());
    for m in [
        Method::Max,
        Method::Percentile(99.99),
        Method::Percentile(99.0),
        Method::Percentile(50.0),
    ] {
        let (a, b) = (amax(&one, "x", m), amax(&many, "x", m));
        println!("growth {m}: one batch {a:.5}, 10,000 batches {b:.5}, bin width {width:.5}");
        assert!((a - b).abs() <= width, "{m}: {a} vs {b}");
    }
    for m in [Method::Entropy, Method::Mse] {
        let (a, b) = (amax(&one, "x", m), amax(&many, "x", m));
        println!("growth {m}: one batch {a:.4}, 10,000 batches {b:.4}");
    }
}

#[test]
fn merged_calibrators_match_single() {
    let data = common::gaussian(200_000, 11);
    let mut whole = Calibrator::new(2048).unwrap();
    whole.observe("t", &data).unwrap();
    let (a, b) = data.split_at(50_000);
    let mut ca = Calibrator::new(2048).unwrap();
    ca.observe("t", a).unwrap();
    let mut cb = Calibrator::new(2048).unwrap();
    cb.observe("t", b).unwrap();
    cb.observe("only_b", &[1.0, 2.0]).unwrap();
    ca.merge(&cb).unwrap();
    assert_eq!(ca.tensors(), vec!["only_b", "t"]);
    let (sa, sw) = (ca.stats("t").unwrap(), whole.stats("t").unwrap());
    assert_eq!(sa.count, sw.count);
    assert!((sa.std - sw.std).abs() < 1e-9 * sw.std);
    let w = ca.histogram("t").unwrap().bin_width() * 2.0;
    let m = Method::Percentile(99.9);
    assert!((amax(&ca, "t", m) - amax(&whole, "t", m)).abs() <= w);
    assert!(ca.merge(&Calibrator::new(1024).unwrap()).is_err());
}

#[test]
fn degenerate_tensors() {
    let mut c = Calibrator::new(2048).unwrap();
    c.observe("zeros", &[0.0; 1000]).unwrap();
    c.observe("zeros", &[-0.0; 10]).unwrap();
    c.observe("const", &[3.0; 1000]).unwrap();
    c.observe("neg_const", &[-2.5; 10]).unwrap();
    c.observe("one_bin", &[1.0, 1.000_000_1, 1.0]).unwrap();
    c.observe("tiny", &[1e-40, -1e-41]).unwrap();
    c.observe("empty", &[]).unwrap();
    c.observe("late", &[0.0; 100]).unwrap();
    c.observe("late", &[0.5, -2.0, 1.0]).unwrap();
    for m in ALL {
        let t = c.compute(m).unwrap();
        for (name, r) in &t.tensors {
            assert!(
                r.scale.is_normal() && r.scale > 0.0 && r.amax > 0.0 && r.amax.is_finite(),
                "{m} {name}: {r:?}"
            );
        }
        let z = &t.tensors["zeros"];
        assert_eq!((z.amax, z.scale), (1.0, 1.0 / 127.0));
        assert!(z.fallback.as_deref().unwrap().contains("all-zero"));
        assert_eq!(t.tensors["tiny"].amax, 1.0);
        assert!(t.tensors["tiny"].fallback.is_some());
        assert_eq!(t.tensors["empty"].amax, 1.0);
        assert!(t.tensors["empty"].fallback.is_some());
        assert_eq!(t.tensors["const"].amax, 3.0);
        assert_eq!(t.tensors["neg_const"].amax, 2.5);
        assert_eq!(t.tensors["one_bin"].amax, 1.000_000_1);
        assert_eq!(t.tensors["late"].stats.as_ref().unwrap().count, 103);
        if m == Method::Max {
            assert!(t.tensors["const"].fallback.is_none());
            assert_eq!(t.tensors["late"].amax, 2.0);
        } else {
            assert!(t.tensors["const"]
                .fallback
                .as_deref()
                .unwrap()
                .contains("constant"));
            assert!(t.tensors["one_bin"]
                .fallback
                .as_deref()
                .unwrap()
                .contains("single"));
        }
        println!(
            "degenerate {m}: zeros {:?} const {} one_bin {} late {}",
            t.tensors["zeros"].fallback,
            t.tensors["const"].amax,
            t.tensors["one_bin"].amax,
            t.tensors["late"].amax
        );
    }

    for (name, bad) in [
        ("nan", f32::NAN),
        ("inf", f32::INFINITY),
        ("ninf", f32::NEG_INFINITY),
    ] {
        let mut c = Calibrator::new(2048).unwrap();
        c.observe("fine", &[1.0, 2.0]).unwrap();
        c.observe(name, &[1.0, bad, 2.0]).unwrap();
        assert_eq!(c.stats(name).unwrap().nonfinite, 1);
        assert_eq!(c.histogram(name).unwrap().total(), 2.0);
        for m in ALL {
            match c.compute(m) {
                Err(CalibError::Tensor { tensor, reason }) => {
                    assert_eq!(tensor, name);
                    assert!(reason.contains("NaN/Inf"), "{reason}");
                }
                other => panic!("{name} {m}: expected a tensor error, got {other:?}"),
            }
            assert!(c.compute_tensor("fine", m).is_ok());
        }
        let e = c.compute(Method::Max).unwrap_err().to_string();
        println!("degenerate {name}: {e}");
    }
}

/// After a ReLU half the values are exactly zero. That spike must not steer the KL search to
/// its narrowest candidate (128 of 2048 bins = 1/16 of the range), which clips almost every
/// non-zero value; this was a real failure on CAM++ (EER 1.1% -> 11.6%).
#[test]
fn entropy_ignores_the_zero_spike_after_relu() {
    let data: Vec<f32> = common::gaussian(1_000_000, 7)
        .into_iter()
        .map(|x| x.max(0.0))
        .collect();
    let max = data.iter().fold(0.0f32, |m, x| m.max(*x));
    let mut c = Calibrator::new(2048).unwrap();
    c.preset_range("relu", f64::from(max)).unwrap();
    c.observe("relu", &data).unwrap();
    let ent = amax(&c, "relu", Method::Entropy);
    println!("relu(N(0,1)) 1e6: max {max:.4} entropy {ent:.4}");
    assert!(ent > 2.0 && ent <= f64::from(max), "entropy amax {ent}");
}
