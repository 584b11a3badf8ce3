# Everything runs inside .venv, created on first use: a fresh clone needs only python3.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml clients/python/pyproject.toml | cksum | cut -d' ' -f1)
CHECKED_TREE := build/checked-tree

.PHONY: build checked demo test test-release test-checked lint openapi tools bench bench-core \
	bench-engine bench-placement bench-auth bench-ws bench-gateway bench-rest bench-fix \
	bench-fix-codec clean

$(STAMP): pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --upgrade "setuptools>=77" wheel "Cython>=3.0.10" "numpy>=1.26"
	$(PY) -m pip install -q --no-build-isolation --config-settings editable_mode=compat -e ".[test,bench]"
	$(PY) -m pip install -q --no-build-isolation -e clients/python
	touch $@

build: $(STAMP)
	$(PY) setup.py -q build_ext --inplace

# The same sources with Cython's checks and UBSan on, in a tree of their own
# whose ext/ shadows the release build (see setup.py).
checked: $(STAMP)
	FLOWGATE_CHECKED=1 $(PY) setup.py -q build_ext --build-lib $(CHECKED_TREE)
	cp ext/*.py $(CHECKED_TREE)/ext/
	for d in engine bench tests gateways docs pyproject.toml; do ln -sfn ../../$$d $(CHECKED_TREE)/$$d; done

# The venue with demo instruments and funded accounts; its state lives in demo-data/.
demo: build
	$(VENV)/bin/flowgate serve --demo --data-dir demo-data --record-port 9870 --metrics-port 9871 \
		--market-maker

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cython-lint --max-line-length 100 ext/

test: lint test-release test-checked

# one pytest worker per CPU: the integration tests mostly wait on the servers they start
PYTEST := -m pytest -q -n auto

# docs/openapi.json and docs/api.html from the code (a test fails while they are stale)
openapi: build
	$(PY) -m gateways.rest.openapi

test-release: build tools
	$(PY) $(PYTEST)

test-checked: checked
	cd $(CHECKED_TREE) && FLOWGATE_EXPECT_CHECKED=1 $(CURDIR)/$(PY) $(PYTEST) tests/unit tests/reference

# every protocol beside the transport floors, the core, the engine and a rate sweep, into
# bench/results/<timestamp>/ (python -m bench --help: one protocol, rates, pinning...)
bench: build
	$(PY) -m bench all

# what the benchmarks and the interop tests drive and build (Debian packages):
# wrk, a QuickFIX C++ initiator with libsodium, and QuickFIX's acceptance-test
# runner (Ruby) with its scenarios (from the quickfix source package)
TOOLS := wrk libquickfix-dev libsodium-dev g++ ruby
tools:
	@dpkg -s $(TOOLS) >/dev/null 2>&1 || { apt-get update -qq && \
		apt-get install -y -qq $(TOOLS) >/dev/null; }
	@sh tests/interop/fetch-quickfix.sh build/quickfix

bench-core: build
	$(PY) -m bench.core --cpu $$(( $$(nproc) - 1 ))

# journals are written under build/, on the disk the venue would use
bench-engine: build
	$(PY) -m bench.engine --cpu $$(( $$(nproc) - 1 ))

bench-placement: build
	$(PY) -m bench.placement

bench-auth: build
	taskset -c $$(( $$(nproc) - 1 )) $(PY) -m bench.auth

bench-ws: build
	$(PY) -m bench.ws

# the WebSocket gateway's CPU per order, in one process, without sockets
bench-gateway: build
	$(PY) -m bench.gateway

bench-rest: build tools
	$(PY) -m bench.rest

bench-fix: build
	$(PY) -m bench fix

bench-fix-codec: build
	taskset -c $$(( $$(nproc) - 1 )) $(PY) -m bench.fix_codec

clean:
	rm -rf build ext/*.so ext/*.c
