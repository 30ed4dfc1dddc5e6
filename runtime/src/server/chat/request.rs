//! The chat-completions request body as serde types (OpenAI's shape: `messages` with text and
//! `input_audio` parts, `stream`, `n`, `max_tokens`, `temperature`, `top_p`, `seed`) and its
//! check into what the handler runs.
//!
//! Every field reads any JSON value (absent, null, of its type or of another), so
//! deserializing never fails on a field; the check then answers each case with the message the
//! API documents, in the order the fields are checked, or with the field's default.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use base64::Engine as _;
use exporter::onnx::one_line;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::Deserialize;
use serde_json::Value;

use crate::audio_llm::AudioLlm;
use crate::generation::{GenerateOptions, Strategy};
use crate::server::api::{ApiError, Upload};

const SPEECH: &str = "<SpeechHere>";
const DEFAULT_MAX_TOKENS: usize = 256;
const MAX_TOKENS: usize = 4096;

/// What a chat request asks for, checked.
pub(super) struct ChatRequest {
    pub model: String,
    pub audio: Upload,
    /// The user turn with `<SpeechHere>` in it.
    pub user: String,
    pub opts: GenerateOptions,
    /// True when the client set `max_tokens` (else it is the default, cut to fit the context).
    pub max_tokens_given: bool,
    pub stream: bool,
}

/// A scalar field as the client sent it; a value of another type is kept for the message.
#[derive(Debug, Default)]
enum Field<T> {
    #[default]
    Absent,
    Null,
    Given(T),
    Wrong(Value),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Null => Field::Null,
            v => match T::deserialize(&v) {
                Ok(t) => Field::Given(t),
                Err(_) => Field::Wrong(v),
            },
        })
    }
}

impl<T> Field<T> {
    fn given(self) -> Option<T> {
        match self {
            Field::Given(t) => Some(t),
            _ => None,
        }
    }
}

/// An array or object field as the client sent it, read by value (no copy of the audio it
/// holds); one of another shape is only marked wrong.
#[derive(Debug, Default)]
enum Lenient<T> {
    #[default]
    Absent,
    Null,
    Given(T),
    Wrong,
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Null => Lenient::Null,
            v => T::deserialize(v).map_or(Lenient::Wrong, Lenient::Given),
        })
    }
}

/// A JSON object read as `T` (serde alone would also read a struct from an array, by
/// position; an array here is not a message or a part).
#[derive(Debug)]
struct Record<T>(T);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Record<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        if !v.is_object() {
            return Err(D::Error::custom("expected a JSON object"));
        }
        T::deserialize(v).map(Record).map_err(D::Error::custom)
    }
}

/// The request body (fields this server does not use are ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ChatBody {
    model: Field<String>,
    messages: Lenient<Vec<Lenient<Record<Message>>>>,
    n: Field<u64>,
    max_completion_tokens: Field<u64>,
    max_tokens: Field<u64>,
    temperature: Field<f64>,
    top_p: Field<f64>,
    seed: Field<u64>,
    stream: Field<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Message {
    role: Field<String>,
    content: Lenient<Content>,
}

