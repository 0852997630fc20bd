# salience-audit: `make test` and `make demo` set up everything they need.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
DEMO_STAMP = $(VENV)/.demo-installed-stamp
OUT    ?= demo-output

export HF_HUB_OFFLINE = 1
export PYTHONUNBUFFERED = 1

.PHONY: install install-demo venv-check test demo bench browser check-install clean

# The venv, made with $(PYTHON); an existing one made with another Python is refused
# (run `make clean` or pass VENV=.venv-3.13).
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

venv-check: $(BIN)/python
	@$(BIN)/python -c "import sys; want = '$$($(PYTHON) -c 'import sys; print(sys.version_info[:2])')'; \
	  sys.exit(0 if str(sys.version_info[:2]) == want else '$(VENV) was made with Python %d.%d, not $(PYTHON): run make clean or set VENV=' % sys.version_info[:2])"

# The DCGAN generator of the demo data: its wheel declares Python <3.13 and pulls wandb[media],
# but its generator code needs only torch, so install it alone and on every Python (docs/install.md).
GENERATOR = $(BIN)/python -m pip install --quiet --no-deps --ignore-requires-python "gan-face-generate>=1.1"

# What `make test` needs: the core, the test tools (scikit-image oracle, MLflow, TensorBoard,
# Playwright), Ray for the distributed-engine test, and the demo data's generator.
install: $(STAMP)

$(STAMP): pyproject.toml | venv-check
	$(BIN)/python -m pip install --quiet -e ".[test,ray,byo]"
	$(GENERATOR)
	touch $(STAMP)

# What `make demo` needs: the core, scikit-image (the demo's LFW faces) and the generator.
install-demo: $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml | venv-check
	$(BIN)/python -m pip install --quiet -e . "scikit-image>=0.21"
	$(GENERATOR)
	touch $(DEMO_STAMP)

# Headless Chromium for the report test (Debian package), installed when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	      echo "warning: could not install chromium; the browser test will be skipped"; \
	    else echo "warning: chromium not found and cannot be installed; the browser test will be skipped"; fi; }

test: install browser
	$(BIN)/python -m pytest -q -ra

demo: install-demo
	$(BIN)/salience-audit demo --out $(OUT)

# Resolve the dependency set (core and every extra) for Python 3.11, 3.12 and 3.13 (needs the registry).
check-install: venv-check
	$(BIN)/python scripts/check-install

bench: install
	$(BIN)/python -m pip install --quiet "quantus>=0.5"
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
