# The two README commands. Both install what they need into .venv first (idempotent).
VENV := .venv
STAMP := $(VENV)/.egox-installed
DEMO_OUT ?= out/demo

.PHONY: demo test install bench clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-ros.txt constraints.txt setup.py scripts/install.sh
	bash scripts/install.sh
	touch $@

demo: $(STAMP)
	ROS_AUTOMATIC_DISCOVERY_RANGE=$${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST} \
	RAY_USAGE_STATS_ENABLED=0 $(VENV)/bin/egox demo --out $(DEMO_OUT)

test: $(STAMP)
	bash scripts/run_tests.sh

bench: $(STAMP)
	$(VENV)/bin/egox bench prior

clean:
	rm -rf out build *.egg-info
