//! Text generation speed of decoder-only LLM folders by context length: the prompt step
//! (`context` tokens at once) and the later steps (tokens/s, ms per step at the start and the
//! end), greedy, exactly `max_new` new tokens (stop tokens ignored), models interleaved.

use serde::Serialize;

use super::{interleaved_medians, Timed};
use crate::error::Result;
use crate::generation::{generate, GenerateOptions};
use crate::llm::Llm;

/// Text the prompt is cut from (repeated as needed).
const TEXT: &str = "The harbour was quiet before dawn. Fishing boats rocked against the pier, \
their ropes creaking as the tide turned, and the lighthouse swept its pale beam across the \
water one last time. An old sailor sat on a crate, mending a net and humming a song his \
grandmother had taught him, while gulls circled above the market stalls that were only \
beginning to open. ";

/// Steps averaged at the start and at the end of an output.
const EDGE: usize = 10;

/// One (model, context length) measurement; times are medians over the runs.
#[derive(Debug, Clone, Serialize)]
pub struct LmBenchRow {
    pub model: String,
    /// The backend that runs it (`onnxruntime`, `openvino`).
    pub backend: String,
    /// Prompt tokens fed in the first step.
    pub context: usize,
    pub runs: usize,
    pub new_tokens: usize,
    /// The prompt step.
    pub prefill_ms: f64,
    /// Later steps (one token each) per second.
    pub tokens_per_s: f64,
    /// Mean time of the first and of the last (up to 10) later steps.
    pub step_ms_start: f64,
    pub step_ms_end: f64,
}

/// `n` token ids of [`TEXT`], repeated.
fn prompt(llm: &Llm, n: usize) -> Result<Vec<u32>> {
    let ids = llm.encode(TEXT)?;
    Ok(ids.iter().copied().cycle().take(n).collect())
}

/// Times greedy generation of `max_new` tokens after a prompt of each context length:
/// `runs` runs after one warm-up, models interleaved run by run.
pub fn bench_lm(
    models: &[(String, Llm)],
    contexts: &[usize],
    max_new: usize,
    runs: usize,
) -> Result<Vec<LmBenchRow>> {
    let mut rows = Vec::new();
    let o = GenerateOptions {
        max_new_tokens: max_new,
        ..Default::default()
    };
    for &ctx in contexts {
        // the prompt of each model once, outside the timed runs
        let prompted = models
            .iter()
            .map(|(label, llm)| Ok((label, llm, prompt(llm, ctx)?)))
            .collect::<Result<Vec<_>>>()?;
        let medians = interleaved_medians(&prompted, runs, |(_, llm, p)| {
            let dec = Timed::new(*llm);
            let ids = generate(&dec, llm.cache(Vec::new()), p, &o, &|_, _| {}, &mut |_| {
                true
            })?;
            let ms = dec.into_ms();
            let later = ms.get(1..).unwrap_or(&[]);
            let k = later.len().min(EDGE);
            Ok([
                ids.len() as f64,
                ms.first().copied().unwrap_or(0.0),
                later.len() as f64 / (later.iter().sum::<f64>() / 1e3).max(1e-9),
                super::mean(&later[..k]),
                super::mean(&later[later.len() - k..]),
            ])
        })?;
        for ((label, llm, _), med) in prompted.iter().zip(medians) {
            let med = |k: usize| med[k];
            rows.push(LmBenchRow {
                model: (*label).clone(),
                backend: llm.backend().into(),
                context: ctx,
                runs,
                new_tokens: med(0) as usize,
                prefill_ms: med(1),
                tokens_per_s: med(2),
                step_ms_start: med(3),
                step_ms_end: med(4),
            });
        }
    }
    Ok(rows)
}

/// The LLM benchmark as a Markdown table.
pub fn lm_markdown(rows: &[LmBenchRow]) -> String {
    let mut s = String::from(
        "| model | backend | context | runs | new tokens | prompt step (ms) | tokens/s | ms/step, first 10 | ms/step, last 10 |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {:.0} | {:.1} | {:.2} | {:.2} |\n",
            r.model,
            r.backend,
            r.context,
            r.runs,
            r.new_tokens,
            r.prefill_ms,
            r.tokens_per_s,
            r.step_ms_start,
            r.step_ms_end
        ));
    }
    s
}
