# napari-pathalign: `make demo` and `make test` set everything up on a fresh machine, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# the CPU wheel by default; with a GPU pick a CUDA build, e.g. TORCH_SPEC="torch==2.13.0 --index-url <CUDA wheel index>"
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pathalign-installed
# Qt's xcb platform and a virtual display for headless runs; a real DICOMweb archive (Orthanc with its
# DICOMweb plugin) and openssl for its HTTPS certificate, which the PACS tests start, and its SVS/TIFF to
# DICOM WSI converter (orthanc-wsi: OrthancWSIDicomizer; OpenSlide for JPEG 2000 sources) (Debian names)
SYSTEM_PACKAGES := xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 \
	libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-shape0 libxcb-randr0 \
	libdbus-1-3 libfontconfig1 libgl1 libegl1 libglib2.0-0 \
	orthanc orthanc-dicomweb openssl orthanc-wsi libopenslide0
SCREEN := -screen 0 1920x1200x24

.PHONY: setup system-packages demo test lint clean

setup: system-packages $(STAMP)

system-packages:
	@command -v dpkg >/dev/null || exit 0; \
	missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing system packages (Qt, Xvfb, Orthanc):" $$missing; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null; \
	else \
		echo "warning: missing system packages:" $$missing; \
		echo "         install them with: sudo apt-get install" $$missing; \
	fi

$(STAMP): setup.cfg pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[all,train,test]"
	@touch $@

demo: setup
	@if [ -n "$$DISPLAY" ]; then \
		$(VENV)/bin/pathalign demo; \
	else \
		echo "no display: running the demo window under Xvfb"; \
		xvfb-run -a -s "$(SCREEN)" $(VENV)/bin/pathalign demo --screenshot demo-output/demo.png; \
	fi

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/npe2 validate napari-pathalign

test: lint
	$(PY) -m pytest

clean:
	rm -rf $(VENV) build *.egg-info demo-output .pytest_cache
