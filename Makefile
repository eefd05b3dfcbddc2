# The two entry points (see README.md). Both install missing Debian packages
# first, so they work on a fresh Debian 12 machine as root.
BUILD_DIR ?= build
CONFIG    ?= config/shoal.yaml
JOBS      ?= $(shell nproc)

.PHONY: run test deps build build-release clean

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

clean:
	rm -rf $(BUILD_DIR)
