//! Durable enrollment store in SQLite (WAL mode, every enrollment one transaction, synchronous
//! FULL so an acknowledged enrollment survives a crash): speakers with the mean of their
//! L2-normalised utterance embeddings and the hash of the model that made them; scoring with
//! another model is refused.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use crate::error::{Result, RuntimeError};
use crate::speaker::embed::cosine;
use crate::speaker::enrollment::{add_to_mean, best_first, short_sha, EnrollmentStore, StoreModel};
use crate::speaker::store::Candidate;

/// One enrolled speaker as stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SpeakerRecord {
    pub id: i64,
    pub name: String,
    pub model_name: String,
    pub model_sha256: String,
    pub utterances: i64,
    #[serde(skip)]
    pub mean: Vec<f32>,
    pub created_unix: i64,
    pub updated_unix: i64,
}

/// The SQLite enrollment database.
pub struct SpeakerDb {
    conn: Mutex<Connection>,
    path: PathBuf,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn unblob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

const COLUMNS: &str =
    "id, name, model_name, model_sha256, utterances, mean, created_unix, updated_unix";

fn record(r: &rusqlite::Row) -> rusqlite::Result<SpeakerRecord> {
    Ok(SpeakerRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        model_name: r.get(2)?,
        model_sha256: r.get(3)?,
        utterances: r.get(4)?,
        mean: unblob(&r.get::<_, Vec<u8>>(5)?),
        created_unix: r.get(6)?,
        updated_unix: r.get(7)?,
    })
}

impl SpeakerDb {
    /// Opens (creating) the database at `path`: WAL journal, synchronous FULL, schema.
    ///
    /// The store is written in place, not through a temp file and a rename as voxq's other
    /// outputs are: SQLite's WAL journal with synchronous=FULL transactions is its atomicity
    /// (an interrupted enrollment is rolled back on the next open, a committed one is on disk).
    pub fn open(path: &Path) -> Result<SpeakerDb> {
        Self::open_with(path, true)
    }

