//! Sample-rate conversion of whole signals with a windowed-sinc resampler, time-aligned.
//!
//! Output sample `n` estimates the input signal at time `n / to` seconds (no filter delay), and
//! the output has `round(len * to / from)` samples.

use rubato::{
    calculate_cutoff, Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

use crate::error::{Result, RuntimeError};

/// Highest sample rate accepted on either side (Hz).
pub const MAX_SAMPLE_RATE: u32 = 768_000;

const SINC_LEN: usize = 256;
const OVERSAMPLING: usize = 256;
const CHUNK: usize = 4096;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Resamples mono `samples` from `from` Hz to `to` Hz.
///
/// Identity (a copy) when `from == to`; an empty input gives an empty output.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    let err = |reason: String| RuntimeError::Resample { from, to, reason };
    if from == 0 || to == 0 {
        return Err(err("sample rate must be > 0".into()));
    }
    if from > MAX_SAMPLE_RATE || to > MAX_SAMPLE_RATE {
        return Err(err(format!(
            "sample rates above {MAX_SAMPLE_RATE} Hz are not supported"
        )));
    }
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }

    let (from64, to64) = (u64::from(from), u64::from(to));
    let len = samples.len() as u64;
    let out_len = ((u128::from(len) * u128::from(to64) + u128::from(from64 / 2))
        / u128::from(from64)) as usize;
    if out_len == 0 {
        return Ok(Vec::new());
    }

    // The sinc resampler maps output sample k to input position (k + 1) * from/to - 1 (measured
    // and checked by the tests below). Prepending `pad` zeros, with pad + 1 a multiple of
    // from/g, turns that into an exact integer delay of `delay` output samples.
    let g = gcd(from64, to64);
    let pad = (from64 / g - 1) as usize;
    let delay = (to64 / g - 1) as usize;
    let needed = delay + out_len;

    let ratio = to as f64 / from as f64;
    let window = WindowFunction::BlackmanHarris2;
    let params = SincInterpolationParameters {
        sinc_len: SINC_LEN,
        f_cutoff: calculate_cutoff(SINC_LEN, window),
        oversampling_factor: OVERSAMPLING,
        interpolation: SincInterpolationType::Cubic,
        window,
    };
    let mut rs = SincFixedIn::<f32>::new(ratio, 1.0, params, CHUNK, 1)
        .map_err(|e| err(format!("cannot build resampler: {e}")))?;

    let mut input = vec![vec![0.0f32; CHUNK]];
    let mut output = rs.output_buffer_allocate(true);
    let mut result: Vec<f32> = Vec::with_capacity(needed);
    let total_in = pad + samples.len();
    // Enough chunks to cover the signal, the filter length and the padding, with a margin.
    let max_chunks =
        (total_in + 4 * SINC_LEN + (needed as f64 / ratio) as usize) / CHUNK + 4 + needed / CHUNK;
    let mut pos = 0usize; // position in the padded input stream
    let mut chunks = 0usize;
    while result.len() < needed {
        if chunks > max_chunks {
            return Err(err("resampler produced too few samples".into()));
        }
        chunks += 1;
        // Fill the chunk from the stream zeros(pad) ++ samples ++ zeros(...).
        for (i, slot) in input[0].iter_mut().enumerate() {
            let p = pos + i;
            *slot = if p >= pad && p < total_in {
                samples[p - pad]
            } else {
                0.0
            };
        }
        pos += CHUNK;
        let (_, produced) = rs
            .process_into_buffer(&input, &mut output, None)
            .map_err(|e| err(e.to_string()))?;
        result.extend_from_slice(&output[0][..produced]);
    }
    result.drain(..delay);
    result.truncate(out_len);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin() as f32)
            .collect()
    }

    /// Correlation and rms ratio against the ideal sine, away from the edges.
    fn compare(out: &[f32], ideal: &[f32], skip: usize) -> (f64, f64) {
        let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
        for (a, b) in out[skip..out.len() - skip]
            .iter()
            .zip(&ideal[skip..ideal.len() - skip])
        {
            let (a, b) = (f64::from(*a), f64::from(*b));
            ab += a * b;
            aa += a * a;
            bb += b * b;
        }
        (ab / (aa * bb).sqrt(), (aa / bb).sqrt())
    }

    #[test]
    fn sine_keeps_frequency_amplitude_and_timing() {
        for &(from, to) in &[
            (8000u32, 16000u32),
            (44100, 16000),
            (48000, 16000),
            (22050, 16000),
            (11025, 16000),
            (16000, 8000),
            (32000, 16000),
        ] {
            let n = (from as usize) / 2 + 37; // 0.5 s and a ragged tail
            let x = sine(1000.0, from, n);
            let y = resample(&x, from, to).unwrap();
            let expect_len = ((n as u64 * to as u64 + from as u64 / 2) / from as u64) as usize;
            assert_eq!(y.len(), expect_len, "{from}->{to} length");
            let ideal = sine(1000.0, to, y.len());
            let (corr, gain) = compare(&y, &ideal, (to / 20) as usize);
            assert!(corr > 0.9999, "{from}->{to}: correlation {corr}");
            assert!((gain - 1.0).abs() < 0.01, "{from}->{to}: gain {gain}");
        }
    }

    #[test]
    fn identity_and_errors() {
        let x = sine(440.0, 16000, 1000);
        assert_eq!(resample(&x, 16000, 16000).unwrap(), x);
        assert!(resample(&[], 8000, 16000).unwrap().is_empty());
        assert!(matches!(
            resample(&x, 0, 16000),
            Err(RuntimeError::Resample { .. })
        ));
        assert!(matches!(
            resample(&x, 16000, 10_000_000),
            Err(RuntimeError::Resample { .. })
        ));
    }

    #[test]
    fn tiny_inputs() {
        let y = resample(&[0.5], 8000, 16000).unwrap();
        assert_eq!(y.len(), 2);
        let y = resample(&[0.5, 0.5, 0.5], 48000, 16000).unwrap();
        assert_eq!(y.len(), 1);
    }
}
