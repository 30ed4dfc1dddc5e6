//! Dynamic batching of embedding requests: one thread owns the speaker model's session, takes
//! the waiting utterances (waiting at most the batch delay for more) and runs those of equal
//! frame count together, up to the maximum batch.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::Histogram;
use tokio::sync::oneshot;

use crate::audio::fbank::Features;
use crate::speaker::embed::Embedder;

struct Job {
    feats: Features,
    reply: oneshot::Sender<Result<Vec<f32>, String>>,
}

/// Hands utterances to the batching thread.
pub struct Batcher {
    tx: mpsc::Sender<Job>,
}

/// How batches are formed.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    pub max_batch: usize,
    pub max_delay: Duration,
}

impl Batcher {
    /// Starts the batching thread; it ends when the `Batcher` is dropped. Fails when the
    /// system cannot start a thread.
    pub fn start(
        emb: Arc<Embedder>,
        policy: BatchPolicy,
        sizes: Histogram,
    ) -> std::io::Result<Batcher> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("voxq-batcher".into())
            .spawn(move || run(&rx, &emb, policy, &sizes))?;
        Ok(Batcher { tx })
    }

    /// The embedding of one utterance's features.
    pub async fn embed(&self, feats: Features) -> Result<Vec<f32>, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { feats, reply })
            .map_err(|_| "the batching thread has stopped".to_string())?;
        rx.await
            .map_err(|_| "the batching thread dropped the request".to_string())?
    }
}

/// Crops features to a multiple of `bucket` frames (keeping at least one bucket), so that
/// utterances of similar length share a batch.
pub fn crop_to_bucket(f: &mut Features, bucket: usize) {
    if bucket == 0 || f.frames <= bucket {
        return;
    }
    let keep = f.frames - f.frames % bucket;
    if keep < f.frames {
        f.data.truncate(keep * f.dim);
        f.frames = keep;
    }
}

fn largest_group(jobs: &[Job]) -> usize {
    let mut counts: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for j in jobs {
        *counts.entry((j.feats.frames, j.feats.dim)).or_default() += 1;
    }
    counts.values().copied().max().unwrap_or(0)
}

fn run(rx: &mpsc::Receiver<Job>, emb: &Embedder, p: BatchPolicy, sizes: &Histogram) {
    let max_batch = p.max_batch.max(1);
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        if max_batch > 1 {
            let deadline = Instant::now() + p.max_delay;
            // Everything already waiting joins at once; then wait for more until a full batch
            // of one length is there or the delay is over.
            while let Ok(j) = rx.try_recv() {
                jobs.push(j);
            }
            while largest_group(&jobs) < max_batch && jobs.len() < 4 * max_batch {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                match rx.recv_timeout(deadline - now) {
                    Ok(j) => jobs.push(j),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        // Groups run in the order of their oldest utterance, so no request waits behind
        // later ones of another length.
        let mut groups: Vec<((usize, usize), Vec<Job>)> = Vec::new();
        for j in jobs {
            let key = (j.feats.frames, j.feats.dim);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, g)) => g.push(j),
                None => groups.push((key, vec![j])),
            }
        }
        for (_, mut group) in groups {
            while !group.is_empty() {
                let rest = group.split_off(group.len().min(max_batch));
                let batch = std::mem::replace(&mut group, rest);
                let refs: Vec<&Features> = batch.iter().map(|j| &j.feats).collect();
                sizes.observe(refs.len() as f64);
                match emb.embed_batch(&refs) {
                    Ok(out) => {
                        for (j, e) in batch.into_iter().zip(out) {
                            let _ = j.reply.send(Ok(e));
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        for j in batch {
                            let _ = j.reply.send(Err(msg.clone()));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_keeps_whole_buckets() {
        let mut f = Features {
            frames: 47,
            dim: 2,
            data: (0..94).map(|v| v as f32).collect(),
        };
        crop_to_bucket(&mut f, 20);
        assert_eq!((f.frames, f.data.len()), (40, 80));
        assert_eq!(f.data[79], 79.0);
        let mut short = Features {
            frames: 15,
            dim: 2,
            data: vec![0.0; 30],
        };
        crop_to_bucket(&mut short, 20);
        assert_eq!(short.frames, 15);
        crop_to_bucket(&mut short, 0);
        assert_eq!(short.frames, 15);
    }
}
