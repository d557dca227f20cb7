# windowkeeper — the two commands that matter: `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PY) -m uv")
RUN := $(UV) run --frozen
TRANSCRIPT := examples/transcripts/support_agent.json
OUT := out

.PHONY: help setup demo test lint typecheck pytest bench docs docs-check clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

setup:  ## install uv if missing and sync the workspace (CPU-only, offline-safe counts)
	@command -v uv >/dev/null 2>&1 || $(PY) -m uv --version >/dev/null 2>&1 || $(PY) -m pip install --quiet "uv>=0.5"
	$(UV) sync --frozen --all-groups

demo: setup  ## audit + plan + kv, replay with the layered memory (fact notes, MiniLM) and clone, then the LangChain agent, the LlamaIndex chat engine, RAG-chunk compression and two app servers on PostgreSQL
	@mkdir -p $(OUT)
	$(RUN) windowkeeper audit $(TRANSCRIPT) --plot $(OUT)/creep.png
	$(RUN) windowkeeper plan
	$(RUN) windowkeeper kv --tokens 128000
	rm -f $(OUT)/replay.db
	$(RUN) windowkeeper replay $(TRANSCRIPT) --strategy layered --budget 8000 --store $(OUT)/replay.db --plot $(OUT)/replay.png --finish 60
	$(RUN) windowkeeper clone $(TRANSCRIPT) --max-tokens 1200 --store $(OUT)/replay.db --out $(OUT)/clone.json
	$(RUN) python examples/langchain_agent.py
	$(RUN) python examples/llama_index_chat.py
	$(RUN) python examples/rag_compression.py
	$(RUN) python examples/postgres_two_servers.py

test: setup lint typecheck pytest docs-check  ## install everything, then lint, types, tests and a strict docs build

lint:  ## ruff lint + format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck:  ## mypy --strict on the core and the adapters
	$(RUN) mypy

pytest:  ## the test suite (sockets blocked)
	$(RUN) pytest

bench: setup  ## benchmarks; figures go to docs/benchmarks.md by hand (LoCoMo reads ../shared/data)
	$(RUN) python bench/bench_counting.py
	$(RUN) python bench/bench_memory.py
	$(RUN) python bench/bench_store.py
	$(RUN) python bench/bench_recall.py
	$(RUN) python bench/bench_summary.py
	$(RUN) python bench/bench_facts.py
	$(RUN) python bench/bench_locomo.py
	$(RUN) python bench/bench_langchain.py
	$(RUN) python bench/bench_llama_index.py
	$(RUN) python bench/bench_postgres.py
	$(RUN) python bench/bench_planted.py

docs: setup  ## build the documentation site into site/
	NO_MKDOCS_2_WARNING=1 $(RUN) mkdocs build --strict

docs-check:  ## strict docs build into a scratch folder (part of make test)
	NO_MKDOCS_2_WARNING=1 $(RUN) mkdocs build --strict --quiet -d $$(mktemp -d)

clean:  ## remove build and cache folders
	rm -rf $(OUT) site .pytest_cache .mypy_cache .ruff_cache
