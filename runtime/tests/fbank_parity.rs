//! Parity of runtime::audio::fbank with kaldi-native-fbank on real speech (fixtures/fbank,
//! written by tools/make_fbank_fixtures.py), plus mean normalisation and Kaldi frame counts.
//!
//! Tolerance: |ours - kaldi| <= 1e-3 for every value, plus an allowance for the reference's own
//! rounding noise in very weak bands. kaldi-native-fbank 1.22.4 runs its FFT in f32 (KissFFT);
//! ours runs in f64. f32 FFT noise is spread over all bins at ~1e-7 of the frame's energy, so in a
//! band `gap` nats below the frame's strongest band the reference's log value is off by up to
//! ~1.3e-6 * exp(gap / 2) (measured against an f64 replica of the same pipeline). Bands within
//! 12 nats (~52 dB) of the strongest get no allowance worth mentioning (< 4e-4); the allowance
//! only matters for bands 60+ dB down, and the test prints how many values used it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use runtime::audio::{read_wav, Fbank, FbankConfig, MeanNorm};
use runtime::RuntimeError;

const TOLERANCE: f32 = 1e-3;
/// Reference FFT noise allowance: NOISE_COEF * exp(gap / 2), gap in nats below the frame maximum.
const NOISE_COEF: f32 = 4e-6;
/// Bands this close (nats) to the frame's strongest band are reported as "strong".
const STRONG_GAP: f32 = 12.0;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/fbank")
}

