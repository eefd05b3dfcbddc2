# The two entry points (see README.md). Both install missing Debian packages
# first, so they work on a fresh Debian 12 machine as root.
BUILD_DIR ?= build
CONFIG    ?= config/shoal.yaml
JOBS      ?= $(shell nproc)

.PHONY: run test deps build clean install test-asan test-tsan container-test fuzz

# ccache hits across checkouts (CI's clean checkout, git worktrees): paths
# relative to the checkout, and the working directory left out of the hash
# of debug builds.
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := 1

deps:
	@./deploy/install-deps.sh

$(BUILD_DIR)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release -DSHOAL_WERROR=ON

build: deps $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

# Release build, then shoald in the foreground on the default config
# (Ctrl-C drains and stops it).
run: build
	$(BUILD_DIR)/server/shoald --config $(CONFIG)

# Everything, then the whole test suite.
test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j 2 --timeout 300

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer (with
# LeakSanitizer at every exit, shoald's after its drain included), and the
# tests that run several shards at once under ThreadSanitizer. Any report,
# from a test or from a shoald it started, fails the run
# (tests/sanitized-ctest.sh). Both are part of .ci/run.
test-asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSHOAL_WERROR=ON -DSHOAL_SANITIZE=address,undefined
	cmake --build build-asan -j $(JOBS)
	tests/sanitized-ctest.sh build-asan -j 2 --timeout 300

TSAN_TESTS ?= ShardLoop|ShardingPolicy|Admin|Drain|Sigterm|WebSocket|Systemd|NeverReads|Tls|Wss|Proxy|Haproxy|Connection|PubSub|RedisBridge|HttpEcho
test-tsan: deps
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHOAL_WERROR=ON -DSHOAL_SANITIZE=thread
	cmake --build build-tsan -j $(JOBS)
	tests/sanitized-ctest.sh build-tsan -j 2 --timeout 300 -R '$(TSAN_TESTS)'

# Builds the Dockerfile for real (buildah, no Docker engine needed) and
# checks the image: non-root, HEALTHCHECK, echo and health probe from inside.
container-test: deps
	deploy/docker-check.sh

# libFuzzer (clang): builds the targets of tests/fuzz/ in build-fuzz with
# ASan+UBSan and runs each for FUZZ_SECONDS from its seed corpus (new corpus
# entries stay in build-fuzz/fuzz-run/). Any crash, leak, hang or
# out-of-memory fails it; the input is left in build-fuzz/fuzz-run/<target>/.
# Prints executions and executions per second per target.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= config websocket http_upgrade admin_http proxy_protocol frame_codec
fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DSHOAL_FUZZ=ON -DBUILD_TESTING=OFF -DSHOAL_WERROR=ON
	cmake --build build-fuzz -j $(JOBS) --target fuzz_all
	tests/fuzz/run_fuzzers.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf $(BUILD_DIR) build-asan build-tsan build-fuzz

# Installs shoald, shoal-load, the systemd unit and /etc/shoal/shoal.yaml
# (an existing one is kept). PREFIX=/usr matches the unit's /usr/bin/shoald.
PREFIX ?= /usr
install: build
	cmake --install $(BUILD_DIR) --prefix $(PREFIX)
