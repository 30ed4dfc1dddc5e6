//! DET-curve input: trial scores split into target and non-target scores by the trials' labels.

use crate::speaker::trials::Trial;

/// The scores of target trials and of non-target trials, in trial order (`scores[i]` belongs
/// to `trials[i]`; extra entries of either are ignored).
pub fn split_scores(trials: &[Trial], scores: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (mut tar, mut non) = (Vec::new(), Vec::new());
    for (t, s) in trials.iter().zip(scores) {
        if t.target {
            tar.push(*s)
        } else {
            non.push(*s)
        }
    }
    (tar, non)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_follow_their_trials_labels() {
        let t = |target| Trial {
            target,
            enroll: "a".into(),
            test: "b".into(),
            cross_language: false,
        };
        let trials = [t(true), t(false), t(true), t(false)];
        let (tar, non) = split_scores(&trials, &[0.9, 0.1, 0.8, 0.2]);
        assert_eq!(tar, vec![0.9, 0.8]);
        assert_eq!(non, vec![0.1, 0.2]);
    }
}
