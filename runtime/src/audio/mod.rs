//! Audio front ends: WAV decoding, sample-rate conversion and the Kaldi-compatible fbank.

pub mod decode;
pub mod fbank;
pub mod logmel;
pub mod resample;
pub mod wav;

pub use fbank::{Fbank, FbankConfig, Features, MeanNorm, WindowType};
pub use resample::resample;
pub use wav::{read_wav, read_wav_bytes, Audio};
