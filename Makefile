# Everything a fresh Debian 12/13 machine needs, as root: `make demo`, `make test`.
VENV ?= .venv
PYTHON ?= python3
IMAGE ?= ckptd-example-app:latest
BIN := $(VENV)/bin

.PHONY: venv engine image prometheus lint unit test demo clean install systemd-tools bench bench-tools fault-tools

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV) || { apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

engine:
	bash scripts/setup-engine.sh

image: engine
	IMAGE=$(IMAGE) bash examples/cpp-app/build.sh

# Prometheus and promtool from Debian, for the alert-rule and real-Prometheus tests; the
# package's own service is never started (the tests run their own prometheus).
prometheus:
	bash scripts/setup-prometheus.sh

lint: venv
	$(BIN)/ruff check ckptd tests bench
	$(BIN)/ruff format --check ckptd tests bench
	$(BIN)/mypy

# systemd-analyze (the unit file's test) comes with Debian's systemd package; installing the
# package does not make systemd PID 1 where something else runs the machine.
systemd-tools:
	@command -v systemd-analyze >/dev/null || { apt-get update -qq && \
	  apt-get install -y -qq --no-install-recommends systemd; }

unit: venv systemd-tools
	$(BIN)/pytest -q --ignore=tests/integration -m "not fuzz"

# What bench/ compares ckptd with: Podman from Debian's packages.
bench-tools:
	command -v podman >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman; }

# The benchmark suite (bench/run.py --help): 16 MiB, 256 MiB, 1 GiB side by side.
bench: venv image bench-tools
	$(BIN)/python bench/run.py --image $(IMAGE)

# libfaketime moves the wall clock of one process for the clock-jump fault test.
fault-tools:
	@test -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libfaketime; }

# CI=true makes engine tests fail, not skip, when the engine is missing.
test: venv image prometheus lint systemd-tools bench-tools fault-tools
	$(BIN)/pytest -v

demo: venv image
	bash scripts/demo.sh

clean:
	rm -rf $(VENV) examples/cpp-app/build

# `make install` as root: ckptd in its own venv, the unit, a policy to edit, the state folder.
# DESTDIR stages everything under another root (packaging); PREFIX moves /opt/ckptd. The venv
# runs at PREFIX, not in DESTDIR (scripts/install-venv.sh says how).
PREFIX ?= /opt/ckptd
DESTDIR ?=
install:
	sh scripts/install-venv.sh $(PYTHON) $(PREFIX) $(DESTDIR)
	install -d $(DESTDIR)/usr/local/bin $(DESTDIR)/etc/systemd/system
	ln -sf $(PREFIX)/bin/ckptd $(DESTDIR)/usr/local/bin/ckptd
	install -m 0644 systemd/ckptd.service $(DESTDIR)/etc/systemd/system/ckptd.service
	install -d -m 0755 $(DESTDIR)/etc/ckptd
	install -d -m 0700 $(DESTDIR)/var/lib/ckptd
	test -e $(DESTDIR)/etc/ckptd/policy.yaml || \
	  install -m 0600 config/policy.example.yaml $(DESTDIR)/etc/ckptd/policy.yaml
	install -D -m 0644 README.md $(DESTDIR)/usr/local/share/doc/ckptd/README.md
	@echo "installed; edit /etc/ckptd/policy.yaml, then: systemctl daemon-reload && systemctl enable --now ckptd"
