//! The copy-free decode loop (issue 21): the Whisper and LLM decoder steps keep the encoder
//! output, the cross-attention KV and each step's present KV as ONNX Runtime values and feed
//! them back by reference. Two checks that fail if a step feeds the wrong past KV:
//! - long greedy outputs (≥ 30 tokens) and beam results equal the ids the decoder that copied
//!   everything through `Vec<f32>` gave (recorded from it, commit 5f5c43f, and committed
//!   here);
//! - every greedy token equals the one a cache-free recomputation picks (the whole prefix fed
//!   in one step from an empty cache).
//!
//! On the CI fixtures (fixtures/whisper-tiny-test, fixtures/audio-llm-tiny-test) and, ignored
//! without the set-up (`make test-real-models`), on the real Whisper tiny.en and SmolLM2.

use crate::common;

use std::path::Path;

use common::root;
use runtime::audio_llm::AudioLlm;
use runtime::generation::{GenerateOptions, Strategy};
use runtime::llm::Llm;
use runtime::whisper::Whisper;

pub(crate) const WHISPER_FIXTURE: &str = "fixtures/whisper-tiny-test";
pub(crate) const LLM_FIXTURE: &str = "fixtures/audio-llm-tiny-test";
pub(crate) const CLIPS: [&str; 2] = [
    ".cache/speech/allison/en/all-circuits-busy-now.wav",
    ".cache/speech/allison/en/vm-repeat.wav",
];

// Ids the copying decoder gave (commit 5f5c43f), greedy 40 tokens and 3-beam 12 tokens.
pub(crate) const WHISPER_GREEDY: [&[u32]; 2] = [
    &[
        39385, 7917, 7917, 7917, 33238, 33238, 21347, 21347, 21347, 19080, 19080, 19080, 19080,
        19080, 19080, 19080, 19080, 19080, 19080, 27144, 27144, 34491, 34491, 34491, 34491, 34491,
        34491, 34491, 34491, 34491, 34491, 34491, 34491, 27144, 27144, 27144, 27144, 34491, 34491,
        34491,
    ],
    &[
        39385, 7519, 7519, 7519, 7519, 7519, 7519, 7519, 7519, 7519, 28452, 28452, 28452, 28452,
        28452, 28452, 28452, 28452, 28452, 42128, 42128, 42128, 42128, 42128, 42128, 42128, 42128,
        42128, 42128, 42128, 42128, 42128, 42128, 42128, 42128, 42128, 42128, 42128, 42128, 42128,
    ],
];
const WHISPER_BEAM: [&[u32]; 2] = [
    &[
        9479, 45558, 45558, 45558, 45558, 45558, 45558, 45558, 37921, 37921, 37921, 37921,
    ],
    &[
        9479, 17683, 7917, 7917, 7917, 7917, 50424, 21693, 21693, 21693, 21693, 21693,
    ],
];
pub(crate) const LLM_GREEDY_TEXT: &[u32] = &[
    11545, 24750, 32243, 24750, 41744, 45028, 46565, 9858, 14186, 5565, 10536, 21645, 10471, 18544,
    26191, 2743, 440, 46741, 27340, 8323, 13010, 2425, 14248, 2497, 13516, 34090, 6932, 5565,
    30149, 6, 45028, 6982, 23798, 4992, 21039, 11954, 1709, 7640, 22129, 8130,
];
const LLM_BEAM_TEXT: &[u32] = &[
    11545, 38733, 18748, 1809, 36777, 14113, 2425, 24577, 19405, 5565, 3847, 14186,
];
pub(crate) const LLM_GREEDY_AUDIO: &[u32] = &[
    27410, 43341, 14186, 22673, 22673, 22673, 6428, 14186, 42459, 6541, 14186, 22673, 22673, 9706,
    45028, 14186, 14186, 22673, 22673, 36145, 45028, 4728, 13974, 3111, 16085, 6428, 14186, 10536,
    7556, 26305, 14186, 3847, 4728, 440, 36738, 36738, 36738, 28723, 32702, 27410,
];
/// Whisper tiny.en on the three LibriVox clips (66 tokens), and SmolLM2 (40 tokens).
pub(crate) const TINY_EN_LIBRIVOX: &[u32] = &[
    843, 1770, 13, 1757, 16189, 3822, 550, 788, 24638, 284, 2074, 703, 881, 612, 1244, 307, 25220,
    1473, 287, 465, 1176, 284, 466, 329, 606, 13, 17486, 284, 307, 2138, 4692, 12, 20122, 290,
    2138, 20363, 11, 318, 284, 307, 2801, 12, 6381, 29813, 13, 11161, 339, 6405, 257, 517, 716,
    3379, 2415, 11, 339, 1244, 423, 587, 925, 991, 517, 27721, 621, 339, 373, 13,
];
pub(crate) const SMOLLM2_SEA: &[u32] = &[
    504, 3426, 314, 253, 4749, 284, 11965, 7815, 28, 2073, 282, 13278, 284, 16251, 579, 30, 533,
    3201, 1711, 28, 260, 3426, 436, 253, 1666, 282, 6877, 284, 9675, 28, 837, 260, 9734, 10832, 30,
    378, 3426, 436, 1137, 288,
];

