# Two commands for a fresh machine:  make demo  |  make test
# Users on GPU hosts can choose their torch build, e.g.
#   make demo TORCH="torch --index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
TEST_TORCHVISION := 0.28.0
DEBIAN_PACKAGES := libportaudio2 pulseaudio pulseaudio-utils chromium chromium-driver
STAMP := $(VENV)/.installed

.PHONY: demo test setup system-packages lint bench clean

# Renders presets/demo.toml with Stable Diffusion when the model can be loaded; otherwise says why
# and renders the motion with the preview backend (no diffusion), recording that in settings.toml.
demo: setup
	$(BIN)/python main.py render demo --fallback-preview

test: system-packages setup
	$(BIN)/python -m pytest

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pip install --quiet --no-deps spandrel==0.4.2  # upscale models; torchvision is the user's
	# torchvision's Python for the RAFT test only (tests/test_raft.py imports it in a subprocess: this
	# wheel's C ops are built for CUDA torch), kept out of the venv, where transformers would import it
	$(BIN)/python -m pip download --quiet --no-deps torchvision==$(TEST_TORCHVISION) -d .test-cache/wheels
	rm -rf .test-cache/torchvision && $(BIN)/python -m zipfile -e .test-cache/wheels/torchvision-$(TEST_TORCHVISION)-*.whl .test-cache/torchvision
	touch $(STAMP)

# Debian packages the code and its tests need (PortAudio for sounddevice, PulseAudio for the
# microphone test, Chromium and its driver for the live page test); installed when missing.
system-packages:
	@command -v dpkg >/dev/null || { echo "not Debian: install $(DEBIAN_PACKAGES) with your package manager"; exit 0; }; \
	missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		echo "installing Debian packages:$$missing"; \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python bench/schedules.py
	$(BIN)/python bench/frame_ops.py
	$(BIN)/python bench/audio.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis outputs
