//! Enrollment store: speakers' mean embeddings in a JSON file, tied to the model that made them.
//!
//! An enrolled speaker is the mean of the L2-normalised embeddings of its utterances. The
//! store records the sha256 of the model; scoring with another model is refused, because
//! embeddings of different models are not comparable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::fsutil::write_atomic;
use crate::speaker::embed::cosine;
use crate::speaker::enrollment::{add_to_mean, best_first, short_sha, EnrollmentStore, StoreModel};

const FORMAT: &str = "voxq-enrollments/1";

/// One enrolled speaker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Speaker {
    /// Mean of the L2-normalised utterance embeddings (not itself normalised).
    pub mean: Vec<f32>,
    pub utterances: usize,
}

/// The enrollment file's contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Store {
    pub format: String,
    pub model_name: String,
    pub model_sha256: String,
    pub embedding_dim: usize,
    pub speakers: BTreeMap<String, Speaker>,
    #[serde(skip)]
    path: PathBuf,
}

/// A scored candidate of `identify`.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub speaker: String,
    pub score: f64,
}

impl Store {
    /// Opens `path`, or starts an empty store for the given model when the file does not exist.
    pub fn open_or_new(
        path: &Path,
        model_name: &str,
        model_sha256: &str,
        dim: usize,
    ) -> Result<Store> {
        if path.exists() {
            let s = Store::open(path)?;
            s.check_model(model_sha256)?;
            return Ok(s);
        }
        Ok(Store {
            format: FORMAT.into(),
            model_name: model_name.into(),
            model_sha256: model_sha256.into(),
            embedding_dim: dim,
            speakers: BTreeMap::new(),
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing store.
    pub fn open(path: &Path) -> Result<Store> {
        let text = crate::fsutil::read_text(path, "an enrollment store")?;
        let bad = |reason: String| RuntimeError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let mut s: Store = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not an enrollment store: {e}")))?;
        if s.format != FORMAT {
            return Err(bad(format!(
                "enrollment store format '{}', expected '{FORMAT}'",
                s.format
            )));
        }
        for (name, sp) in &s.speakers {
            if sp.mean.len() != s.embedding_dim || sp.mean.iter().any(|v| !v.is_finite()) {
                return Err(bad(format!(
                    "speaker '{name}' has a malformed embedding ({} values, expected {})",
                    sp.mean.len(),
                    s.embedding_dim
                )));
            }
        }
        s.path = path.to_path_buf();
        Ok(s)
    }

    /// Refuses a model other than the one the enrollments were made with.
    pub fn check_model(&self, model_sha256: &str) -> Result<()> {
        if self.model_sha256 != model_sha256 {
            return Err(RuntimeError::Config {
                path: self.path.clone(),
                reason: format!(
                    "speakers were enrolled with model '{}' (sha256 {}…), not with this model (sha256 {}…); re-enroll them",
                    self.model_name,
                    short_sha(&self.model_sha256),
                    short_sha(model_sha256)
                ),
            });
        }
        Ok(())
    }

    /// Adds utterance embeddings to a speaker (creating it), updating the running mean.
    pub fn enroll(&mut self, speaker: &str, embeddings: &[Vec<f32>]) -> Result<&Speaker> {
        if speaker.is_empty() || speaker.chars().any(|c| c.is_control()) {
            return Err(RuntimeError::Config {
                path: self.path.clone(),
                reason: format!("invalid speaker name {speaker:?}"),
            });
        }
        let dim = self.embedding_dim;
        if let Some(e) = embeddings.iter().find(|e| e.len() != dim) {
            return Err(RuntimeError::Scoring(format!(
                "embedding has {} values, the store holds {dim}-dim embeddings",
                e.len()
            )));
        }
        let entry = self
            .speakers
            .entry(speaker.to_string())
            .or_insert_with(|| Speaker {
                mean: vec![0.0; dim],
                utterances: 0,
            });
        entry.mean = add_to_mean(&entry.mean, entry.utterances as f64, embeddings);
        entry.utterances += embeddings.len();
        Ok(entry)
    }

    /// Cosine score of an embedding against an enrolled speaker.
    pub fn score(&self, speaker: &str, embedding: &[f32]) -> Result<f64> {
        let sp = self
            .speakers
            .get(speaker)
            .ok_or_else(|| RuntimeError::UnknownSpeaker {
                path: self.path.clone(),
                speaker: speaker.to_string(),
            })?;
        Ok(cosine(&sp.mean, embedding))
    }

    /// The `top` best-scoring enrolled speakers, best first.
    pub fn identify(&self, embedding: &[f32], top: usize) -> Vec<Candidate> {
        let c = self
            .speakers
            .iter()
            .map(|(name, sp)| Candidate {
                speaker: name.clone(),
                score: cosine(&sp.mean, embedding),
            })
            .collect();
        best_first(c, top)
    }

    /// Writes the store atomically to the path it was opened from.
    pub fn save(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| RuntimeError::Config {
            path: self.path.clone(),
            reason: format!("cannot serialise store: {e}"),
        })?;
        write_atomic(&self.path, &json)
    }
}

/// The JSON store holds one model's speakers: the model is checked when it is opened
/// ([`Store::open_or_new`], [`crate::speaker::open_store`]) and again on every use.
impl EnrollmentStore for Store {
    fn enroll(
        &mut self,
        speaker: &str,
        model: &StoreModel<'_>,
        embeddings: &[Vec<f32>],
    ) -> Result<usize> {
        self.check_model(model.sha256)?;
        let n = Store::enroll(self, speaker, embeddings)?.utterances;
        self.save()?;
        Ok(n)
    }

    fn score(&self, speaker: &str, model_sha256: &str, embedding: &[f32]) -> Result<f64> {
        self.check_model(model_sha256)?;
        Store::score(self, speaker, embedding)
    }

    fn identify(
        &self,
        model_sha256: &str,
        embedding: &[f32],
        top: usize,
    ) -> Result<Vec<Candidate>> {
        self.check_model(model_sha256)?;
        Ok(Store::identify(self, embedding, top))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enroll_keeps_a_running_mean_of_normalised_embeddings() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        let mut s = Store::open_or_new(&p, "m", "abc", 2).unwrap();
        s.enroll("a", &[vec![2.0, 0.0]]).unwrap();
        s.enroll("a", &[vec![0.0, 5.0]]).unwrap();
        assert_eq!(s.speakers["a"].mean, vec![0.5, 0.5]);
        assert_eq!(s.speakers["a"].utterances, 2);
        s.enroll("b", &[vec![-1.0, 0.0]]).unwrap();
        s.save().unwrap();
        let r = Store::open(&p).unwrap();
        assert_eq!(r.speakers, s.speakers);
        let top = r.identify(&[1.0, 1.0], 5);
        assert_eq!(top[0].speaker, "a");
        assert!((top[0].score - 1.0).abs() < 1e-9);
        assert_eq!(top.len(), 2);
        assert!(r.score("nobody", &[1.0, 0.0]).is_err());
    }

    #[test]
    fn another_model_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        let mut s = Store::open_or_new(&p, "m", "abc", 2).unwrap();
        s.enroll("a", &[vec![1.0, 0.0]]).unwrap();
        s.save().unwrap();
        let e = Store::open_or_new(&p, "m2", "def", 2).unwrap_err();
        assert!(e.to_string().contains("re-enroll"), "{e}");
    }
}
