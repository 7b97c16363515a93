# Front door: `make run` and `make test` work on a fresh Debian 12 machine.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)

.PHONY: all deps build run test tsan valgrind valgrind-quick fuzz fuzz-smoke bench format clean install

all: build

deps:
	@scripts/install-deps

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

# The seed's echo server on localhost:8124 (Ctrl-C stops it cleanly).
run: build
	./$(BUILD)/examples/echo-server

# The whole suite under AddressSanitizer + UBSan (leaks fail a test).
test: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DWEFT_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 300

# The suites that cross threads, under ThreadSanitizer (a report fails).
tsan: deps
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DWEFT_TSAN=ON >/dev/null
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && ctest --output-on-failure -L threads -j $(JOBS) --timeout 300

valgrind: deps
	cmake -S . -B build-vg -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-vg -j $(JOBS)
	scripts/valgrind-suite build-vg

# The short subset CI runs: loop, events, server, stream, injected faults.
valgrind-quick: deps
	cmake -S . -B build-vg -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-vg -j $(JOBS)
	scripts/valgrind-suite build-vg test_loop test_emitter test_server test_stream test_fault test_economy

fuzz:
	@scripts/install-deps --fuzz
	bash fuzz/run

# Every fuzz target for a few seconds from its committed seeds (CI).
fuzz-smoke:
	@scripts/install-deps --fuzz
	FUZZ_SMOKE_SECONDS=$${FUZZ_SMOKE_SECONDS:-5} bash fuzz/run --smoke

bench:
	@scripts/install-deps --bench
	bash bench/run

format:
	clang-format -i include/*.h src/*.c src/*.h tests/*.c tests/*.h examples/*.c

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-tsan build-vg build-fuzz
