//! The text normalisation WER is computed on (the rules of `tools/whisper_wer.py`, applied to
//! references and hypotheses alike): lower case; `mr.`/`mrs.`/`dr.` to `mister`/`missus`/
//! `doctor`; `#` to `pound`, `*` to `star`, `%` to `percent`; hyphens and slashes to spaces;
//! thousands commas dropped; integers of up to six digits to English words ("21" -> "twenty
//! one"); every other character that is not `a-z`, `0-9`, an apostrophe or a space dropped;
//! whitespace collapsed. Digits are ASCII digits here (Python's `\d` also takes other scripts'
//! digits; such references are rare in English lists).

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// English words of `n` (0..=999999): "twenty one", "three hundred", "one thousand five".
pub fn number_words(n: u32) -> String {
    let join = |head: String, rest: u32, words: fn(u32) -> String| {
        if rest == 0 {
            head
        } else {
            format!("{head} {}", words(rest))
        }
    };
    match n {
        0..=19 => ONES[n as usize].to_string(),
        20..=99 => join(TENS[(n / 10) as usize].to_string(), n % 10, |r| {
            ONES[r as usize].to_string()
        }),
        100..=999 => join(
            format!("{} hundred", ONES[(n / 100) as usize]),
            n % 100,
            number_words,
        ),
        _ => join(
            format!("{} thousand", number_words(n / 1000)),
            n % 1000,
            number_words,
        ),
    }
}

/// A character of a word for `\b` (Python's `\w`: letters, digits, underscore).
fn word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `mr.`, `mrs.`, `dr.` at a word start to `mister`, `missus`, `doctor`.
fn titles(t: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(t.len() + 8);
    let mut i = 0;
    while i < t.len() {
        let at_start = i == 0 || !word_char(t[i - 1]);
        let hit = at_start.then(|| {
            [("mrs.", "missus"), ("mr.", "mister"), ("dr.", "doctor")]
                .into_iter()
                .find(|(abbr, _)| {
                    let a: Vec<char> = abbr.chars().collect();
                    t.len() >= i + a.len() && t[i..i + a.len()] == a[..]
                })
        });
        match hit.flatten() {
            Some((abbr, full)) => {
                out.extend(full.chars());
                i += abbr.len();
            }
            None => {
                out.push(t[i]);
                i += 1;
            }
        }
    }
    out
}

/// Normalised text (see the module's rules).
pub fn normalize(text: &str) -> String {
    let lower: Vec<char> = text.to_lowercase().chars().collect();
    let mut t = Vec::with_capacity(lower.len());
    for c in titles(&lower) {
        match c {
            '#' => t.extend(" pound ".chars()),
            '*' => t.extend(" star ".chars()),
            '%' => t.extend(" percent ".chars()),
            '-' | '/' => t.push(' '),
            c => t.push(c),
        }
    }
    // thousands separators: a comma between a digit and three digits
    let digit = |i: usize| t.get(i).is_some_and(char::is_ascii_digit);
    let t: Vec<char> = (0..t.len())
        .filter(|&i| !(t[i] == ',' && i > 0 && digit(i - 1) && (1..=3).all(|k| digit(i + k))))
        .map(|i| t[i])
        .collect();
    let mut out = String::with_capacity(t.len() + 16);
    let mut i = 0;
    while i < t.len() {
        if t[i].is_ascii_digit() {
            let j = (i..t.len())
                .find(|&j| !t[j].is_ascii_digit())
                .unwrap_or(t.len());
            let run: String = t[i..j].iter().collect();
            match (run.len() <= 6).then(|| run.parse::<u32>().ok()).flatten() {
                Some(n) => {
                    out.push(' ');
                    out.push_str(&number_words(n));
                    out.push(' ');
                }
                None => out.push_str(&run),
            }
            i = j;
        } else {
            let c = t[i];
            out.push(
                if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '\'' || c == ' ' {
                    c
                } else {
                    ' '
                },
            );
            i += 1;
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The normalised words of `text`.
pub fn words(text: &str) -> Vec<String> {
    normalize(text)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// True for a non-speech reference: nothing but bracketed spans of any form
/// (`[this is a simple beep tone]`, `<beep ascending>`, `(10 seconds of silence)`); such
/// utterances are left out of WER. `at [@]` is speech (`at` is outside the brackets).
pub fn is_non_speech(reference: &str) -> bool {
    let mut close: Option<char> = None;
    for c in reference.chars() {
        match close {
            Some(end) if c == end => close = None,
            Some(_) => {}
            None => match c {
                '[' => close = Some(']'),
                '<' => close = Some('>'),
                '(' => close = Some(')'),
                c if c.is_alphanumeric() => return false,
                _ => {}
            },
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_case_and_whitespace() {
        assert_eq!(normalize("  Hello\tWORLD \n again "), "hello world again");
        assert_eq!(normalize(""), "");
    }

    #[test]
    fn titles_at_word_starts_only() {
        assert_eq!(normalize("Mr. Smith"), "mister smith");
        assert_eq!(
            normalize("Mrs. Smith and Dr. Who"),
            "missus smith and doctor who"
        );
        // not inside a word: "humr." stays "humr"
        assert_eq!(normalize("humr. dr.x"), "humr doctorx");
    }

    #[test]
    fn symbols_become_words() {
        assert_eq!(normalize("press #"), "press pound");
        assert_eq!(normalize("*69"), "star sixty nine");
        assert_eq!(normalize("50%"), "fifty percent");
    }

    #[test]
    fn hyphens_and_slashes_split_words() {
        assert_eq!(normalize("voice-mail and/or"), "voice mail and or");
    }

    #[test]
    fn integers_to_words() {
        assert_eq!(normalize("21"), "twenty one");
        assert_eq!(normalize("0"), "zero");
        assert_eq!(normalize("100"), "one hundred");
        assert_eq!(normalize("1,000"), "one thousand");
        assert_eq!(
            normalize("1,234,5"),
            "one thousand two hundred thirty four five"
        );
        assert_eq!(
            normalize("999999"),
            "nine hundred ninety nine thousand nine hundred ninety nine"
        );
        assert_eq!(normalize("007"), "seven");
        assert_eq!(normalize("room 12b"), "room twelve b");
        // more than six digits stay digits
        assert_eq!(normalize("1234567"), "1234567");
        assert_eq!(normalize("1,234,567"), "1234567");
        assert_eq!(number_words(40_010), "forty thousand ten");
        assert_eq!(number_words(115), "one hundred fifteen");
    }

    #[test]
    fn other_characters_dropped_apostrophes_kept() {
        assert_eq!(normalize("It's done. Really?!"), "it's done really");
        assert_eq!(normalize("café, naïve"), "caf na ve");
        assert_eq!(normalize("a_b (c) \"d\""), "a b c d");
    }

    #[test]
    fn bracketed_non_speech() {
        assert!(is_non_speech(" [this is a simple beep tone] "));
        assert!(is_non_speech("<beep ascending>"));
        assert!(is_non_speech("(10 seconds of silence)"));
        assert!(is_non_speech("[ascending tones] <beep>"));
        assert!(!is_non_speech("press [1] now"));
        assert!(!is_non_speech("at [@]"));
        assert_eq!(words("Press 1, now!"), ["press", "one", "now"]);
    }
}
