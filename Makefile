# The two entry points (see README.md). Both install missing Debian packages
# first, so they work on a fresh Debian 12 machine as root.
BUILD_DIR ?= build
CONFIG    ?= config/shoal.yaml
JOBS      ?= $(shell nproc)

.PHONY: run test deps build clean install test-asan test-tsan container-test

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
# LeakSanitizer at exit), and the multi-shard tests under ThreadSanitizer.
# Any report fails the run.
SAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
          TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
test-asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSHOAL_SANITIZE=address,undefined
	cmake --build build-asan -j $(JOBS)
	cd build-asan && $(SAN_ENV) ctest --output-on-failure -j 2 --timeout 300

TSAN_TESTS ?= ShardingPolicy|Admin|Drain|Sigterm|WebSocket|Tls|Wss
test-tsan: deps
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHOAL_SANITIZE=thread
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && $(SAN_ENV) ctest --output-on-failure -j 2 --timeout 300 -R '$(TSAN_TESTS)'

# Builds the Dockerfile for real (buildah, no Docker engine needed) and
# checks the image: non-root, HEALTHCHECK, echo and health probe from inside.
container-test: deps
	deploy/docker-check.sh

clean:
	rm -rf $(BUILD_DIR) build-asan build-tsan

# Installs shoald, shoal-load, the systemd unit and /etc/shoal/shoal.yaml
# (an existing one is kept). PREFIX=/usr matches the unit's /usr/bin/shoald.
PREFIX ?= /usr
install: build
	cmake --install $(BUILD_DIR) --prefix $(PREFIX)