/// A message's content: plain text or a list of parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Lenient<Record<Part>>>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Part {
    #[serde(rename = "type")]
    kind: Field<String>,
    text: Field<String>,
    input_audio: Lenient<Record<InputAudio>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InputAudio {
    /// Base64 audio.
    data: Field<String>,
    /// `wav` (the default), `mp3`, `flac`, …: names the upload in messages.
    format: Field<String>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

/// Reads and checks a request body.
pub(super) fn parse(body: &[u8], llm: &AudioLlm) -> Result<ChatRequest, ApiError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("request body is not JSON: {e}")))?;
    // Every field reads any JSON, so only a body that is not an object has no fields.
    let body = Record::<ChatBody>::deserialize(v)
        .map(|r| r.0)
        .unwrap_or_default();
    let messages = match body.messages {
        Lenient::Given(m) if !m.is_empty() => m,
        _ => return Err(bad("'messages' must be a non-empty array")),
    };
    if matches!(body.n, Field::Given(n) if n != 1) {
        return Err(bad("only n = 1 is supported"));
    }
    let (mut audio, texts) = user_content(messages)?;
    let audio = match audio.len() {
        1 => audio.remove(0),
        0 => {
            return Err(bad(
                "no input_audio part: the audio LLM needs one audio clip",
            ))
        }
        n => return Err(bad(format!("{n} input_audio parts; one is supported"))),
    };
    let text = texts.join("\n").trim().to_string();
    let user = if text.is_empty() {
        llm.user_turn("asr", None, None)
    } else if text.contains(SPEECH) {
        llm.user_turn("", Some(&text), None)
    } else {
        Ok(format!("{SPEECH}\n{text}"))
    }
    .map_err(|e| bad(one_line(&e.to_string())))?;
    // `max_completion_tokens` (even null) wins over the older `max_tokens`.
    let max = match body.max_completion_tokens {
        Field::Absent => body.max_tokens,
        given => given,
    };
    let (max_new_tokens, max_tokens_given) = match max {
        Field::Absent | Field::Null => (DEFAULT_MAX_TOKENS, false),
        Field::Given(n) if (1..=MAX_TOKENS as u64).contains(&n) => (n as usize, true),
        Field::Given(n) => return Err(max_tokens_error(n)),
        Field::Wrong(x) => return Err(max_tokens_error(x)),
    };
    let temperature = number("temperature", body.temperature)?.unwrap_or(0.0);
    let top_p = number("top_p", body.top_p)?.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) || !(0.0..=1.0).contains(&top_p) || top_p == 0.0 {
        return Err(bad("temperature must be in [0, 2] and top_p in (0, 1]"));
    }
    let seed = match body.seed {
        Field::Absent | Field::Null => None,
        Field::Given(s) => Some(s),
        Field::Wrong(_) => return Err(bad("'seed' must be a non-negative integer")),
    };
    let strategy = if temperature == 0.0 {
        Strategy::Greedy
    } else {
        Strategy::Sample {
            temperature: temperature as f32,
            top_k: 0,
            top_p: top_p as f32,
            seed: seed.unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0)
            }),
        }
    };
    Ok(ChatRequest {
        model: body
            .model
            .given()
            .unwrap_or_else(|| llm.config.model.clone()),
        audio,
        user,
        opts: GenerateOptions {
            strategy,
            max_new_tokens,
            ..Default::default()
        },
        max_tokens_given,
        stream: body.stream.given().unwrap_or(false),
    })
}

fn max_tokens_error(got: impl std::fmt::Display) -> ApiError {
    bad(format!("max_tokens must be 1..{MAX_TOKENS}, got {got}"))
}

/// An optional finite number.
fn number(name: &str, f: Field<f64>) -> Result<Option<f64>, ApiError> {
    match f {
        Field::Absent | Field::Null => Ok(None),
        Field::Given(x) if x.is_finite() => Ok(Some(x)),
        _ => Err(bad(format!("'{name}' must be a number"))),
    }
}

/// The audio clips and the texts of the user messages, in order (other roles are ignored).
fn user_content(
    messages: Vec<Lenient<Record<Message>>>,
) -> Result<(Vec<Upload>, Vec<String>), ApiError> {
    let mut audio: Vec<Upload> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    for (i, m) in messages.into_iter().enumerate() {
        let Lenient::Given(Record(m)) = m else {
            continue;
        };
        if !matches!(&m.role, Field::Given(r) if r == "user") {
            continue;
        }
        let parts = match m.content {
            Lenient::Given(Content::Text(s)) => {
                texts.push(s);
                continue;
            }
            Lenient::Given(Content::Parts(parts)) => parts,
            _ => {
                return Err(bad(format!(
                    "messages[{i}]: 'content' must be a string or a list of parts"
                )))
            }
        };
        for (j, p) in parts.into_iter().enumerate() {
            let p = match p {
                Lenient::Given(Record(p)) => p,
                _ => Part::default(),
            };
            match &p.kind {
                Field::Given(k) if k == "text" => texts.push(p.text.given().ok_or_else(|| {
                    bad(format!(
                        "messages[{i}].content[{j}]: text part without 'text'"
                    ))
                })?),
                Field::Given(k) if k == "input_audio" => {
                    audio.push(input_audio(p.input_audio, i, j)?)
                }
                other => {
                    let other = match other {
                        Field::Given(k) => Some(k.as_str()),
                        _ => None,
                    };
                    return Err(bad(format!(
                        "messages[{i}].content[{j}]: unsupported part type {other:?} (text, input_audio)"
                    )));
                }
            }
        }
    }
    Ok((audio, texts))
}

