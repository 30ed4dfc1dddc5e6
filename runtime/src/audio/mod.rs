//! Audio front ends: decoding (WAV, FLAC, MP3, Ogg Vorbis), sample-rate conversion and the Kaldi-compatible fbank.

pub mod decode;
pub mod fbank;
pub mod logmel;
pub mod resample;
pub mod wav;

pub use decode::{decode_upload, read_audio};
pub use fbank::{Fbank, FbankConfig, Features, MeanNorm, WindowType};
pub use resample::resample;
pub use wav::{read_wav, read_wav_bytes, Audio};
