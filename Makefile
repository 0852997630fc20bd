# salience-audit: `make test` and `make demo` set up everything they need.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
OUT    ?= demo-output

export HF_HUB_OFFLINE = 1
export PYTHONUNBUFFERED = 1

.PHONY: install test demo bench browser clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,ray,byo]"
	# The generator's own code needs only torch, torchvision, numpy, matplotlib,
	# platformdirs and requests (all installed above); its declared extras
	# (wandb, rdkit, moviepy) are not needed, so skip them.
	$(BIN)/python -m pip install --quiet --no-deps "gan-face-generate>=1.1"
	touch $(STAMP)

# Headless Chromium for the report test (Debian package), installed when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	      echo "warning: could not install chromium; the browser test will be skipped"; \
	    else echo "warning: chromium not found and cannot be installed; the browser test will be skipped"; fi; }

test: install browser
	$(BIN)/python -m pytest -q -ra

demo: install
	$(BIN)/salience-audit demo --out $(OUT)

bench: install
	$(BIN)/python -m pip install --quiet "quantus>=0.5"
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