    /// Opens an existing enrollment database without creating anything: a missing or empty
    /// file, or a SQLite database without the `speakers` table, is refused (for commands that
    /// only read or check the store).
    pub fn open_existing(path: &Path) -> Result<SpeakerDb> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, create: bool) -> Result<SpeakerDb> {
        let e = |e: rusqlite::Error| RuntimeError::Config {
            path: path.to_path_buf(),
            reason: format!("enrollment database: {e}"),
        };
        let refuse = |reason: &str| RuntimeError::Config {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let conn = if create {
            Connection::open(path).map_err(e)?
        } else {
            match std::fs::metadata(path) {
                Ok(m) if m.is_file() && m.len() > 0 => {}
                Ok(m) if m.is_file() => {
                    return Err(refuse("empty file, not an enrollment database"))
                }
                Ok(m) if m.is_dir() => {
                    return Err(refuse("is a folder, not an enrollment database"))
                }
                Ok(_) => return Err(refuse("is not a regular file, not an enrollment database")),
                Err(_) => return Err(refuse("no such enrollment database")),
            }
            let c = Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(e)?;
            let tables: i64 = c
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'speakers'",
                    [],
                    |r| r.get(0),
                )
                .map_err(e)?;
            if tables == 0 {
                return Err(refuse(
                    "a SQLite database without voxq's speakers table, not an enrollment database",
                ));
            }
            c
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(e)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(e)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(RuntimeError::Config {
                path: path.to_path_buf(),
                reason: format!("cannot switch the database to WAL mode (journal_mode={mode})"),
            });
        }
        conn.execute_batch(
            "PRAGMA synchronous=FULL;
             PRAGMA foreign_keys=ON;
             CREATE TABLE IF NOT EXISTS speakers (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 name TEXT NOT NULL UNIQUE,
                 model_name TEXT NOT NULL,
                 model_sha256 TEXT NOT NULL,
                 utterances INTEGER NOT NULL,
                 mean BLOB NOT NULL,
                 created_unix INTEGER NOT NULL,
                 updated_unix INTEGER NOT NULL
             );",
        )
        .map_err(e)?;
        Ok(SpeakerDb {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// The connection. A panic while the lock was held cannot have left it half-written (an
    /// open transaction rolls back when dropped, a lone statement is atomic), so a poisoned
    /// lock is taken over rather than failing every later call for the process's life.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn err(&self, e: rusqlite::Error) -> RuntimeError {
        RuntimeError::Config {
            path: self.path.clone(),
            reason: format!("enrollment database: {e}"),
        }
    }

    fn model_mismatch(&self, r: &SpeakerRecord, sha: &str) -> RuntimeError {
        RuntimeError::Config {
            path: self.path.clone(),
            reason: format!(
                "speaker '{}' was enrolled with model '{}' (sha256 {}…), not with this model (sha256 {}…); re-enroll it",
                r.name,
                r.model_name,
                short_sha(&r.model_sha256),
                short_sha(sha)
            ),
        }
    }

    /// Adds utterance embeddings to `name` (creating it) in one transaction and returns the
    /// stored record; a speaker enrolled with another model is refused.
    pub fn enroll(
        &self,
        name: &str,
        model_name: &str,
        model_sha256: &str,
        embeddings: &[Vec<f32>],
    ) -> Result<SpeakerRecord> {
        if name.is_empty() || name.chars().any(|c| c.is_control()) || name.len() > 200 {
            return Err(RuntimeError::Config {
                path: self.path.clone(),
                reason: format!("invalid speaker name {name:?}"),
            });
        }
        let Some(dim) = embeddings.first().map(Vec::len) else {
            return Err(RuntimeError::Scoring("no embeddings to enroll".into()));
        };
        if embeddings
            .iter()
            .any(|e| e.len() != dim || e.iter().any(|v| !v.is_finite()))
        {
            return Err(RuntimeError::Scoring(
                "embeddings differ in length or hold non-finite values".into(),
            ));
        }
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let old = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM speakers WHERE name = ?1"),
                params![name],
                record,
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let (mean0, n0) = match &old {
            Some(r) if r.model_sha256 != model_sha256 => {
                return Err(self.model_mismatch(r, model_sha256))
            }
            Some(r) if r.mean.len() != dim => {
                return Err(RuntimeError::Scoring(format!(
                    "speaker '{name}' holds {}-dim embeddings, these have {dim}",
                    r.mean.len()
                )))
            }
            Some(r) => (r.mean.clone(), r.utterances),
            None => (vec![0.0; dim], 0),
        };
        let mean = add_to_mean(&mean0, n0 as f64, embeddings);
        let n = n0 + embeddings.len() as i64;
        let t = now();
        match &old {
            Some(r) => tx.execute(
                "UPDATE speakers SET utterances = ?1, mean = ?2, updated_unix = ?3 WHERE id = ?4",
                params![n, blob(&mean), t, r.id],
            ),
            None => tx.execute(
                "INSERT INTO speakers (name, model_name, model_sha256, utterances, mean, created_unix, updated_unix)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![name, model_name, model_sha256, n, blob(&mean), t],
            ),
        }
        .map_err(|e| self.err(e))?;
        let rec = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM speakers WHERE name = ?1"),
                params![name],
                record,
            )
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(rec)
    }

    /// Every speaker, by id.
    pub fn list(&self) -> Result<Vec<SpeakerRecord>> {
        let conn = self.conn();
        let mut st = conn
            .prepare(&format!("SELECT {COLUMNS} FROM speakers ORDER BY id"))
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], record)
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// The speaker with this name, if enrolled.
    pub fn get(&self, name: &str) -> Result<Option<SpeakerRecord>> {
        let conn = self.conn();
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM speakers WHERE name = ?1"),
            params![name],
            record,
        )
        .optional()
        .map_err(|e| self.err(e))
    }

    /// The speaker with this id, if enrolled.
    pub fn get_id(&self, id: i64) -> Result<Option<SpeakerRecord>> {
        let conn = self.conn();
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM speakers WHERE id = ?1"),
            params![id],
            record,
        )
        .optional()
        .map_err(|e| self.err(e))
    }

    /// Removes a speaker; false when there was none with this id.
    pub fn delete(&self, id: i64) -> Result<bool> {
        let conn = self.conn();
        let n = conn
            .execute("DELETE FROM speakers WHERE id = ?1", params![id])
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// Cosine score of an embedding against `name`, refusing a speaker of another model.
    pub fn score(&self, name: &str, model_sha256: &str, embedding: &[f32]) -> Result<f64> {
        let r = self
            .get(name)?
            .ok_or_else(|| RuntimeError::UnknownSpeaker {
                path: self.path.clone(),
                speaker: name.to_string(),
            })?;
        if r.model_sha256 != model_sha256 {
            return Err(self.model_mismatch(&r, model_sha256));
        }
        if r.mean.len() != embedding.len() {
            return Err(RuntimeError::Scoring(format!(
                "embedding has {} values, speaker '{name}' holds {}",
                embedding.len(),
                r.mean.len()
            )));
        }
        Ok(cosine(&r.mean, embedding))
    }

    /// The `top` best speakers of this model, best first (speakers of other models are not
    /// comparable and are left out).
    pub fn identify(
        &self,
        model_sha256: &str,
        embedding: &[f32],
        top: usize,
    ) -> Result<Vec<Candidate>> {
        let c = self
            .list()?
            .into_iter()
            .filter(|r| r.model_sha256 == model_sha256 && r.mean.len() == embedding.len())
            .map(|r| Candidate {
                score: cosine(&r.mean, embedding),
                speaker: r.name,
            })
            .collect();
        Ok(best_first(c, top))
    }

    /// `PRAGMA integrity_check`: `ok` for a sound database.
    pub fn integrity_check(&self) -> Result<String> {
        let conn = self.conn();
        conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}

/// The database holds speakers of any model; each is checked against the model in use.
impl EnrollmentStore for SpeakerDb {
    fn enroll(
        &mut self,
        speaker: &str,
        model: &StoreModel<'_>,
        embeddings: &[Vec<f32>],
    ) -> Result<usize> {
        let r = SpeakerDb::enroll(self, speaker, model.name, model.sha256, embeddings)?;
        Ok(r.utterances as usize)
    }

    fn score(&self, speaker: &str, model_sha256: &str, embedding: &[f32]) -> Result<f64> {
        SpeakerDb::score(self, speaker, model_sha256, embedding)
    }

    fn identify(
        &self,
        model_sha256: &str,
        embedding: &[f32],
        top: usize,
    ) -> Result<Vec<Candidate>> {
        SpeakerDb::identify(self, model_sha256, embedding, top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enroll_score_identify_delete_and_model_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("speakers.db");
        let db = SpeakerDb::open(&p).unwrap();
        let a = db
            .enroll("alice", "m", "sha-a", &[vec![1.0, 0.0], vec![0.0, 1.0]])
            .unwrap();
        assert_eq!(a.utterances, 2);
        assert!((a.mean[0] - 0.5).abs() < 1e-6 && (a.mean[1] - 0.5).abs() < 1e-6);
        let a2 = db.enroll("alice", "m", "sha-a", &[vec![2.0, 0.0]]).unwrap();
        assert_eq!((a2.id, a2.utterances), (a.id, 3));
        assert!((a2.mean[0] - 2.0 / 3.0).abs() < 1e-6);
        db.enroll("bob", "m", "sha-a", &[vec![0.0, 1.0]]).unwrap();
        assert!(
            db.score("alice", "sha-a", &[1.0, 0.0]).unwrap()
                > db.score("bob", "sha-a", &[1.0, 0.0]).unwrap()
        );
        let top = db.identify("sha-a", &[0.0, 3.0], 1).unwrap();
        assert_eq!(top[0].speaker, "bob");
        let e = db
            .score("alice", "sha-b", &[1.0, 0.0])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("enrolled with model 'm'") && e.contains("re-enroll"),
            "{e}"
        );
        let e = db
            .enroll("alice", "m2", "sha-b", &[vec![1.0, 0.0]])
            .unwrap_err()
            .to_string();
        assert!(e.contains("sha-a"), "{e}");
        assert!(db.score("carol", "sha-a", &[1.0, 0.0]).is_err());
        assert!(db.enroll("", "m", "sha-a", &[vec![1.0, 0.0]]).is_err());
        assert!(db
            .enroll("x", "m", "sha-a", &[vec![f32::NAN, 0.0]])
            .is_err());
        // durable: a second connection (another process would do the same) sees everything
        drop(db);
        let db = SpeakerDb::open(&p).unwrap();
        assert_eq!(db.list().unwrap().len(), 2);
        assert_eq!(db.get("alice").unwrap().unwrap().utterances, 3);
        assert!(db.delete(a.id).unwrap());
        assert!(!db.delete(a.id).unwrap());
        assert!(db.get_id(a.id).unwrap().is_none());
        assert_eq!(db.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn not_a_database_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.db");
        std::fs::write(
            &p,
            b"this is not sqlite at all, just text padding to look like a page",
        )
        .unwrap();
        let e = SpeakerDb::open(&p).err().unwrap().to_string();
        assert!(
            e.starts_with(&format!("{}: enrollment database", p.display())),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1);
    }
}
