# The README's two commands: `make serve` and `make test`. Both set up what they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
VENV := .venv
APT_PACKAGES := skopeo containerd docker-registry podman buildah umoci openssh-server nginx wrk iproute2 \
	uidmap fuse-overlayfs sudo apache2-utils tinyproxy binutils chromium chromium-driver
APT_MARKER := .venv/.apt-done

.PHONY: install serve test lint unit bench peers conformance image clean

# Debian 12 and later refuse `pip install --user` into the system Python (PEP 668) unless told it is meant.
$(UV):
	$(PYTHON) -m pip install --quiet --user uv || $(PYTHON) -m pip install --quiet --user --break-system-packages uv \
	  || $(PYTHON) -m pip install --quiet uv

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --quiet
	touch $@

install: $(VENV)/.installed

serve: install
	$(VENV)/bin/k3sreg serve $(ARGS)

# Debian packages of the real peers the tests drive (needs root, as in CI). Checked again when the Makefile
# (and so the list) changes.
$(APT_MARKER): Makefile | $(VENV)/.installed
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q $$missing >/dev/null; \
	fi
	touch $@

peers: $(APT_MARKER)

lint: install
	$(VENV)/bin/ruff check src tests bench image
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: install peers lint
	$(VENV)/bin/pytest -q tests $(PYTEST_ARGS)

unit: install
	$(VENV)/bin/pytest -q tests/unit $(PYTEST_ARGS)

bench: install peers
	$(VENV)/bin/python -m bench $(BENCH_ARGS)

# The k3sreg image from Debian 12 packages (apt-get download, the machine's apt sources) and uv.lock, with no
# registry and no daemon: dist/k3sreg-<version>.oci.tar and .docker.tar. A build of the same inputs is reused
# from .cache/image/ (see image/build.py). Needs root (or user namespaces) to compile bytecode in the tree.
image: install
	UV=$(UV) $(VENV)/bin/python -m image.build $(IMAGE_ARGS)

# The official OCI distribution-spec conformance suite (v1.1.1, all four workflows). Manual: it builds the Go
# suite from source snapshots that a developer session fetches, which a fresh machine or CI cannot do.
conformance: install
	tests/conformance/run.sh $(CONFORMANCE_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
