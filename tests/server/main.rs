//! End-to-end tests of `voxq serve` (docs/server.md): every test starts its own server process
//! on a free port (`--port 0`, the port read from its `voxq: listening on` line), waits for
//! `GET /health` to answer 200, and talks to it over HTTP with the real CAM++ model on real
//! speech, the tiny Whisper fixture and the tiny audio-LLM fixture. The server is killed when
//! its guard is dropped; its stderr is kept for failure messages.
//!
//! Modules: `process` (the server guard), `support` (HTTP, multipart, metrics and audio
//! helpers), and the tests by area: `speaker`, `silence`, `bad_input`, `asr_chat`, `limits`,
//! `durability`, and issue 18's `client_threshold`, `chat_context`, `slow_clients`,
//! `access_log`, `names`, `api_key_all`.

#[path = "../common/mod.rs"]
mod common;

mod access_log;
mod api_key_all;
mod asr_chat;
mod bad_input;
mod chat_context;
mod client_threshold;
mod durability;
mod limits;
mod names;
mod process;
mod silence;
mod slow_clients;
mod speaker;
mod support;