pub(crate) fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: n,
        ..Default::default()
    }
}

pub(crate) fn beam(n: usize) -> GenerateOptions {
    GenerateOptions {
        strategy: Strategy::Beam {
            beams: 3,
            length_penalty: 1.0,
        },
        max_new_tokens: n,
        ..Default::default()
    }
}

pub(crate) fn read(wav: &Path) -> Vec<f32> {
    runtime::audio::wav::read_wav(wav).unwrap().samples
}

/// Whisper greedy ids over `samples`, then for each position the token a cache-free run over
/// the prompt plus all earlier ids picks (its first step sees the whole prefix at once).
pub(crate) fn whisper_vs_recompute(w: &Whisper, wav: &Path, samples: &[f32], n: usize) -> Vec<u32> {
    let prompt = w.config.prompt_notimestamps.clone();
    let ids = w
        .transcribe_window(wav, samples, &greedy(n), &mut |_| true)
        .unwrap();
    for k in 0..ids.len() {
        if w.config.begin_suppress_tokens.contains(&ids[k]) {
            continue; // suppressed at a first step: a one-step run cannot pick it
        }
        let mut p = prompt.clone();
        p.extend_from_slice(&ids[..k]);
        let one = w
            .transcribe_window_prompt(wav, samples, &p, &greedy(1), &mut |_| true)
            .unwrap();
        assert_eq!(
            one,
            [ids[k]],
            "token {k} of {}: cache vs recompute",
            wav.display()
        );
    }
    ids
}

/// LLM greedy ids after `prompt`, each checked against a cache-free run over the prefix.
pub(crate) fn llm_vs_recompute(llm: &Llm, prompt: &[u32], n: usize) -> Vec<u32> {
    let ids = llm
        .generate(Vec::new(), prompt, &greedy(n), &mut |_| true)
        .unwrap();
    for k in 0..ids.len() {
        let mut p = prompt.to_vec();
        p.extend_from_slice(&ids[..k]);
        let one = llm
            .generate(Vec::new(), &p, &greedy(1), &mut |_| true)
            .unwrap();
        assert_eq!(one, [ids[k]], "token {k}: cache vs recompute");
    }
    ids
}

#[test]
fn whisper_fixture_long_outputs_unchanged_and_equal_recomputation() {
    let w = Whisper::open(&root().join(WHISPER_FIXTURE), &Default::default()).unwrap();
    for (i, clip) in CLIPS.iter().enumerate() {
        let wav = root().join(clip);
        let a = read(&wav);
        let ids = whisper_vs_recompute(&w, &wav, &a, 40);
        assert!(ids.len() >= 30, "{ids:?}");
        assert_eq!(ids, WHISPER_GREEDY[i], "greedy, {clip}");
        let b = w
            .transcribe_window(&wav, &a, &beam(12), &mut |_| true)
            .unwrap();
        assert_eq!(b, WHISPER_BEAM[i], "beam, {clip}");
    }
}