fn index() -> Result<serde_json::Value> {
    let path = fixtures().join("index.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

fn read_f32(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    ensure!(bytes.len() % 4 == 0, "{}: not f32 data", path.display());
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Worst element-wise difference seen for one setting.
#[derive(Default)]
struct Worst {
    diff: f32,
    utterance: String,
    frame: usize,
    column: usize,
    utterances: usize,
    frames: usize,
    /// Worst difference among bands within STRONG_GAP of the frame maximum.
    strong: f32,
    /// Values above TOLERANCE that passed only thanks to the noise allowance.
    allowed: usize,
}

#[test]
fn matches_kaldi_native_fbank() -> Result<()> {
    let index = index()?;
    let settings = index["settings"]
        .as_object()
        .context("index.json: no settings")?;
    let mut computers = BTreeMap::new();
    for (name, cfg) in settings {
        let cfg: FbankConfig = serde_json::from_value(cfg.clone())
            .with_context(|| format!("setting {name} is not an FbankConfig"))?;
        computers.insert(name.clone(), Fbank::new(&cfg)?);
    }
    let mut worst: BTreeMap<String, Worst> = BTreeMap::new();
    let mut failures = Vec::new();
    let utterances = index["utterances"]
        .as_array()
        .context("index.json: no utterances")?;
    for utt in utterances {
        let name = utt["utterance"].as_str().context("utterance name")?;
        let wav = fixtures().join(utt["wav"].as_str().context("wav path")?);
        let audio = read_wav(&wav)?;
        let feats = utt["features"].as_object().context("features")?;
        for (setting, entry) in feats {
            let fbank = computers
                .get(setting)
                .with_context(|| format!("{name}: unknown setting {setting}"))?;
            ensure!(audio.sample_rate == fbank.config().sample_rate);
            let frames = entry["frames"].as_u64().context("frames")? as usize;
            let dim = entry["dim"].as_u64().context("dim")? as usize;
            let reference = read_f32(&fixtures().join(entry["file"].as_str().context("file")?))?;
            ensure!(
                reference.len() == frames * dim,
                "{name}/{setting}: bad size"
            );
            let ours = fbank.compute_named(&wav, &audio.samples)?;
            ensure!(
                ours.frames == frames && ours.dim == dim,
                "{name}/{setting}: shape {}x{} vs reference {frames}x{dim}",
                ours.frames,
                ours.dim
            );
            let w = worst.entry(setting.clone()).or_default();
            w.utterances += 1;
            w.frames += frames;
            let log_mel = fbank.config().use_log_fbank;
            let mel_start = usize::from(fbank.config().use_energy);
            for (f, (ours_row, ref_row)) in ours
                .data
                .chunks_exact(dim)
                .zip(reference.chunks_exact(dim))
                .enumerate()
            {
                let row_max = ref_row[mel_start..]
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                for (c, (a, b)) in ours_row.iter().zip(ref_row).enumerate() {
                    let d = (a - b).abs();
                    let d = if d.is_nan() { f32::INFINITY } else { d };
                    if d > w.diff {
                        w.diff = d;
                        w.utterance = name.to_string();
                        w.frame = f;
                        w.column = c;
                    }
                    let gap = if log_mel && c >= mel_start {
                        (row_max - b).max(0.0)
                    } else {
                        0.0
                    };
                    if gap <= STRONG_GAP {
                        w.strong = w.strong.max(d);
                    }
                    let allowed = TOLERANCE + NOISE_COEF * (gap / 2.0).exp();
                    if d > allowed {
                        failures.push(format!(
                            "{name}/{setting}: frame {f} dim {c}: ours {a} vs kaldi {b} (allowed {allowed:.2e})"
                        ));
                    } else if d > TOLERANCE {
                        w.allowed += 1;
                    }
                }
            }
        }
    }
    for (setting, w) in &worst {
        println!(
            "{setting:>16}: worst |diff| {:.3e} ({} frame {} dim {}); bands within {STRONG_GAP} nats of the frame max: {:.3e}; {} values > {TOLERANCE} in weak bands; {} utterances, {} frames",
            w.diff, w.utterance, w.frame, w.column, w.strong, w.allowed, w.utterances, w.frames
        );
    }
    for must in ["sherpa_povey", "hamming_nyquist"] {
        let n = worst.get(must).map_or(0, |w| w.utterances);
        ensure!(n >= 20, "setting {must} covers only {n} utterances");
    }
    if !failures.is_empty() {
        bail!(
            "{} values differ by more than allowed; first: {}",
            failures.len(),
            failures[..failures.len().min(10)].join("\n")
        );
    }
    Ok(())
}

#[test]
fn utterance_mean_norm_subtracts_bin_means() -> Result<()> {
    let wav = fixtures().join("wav/allison-en-agent-alreadyon.wav");
    let audio = read_wav(&wav)?;
    let plain_cfg = FbankConfig {
        use_energy: true,
        ..FbankConfig::default()
    };
    let normed_cfg = FbankConfig {
        mean_norm: MeanNorm::Utterance,
        ..plain_cfg.clone()
    };
    let plain = Fbank::new(&plain_cfg)?.compute(&audio.samples)?;
    let normed = Fbank::new(&normed_cfg)?.compute(&audio.samples)?;
    ensure!(plain.frames == normed.frames && plain.dim == normed.dim);
    let (frames, dim) = (plain.frames, plain.dim);
    for c in 0..dim {
        let mean: f64 = (0..frames)
            .map(|f| f64::from(plain.data[f * dim + c]))
            .sum::<f64>()
            / frames as f64;
        let mut normed_mean = 0.0f64;
        for f in 0..frames {
            let expect = plain.data[f * dim + c] as f64 - mean;
            let got = f64::from(normed.data[f * dim + c]);
            ensure!(
                (expect - got).abs() < 1e-4,
                "dim {c} frame {f}: {got} vs {expect}"
            );
            normed_mean += got;
        }
        ensure!(
            (normed_mean / frames as f64).abs() < 1e-4,
            "dim {c} mean not 0"
        );
    }
    Ok(())
}

#[test]
fn snip_edges_false_gives_kaldi_frame_count() -> Result<()> {
    let cfg = FbankConfig {
        snip_edges: false,
        ..FbankConfig::default()
    };
    let fbank = Fbank::new(&cfg)?;
    let shift = 160usize;
    for n in [
        80usize, 100, 239, 240, 400, 401, 1000, 16000, 16079, 16080, 31999,
    ] {
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 200) as f32 / 400.0 - 0.25)
            .collect();
        let f = fbank.compute(&x)?;
        // Kaldi: round(n / shift), with halves rounded up.
        let expect = (n + shift / 2) / shift;
        ensure!(
            f.frames == expect,
            "n={n}: {} frames, Kaldi gives {expect}",
            f.frames
        );
        ensure!(f.data.iter().all(|v| v.is_finite()));
    }
    // snip_edges = true: 1 + (n - 400) / 160, and nothing below one window.
    let snip = Fbank::new(&FbankConfig::default())?;
    ensure!(snip.compute(&[0.1; 16000])?.frames == 98);
    match snip.compute_named("short.wav", &[0.1; 399]) {
        Err(RuntimeError::TooShort {
            path,
            samples: 399,
            needed: 400,
        }) if path == Path::new("short.wav") => {}
        other => bail!("expected TooShort, got {other:?}"),
    }
    match fbank.compute(&[0.1; 79]) {
        Err(RuntimeError::TooShort { needed: 80, .. }) => {}
        other => bail!("expected TooShort, got {other:?}"),
    }
    Ok(())
}
