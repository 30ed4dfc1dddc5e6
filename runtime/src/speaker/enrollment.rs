//! The enrollment store interface: the JSON file ([`Store`]) and the SQLite database
//! ([`SpeakerDb`]) behind one trait, and the choice between them by the file's extension.

use std::path::Path;

use crate::error::Result;
use crate::speaker::db::SpeakerDb;
use crate::speaker::embed::l2_normalized;
use crate::speaker::store::{Candidate, Store};

/// The model enrollments are made and scored with: embeddings of different models are not
/// comparable, so every store records (and checks) the model's sha256.
#[derive(Debug, Clone, Copy)]
pub struct StoreModel<'a> {
    pub name: &'a str,
    pub sha256: &'a str,
    pub embedding_dim: usize,
}

/// Enrolled speakers: add utterances, score one speaker, rank them all.
pub trait EnrollmentStore {
    /// Adds utterance embeddings to `speaker` (creating it) and makes the change durable;
    /// returns the speaker's utterance count in total. A speaker or store of another model is
    /// refused.
    fn enroll(
        &mut self,
        speaker: &str,
        model: &StoreModel<'_>,
        embeddings: &[Vec<f32>],
    ) -> Result<usize>;

    /// Cosine score of an embedding against an enrolled speaker of this model.
    fn score(&self, speaker: &str, model_sha256: &str, embedding: &[f32]) -> Result<f64>;

    /// The `top` best-scoring speakers of this model, best first.
    fn identify(&self, model_sha256: &str, embedding: &[f32], top: usize)
        -> Result<Vec<Candidate>>;
}

/// Whether `path` names a SQLite enrollment database (`.db`, `.sqlite`, `.sqlite3` in any case:
/// durable, WAL) rather than a JSON file.
pub fn is_database(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["db", "sqlite", "sqlite3"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    })
}

/// Opens the enrollment store at `path`: a SQLite database by its extension
/// ([`is_database`]), else a JSON file. With `create` a missing store is started (for
/// enrolling); without it the store must exist (for scoring). A JSON store made with another
/// model is refused here; a database checks each speaker's model when it is used.
pub fn open_store(
    path: &Path,
    model: &StoreModel<'_>,
    create: bool,
) -> Result<Box<dyn EnrollmentStore>> {
    Ok(match (is_database(path), create) {
        (true, true) => Box::new(SpeakerDb::open(path)?),
        (true, false) => Box::new(SpeakerDb::open_existing(path)?),
        (false, true) => Box::new(Store::open_or_new(
            path,
            model.name,
            model.sha256,
            model.embedding_dim,
        )?),
        (false, false) => {
            let store = Store::open(path)?;
            store.check_model(model.sha256)?;
            Box::new(store)
        }
    })
}

/// The mean of `count` L2-normalised embeddings whose mean is `mean`, once `embeddings` are
/// added (each L2-normalised; the sum is kept in f64). Every embedding has `mean.len()` values.
pub(crate) fn add_to_mean(mean: &[f32], count: f64, embeddings: &[Vec<f32>]) -> Vec<f32> {
    let mut sum: Vec<f64> = mean.iter().map(|v| *v as f64 * count).collect();
    for e in embeddings {
        for (s, v) in sum.iter_mut().zip(l2_normalized(e)) {
            *s += v as f64;
        }
    }
    let n = (count + embeddings.len() as f64).max(1.0);
    sum.iter().map(|s| (s / n) as f32).collect()
}

/// The `top` best candidates, best first (ties by speaker name).
pub(crate) fn best_first(mut c: Vec<Candidate>, top: usize) -> Vec<Candidate> {
    c.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.speaker.cmp(&b.speaker)));
    c.truncate(top);
    c
}

/// The first 12 characters of a sha256 for messages (the whole text when shorter).
pub(crate) fn short_sha(sha: &str) -> String {
    sha.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_enroll_score_and_identify_through_the_trait() {
        let dir = tempfile::tempdir().unwrap();
        let model = StoreModel {
            name: "m",
            sha256: "sha-a",
            embedding_dim: 2,
        };
        for file in ["s.json", "s.db"] {
            let p = dir.path().join(file);
            assert!(
                open_store(&p, &model, false).is_err(),
                "{file}: missing store"
            );
            let mut s = open_store(&p, &model, true).unwrap();
            assert_eq!(s.enroll("a", &model, &[vec![1.0, 0.0]]).unwrap(), 1);
            assert_eq!(s.enroll("a", &model, &[vec![0.0, 1.0]]).unwrap(), 2);
            s.enroll("b", &model, &[vec![0.0, 1.0]]).unwrap();
            drop(s);
            let s = open_store(&p, &model, false).unwrap();
            assert!((s.score("a", "sha-a", &[1.0, 1.0]).unwrap() - 1.0).abs() < 1e-6);
            assert!(s.score("nobody", "sha-a", &[1.0, 0.0]).is_err());
            let top = s.identify("sha-a", &[0.0, 1.0], 5).unwrap();
            assert_eq!(top[0].speaker, "b", "{file}");
            assert!(s.score("a", "sha-b", &[1.0, 0.0]).is_err(), "{file}");
        }
        let other = StoreModel {
            sha256: "sha-b",
            ..model
        };
        let e = open_store(&dir.path().join("s.json"), &other, false).err();
        assert!(e.is_some_and(|e| e.to_string().contains("re-enroll")));
    }

    #[test]
    fn database_by_extension() {
        assert!(is_database(Path::new("x/speakers.db")));
        assert!(is_database(Path::new("a.sqlite3")));
        assert!(!is_database(Path::new("a.json")));
        assert!(!is_database(Path::new("db")));
        assert!(is_database(Path::new("S.DB")));
        assert!(is_database(Path::new("x/Speakers.Sqlite3")));
        assert!(!is_database(Path::new("S.JSON")));
    }
}