/// The upload of the `input_audio` part `messages[i].content[j]`.
fn input_audio(ia: Lenient<Record<InputAudio>>, i: usize, j: usize) -> Result<Upload, ApiError> {
    let ia = match ia {
        Lenient::Absent => {
            return Err(bad(format!(
                "messages[{i}].content[{j}]: missing 'input_audio'"
            )))
        }
        Lenient::Given(Record(ia)) => ia,
        Lenient::Null | Lenient::Wrong => InputAudio::default(),
    };
    let data = ia.data.given().ok_or_else(|| {
        bad(format!(
            "messages[{i}].content[{j}].input_audio: missing 'data' (base64 audio)"
        ))
    })?;
    let fmt = ia.format.given().unwrap_or_else(|| "wav".to_string());
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| {
            bad(format!(
                "messages[{i}].content[{j}].input_audio.data is not base64: {e}"
            ))
        })?;
    Ok(Upload {
        filename: format!("messages[{i}].content[{j}].{fmt}"),
        bytes: Bytes::from(bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> ChatBody {
        let v: Value = serde_json::from_str(json).unwrap();
        Record::<ChatBody>::deserialize(v)
            .map(|r| r.0)
            .unwrap_or_default()
    }

    fn content(json: &str) -> Result<(Vec<Upload>, Vec<String>), String> {
        match body(json).messages {
            Lenient::Given(m) => user_content(m).map_err(|e| e.message),
            other => Err(format!("messages: {other:?}")),
        }
    }

    #[test]
    fn fields_read_any_json() {
        let b = body(
            r#"{"model": 3, "messages": 1, "n": 2.0, "max_tokens": [1], "temperature": "hot",
                "top_p": null, "seed": -1, "stream": "yes", "unknown": {}}"#,
        );
        assert!(matches!(b.model, Field::Wrong(_)));
        assert!(matches!(b.messages, Lenient::Wrong));
        assert!(matches!(b.n, Field::Wrong(_)));
        assert!(matches!(&b.max_tokens, Field::Wrong(x) if *x == serde_json::json!([1])));
        assert!(matches!(b.max_completion_tokens, Field::Absent));
        assert!(matches!(b.temperature, Field::Wrong(_)));
        assert!(matches!(b.top_p, Field::Null));
        assert!(matches!(b.seed, Field::Wrong(_)));
        assert!(matches!(b.stream, Field::Wrong(_)));
        for not_object in ["[]", "\"x\"", "1", "null"] {
            assert!(matches!(body(not_object).messages, Lenient::Absent));
        }
    }

    #[test]
    fn user_parts_in_order_and_their_errors() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"RIFF");
        let (audio, texts) = content(&format!(
            r#"{{"messages": [
                ["user", "array, not a message"],
                {{"role": "system", "content": 5}},
                {{"role": "user", "content": "one"}},
                {{"role": "user", "content": [
                    {{"type": "text", "text": "two"}},
                    {{"type": "input_audio", "input_audio": {{"data": " {b64} ", "format": "mp3"}}}}
                ]}}
            ]}}"#
        ))
        .unwrap();
        assert_eq!(texts, ["one", "two"]);
        assert_eq!(audio.len(), 1);
        assert_eq!(audio[0].filename, "messages[3].content[1].mp3");
        assert_eq!(&audio[0].bytes[..], b"RIFF");
        let err = |json: &str| content(json).err().unwrap_or_default();
        assert_eq!(
            err(r#"{"messages": [{"role": "user"}]}"#),
            "messages[0]: 'content' must be a string or a list of parts"
        );
        assert_eq!(
            err(r#"{"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}"#),
            "messages[0].content[0]: text part without 'text'"
        );
        assert_eq!(
            err(r#"{"messages": [{"role": "user", "content": ["text"]}]}"#),
            "messages[0].content[0]: unsupported part type None (text, input_audio)"
        );
        assert_eq!(
            err(r#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#),
            "messages[0].content[0]: unsupported part type Some(\"image_url\") (text, input_audio)"
        );
        assert_eq!(
            err(r#"{"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}"#),
            "messages[0].content[0]: missing 'input_audio'"
        );
        assert_eq!(
            err(
                r#"{"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": null}]}]}"#
            ),
            "messages[0].content[0].input_audio: missing 'data' (base64 audio)"
        );
    }
}
