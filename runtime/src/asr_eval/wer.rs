//! Word edit distance: the least substitutions + deletions + insertions that turn the
//! reference words into the hypothesis words (Levenshtein over words), with the three counts
//! of one optimal alignment, and their sums over a list ([`WerCounts`]).

use serde::Serialize;

/// Errors of one alignment (or a sum of them) and the reference words they are counted over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WerCounts {
    pub substitutions: usize,
    pub deletions: usize,
    pub insertions: usize,
    /// Reference words.
    pub words: usize,
}

impl WerCounts {
    /// Substitutions + deletions + insertions.
    pub fn errors(&self) -> usize {
        self.substitutions + self.deletions + self.insertions
    }

    /// Word error rate in percent (errors per reference word; 0 words: 0 errors give 0, else
    /// infinity).
    pub fn wer_percent(&self) -> f64 {
        match (self.errors(), self.words) {
            (0, _) => 0.0,
            (_, 0) => f64::INFINITY,
            (e, w) => 100.0 * e as f64 / w as f64,
        }
    }

    /// Adds another utterance's counts.
    pub fn add(&mut self, o: &WerCounts) {
        self.substitutions += o.substitutions;
        self.deletions += o.deletions;
        self.insertions += o.insertions;
        self.words += o.words;
    }
}

/// The edit distance of `hyp` to `reference` and one optimal alignment's counts. Among
/// alignments of the least cost the backtrace takes a match or substitution first, then a
/// deletion, then an insertion, so the counts are deterministic.
pub fn align<S: AsRef<str>>(reference: &[S], hyp: &[S]) -> WerCounts {
    let (n, m) = (reference.len(), hyp.len());
    // d[i][j]: cost of reference[..i] -> hyp[..j]
    let w = m + 1;
    let mut d = vec![0usize; (n + 1) * w];
    for (j, x) in d.iter_mut().enumerate().take(w) {
        *x = j;
    }
    for i in 1..=n {
        d[i * w] = i;
        for j in 1..=m {
            let sub = usize::from(reference[i - 1].as_ref() != hyp[j - 1].as_ref());
            d[i * w + j] = (d[(i - 1) * w + j - 1] + sub)
                .min(d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1);
        }
    }
    let mut c = WerCounts {
        words: n,
        ..Default::default()
    };
    let (mut i, mut j) = (n, m);
    while i > 0 || j > 0 {
        let here = d[i * w + j];
        if i > 0 && j > 0 {
            let sub = usize::from(reference[i - 1].as_ref() != hyp[j - 1].as_ref());
            if d[(i - 1) * w + j - 1] + sub == here {
                c.substitutions += sub;
                i -= 1;
                j -= 1;
                continue;
            }
        }
        if i > 0 && d[(i - 1) * w + j] + 1 == here {
            c.deletions += 1;
            i -= 1;
        } else {
            c.insertions += 1;
            j -= 1;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(r: &str, h: &str) -> (usize, usize, usize, usize) {
        let r: Vec<&str> = r.split_whitespace().collect();
        let h: Vec<&str> = h.split_whitespace().collect();
        let c = align(&r, &h);
        (c.substitutions, c.deletions, c.insertions, c.words)
    }

    #[test]
    fn identical_is_zero() {
        assert_eq!(counts("a b c", "a b c"), (0, 0, 0, 3));
        assert_eq!(counts("", ""), (0, 0, 0, 0));
        assert_eq!(align::<&str>(&[], &[]).wer_percent(), 0.0);
    }

    #[test]
    fn each_kind_of_error() {
        assert_eq!(counts("a b c", "a x c"), (1, 0, 0, 3));
        assert_eq!(counts("a b c", "a c"), (0, 1, 0, 3));
        assert_eq!(counts("a b c", "a b x c"), (0, 0, 1, 3));
        assert_eq!(counts("a b c", ""), (0, 3, 0, 3));
        assert_eq!(counts("", "x y"), (0, 0, 2, 0));
        assert_eq!(align(&[""; 0], &["x"]).wer_percent(), f64::INFINITY);
    }

    #[test]
    fn least_cost_and_mixed() {
        // kitten -> sitting as words: 2 substitutions, 1 insertion
        assert_eq!(counts("k i t t e n", "s i t t i n g"), (2, 0, 1, 6));
        // a shift costs 2 (a deletion and an insertion), not 3 substitutions
        assert_eq!(counts("a b c", "b c d"), (0, 1, 1, 3));
        let c = align(&["the", "cat", "sat"], &["a", "cat", "sat", "down"]);
        assert_eq!(c.errors(), 2);
        assert!((c.wer_percent() - 200.0 / 3.0).abs() < 1e-9);
        let mut sum = c;
        sum.add(&align(&["x"], &["x"]));
        assert_eq!((sum.errors(), sum.words), (2, 4));
        assert_eq!(sum.wer_percent(), 50.0);
    }

    #[test]
    fn distance_matches_the_python_recurrence() {
        // tools/whisper_wer.py's edits(): a plain two-row Levenshtein
        fn edits(a: &[&str], b: &[&str]) -> usize {
            let mut prev: Vec<usize> = (0..=b.len()).collect();
            for (i, x) in a.iter().enumerate() {
                let mut cur = vec![i + 1];
                for (j, y) in b.iter().enumerate() {
                    cur.push(
                        (prev[j + 1] + 1)
                            .min(cur[j] + 1)
                            .min(prev[j] + usize::from(x != y)),
                    );
                }
                prev = cur;
            }
            prev[b.len()]
        }
        let words = ["a", "b", "c", "d"];
        let mut seed = 7u64;
        for _ in 0..300 {
            let mut pick = |n: usize| -> Vec<&str> {
                (0..n)
                    .map(|_| {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        words[(seed >> 33) as usize % 4]
                    })
                    .collect()
            };
            let (r, h) = (pick(5), pick(6));
            assert_eq!(align(&r, &h).errors(), edits(&r, &h), "{r:?} {h:?}");
        }
    }
}