#[test]
fn llm_fixture_long_outputs_unchanged_and_equal_recomputation() {
    let m = AudioLlm::open(&root().join(LLM_FIXTURE), &Default::default()).unwrap();
    let prompt = m
        .llm
        .encode(&m.llm.chat_prompt("Tell me a long story about the sea."))
        .unwrap();
    let ids = llm_vs_recompute(&m.llm, &prompt, 40);
    assert!(ids.len() >= 30, "{ids:?}");
    assert_eq!(ids, LLM_GREEDY_TEXT, "greedy text");
    let b = m
        .llm
        .generate(Vec::new(), &prompt, &beam(12), &mut |_| true)
        .unwrap();
    assert_eq!(b, LLM_BEAM_TEXT, "beam text");
    // the audio prompt: prefix embeddings (text + audio rows) fed before the tokens
    assert_eq!(audio_greedy(&m), LLM_GREEDY_AUDIO, "greedy audio");
}

/// The audio LLM's greedy ids (40 at most) for the `asr` task on the first clip.
pub(crate) fn audio_greedy(m: &AudioLlm) -> Vec<u32> {
    let wav = root().join(CLIPS[0]);
    let a = runtime::audio::wav::read_wav(&wav).unwrap();
    let user = m.user_turn("asr", None, None).unwrap();
    m.generate(
        &wav,
        &a.samples,
        a.sample_rate,
        &user,
        &greedy(40),
        &mut |_| true,
    )
    .unwrap()
}

/// Three LibriVox clips back to back (about 18 s): a long real transcription.
pub(crate) fn librivox() -> (std::path::PathBuf, Vec<f32>) {
    let dir = root().join(".cache/whisper/transcripts/audio");
    let mut all = Vec::new();
    for n in ["0870", "0890", "0920"] {
        let wav = dir.join(format!(
            "librivox-sense_and_sensibility_01_austen_64kb-{n}.wav"
        ));
        assert!(
            wav.is_file(),
            "{} missing (make whisper sets up the Whisper data)",
            wav.display()
        );
        all.extend(read(&wav));
    }
    (dir, all)
}

#[test]
#[ignore = "needs Whisper tiny.en from the set-up (make test-real-models)"]
fn whisper_tiny_en_long_output_unchanged_and_equal_recomputation() {
    let dir = root().join(".cache/whisper/tiny.en/onnx");
    let w = Whisper::open(&dir, &Default::default())
        .unwrap_or_else(|e| panic!("{e} (make whisper exports Whisper tiny.en)"));
    let (name, audio) = librivox();
    let ids = whisper_vs_recompute(&w, &name, &audio, 224);
    assert!(ids.len() >= 30, "{ids:?}");
    assert_eq!(ids, TINY_EN_LIBRIVOX, "{}", w.decode(&ids).unwrap());
}

#[test]
#[ignore = "needs SmolLM2 exported by tools/llm_export.py (make test-real-models)"]
fn smollm2_long_output_unchanged_and_equal_recomputation() {
    let dir = root().join(".cache/llm/smollm2/onnx");
    let llm = Llm::open(&dir, &Default::default())
        .unwrap_or_else(|e| panic!("{e} (make test-real-models exports SmolLM2)"));
    let prompt = llm
        .encode(&llm.chat_prompt("Tell me a long story about the sea."))
        .unwrap();
    let ids = llm_vs_recompute(&llm, &prompt, 40);
    assert!(ids.len() >= 30, "{ids:?}");
    assert_eq!(ids, SMOLLM2_SEA, "{}", llm.decode(&ids).unwrap());
}
