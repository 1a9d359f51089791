# kata-runtime: build · guest · demo · test · bench · install
#
# Every binary is built once, static (glibc + crt-static), for the host triple: the guest's
# kata-agent must be static, and building everything the same way lets the tests reuse the
# same artifacts instead of compiling the dependency tree twice.

TARGET      ?= x86_64-unknown-linux-gnu
PROFILE     ?= release
CARGO       ?= cargo
export RUSTFLAGS = -C target-feature=+crt-static
CARGO_FLAGS := --$(PROFILE) --target $(TARGET)
BIN_DIR     := target/$(TARGET)/$(PROFILE)
GUEST_DIR   ?= build/guest
# The guest kernel: `source` (built from Debian's linux-source-6.1 with kernel/fragments/, cached
# in /var/cache/kata-rs/kernel by its inputs) or `debian` (Debian's generic kernel package with
# the modules the guest needs, kept in build/cache).
GUEST_KERNEL?= source
KERNEL_CACHE:= build/cache
PREFIX      ?= /usr/local
TEST_THREADS?= 2
# Seconds of fuzzing per target in `make test` (`make fuzz` takes FUZZ_SECONDS too).
FUZZ_SECONDS?= 20

.PHONY: all deps build guest guest-debian demo test test-stress unit-test vm-test conformance integration fuzz bench install protocols clean

all: build guest

deps:
	@scripts/install-deps.sh

# deps first: the integration crate's CRI client is generated with protoc at build time. The
# shim v2 is built again for size (profile `shim`) and put beside the others.
build: deps
	$(CARGO) build $(CARGO_FLAGS) --workspace --bins
	$(CARGO) build --profile shim --target $(TARGET) -p containerd-shim-kata-v2
	cp target/$(TARGET)/shim/containerd-shim-kata-v2 $(BIN_DIR)/containerd-shim-kata-v2

# The guest image: the guest kernel (an uncompressed vmlinux) + an initramfs whose /init is
# kata-agent (and, with Debian's kernel, the modules it needs).
guest: deps build
ifeq ($(GUEST_KERNEL),debian)
	@deb=$$(scripts/fetch-guest-kernel.sh $(KERNEL_CACHE)) && \
	$(BIN_DIR)/kata-osbuilder --kernel-deb "$$deb" --agent $(BIN_DIR)/kata-agent --out $(GUEST_DIR)
else ifeq ($(GUEST_KERNEL),source)
	@kdir=$$(scripts/build-guest-kernel.sh) && \
	$(BIN_DIR)/kata-osbuilder --kernel-dir "$$kdir" --agent $(BIN_DIR)/kata-agent --out $(GUEST_DIR)
else
	$(error GUEST_KERNEL must be source or debian, not "$(GUEST_KERNEL)")
endif

# Debian's generic kernel image beside ours, for `make bench`'s side-by-side rows.
guest-debian: deps build
	@$(MAKE) --no-print-directory guest GUEST_KERNEL=debian GUEST_DIR=build/guest-debian

demo: guest
	@scripts/demo.sh $(BIN_DIR)

# Unit tests anywhere, then the end-to-end tests with real VMs (limited parallelism: 2 cores).
test: guest
	$(CARGO) test $(CARGO_FLAGS) --workspace --exclude e2e-tests --exclude integration-tests
	$(CARGO) test $(CARGO_FLAGS) -p e2e-tests -- --test-threads=$(TEST_THREADS)
	$(CARGO) test $(CARGO_FLAGS) -p integration-tests -- --test-threads=1
	$(BIN_DIR)/kata-fuzz --seconds $(FUZZ_SECONDS) tests/fuzz/corpus all

# The stress suite: STRESS_CYCLES (100) create/start/delete cycles in a row, each followed by
# the leak check. (Parallel creates into one pod run in `make test`: vm_pod.)
STRESS_CYCLES ?= 100
test-stress: guest
	STRESS_CYCLES=$(STRESS_CYCLES) $(CARGO) test $(CARGO_FLAGS) -p e2e-tests --test stress -- --ignored --nocapture

# Mutation fuzzing of every parser of outside input, FUZZ_SECONDS per target, seeds from
# tests/fuzz/corpus/<target>/ (a failing input is saved in tests/fuzz/corpus/crashes/).
fuzz: build
	$(BIN_DIR)/kata-fuzz --seconds $(FUZZ_SECONDS) tests/fuzz/corpus all

# The tests with real callers alone: containerd (v1 runtime, runc v2 shim, CRI plugin), podman +
# conmon, conmon the CRI-O way, Docker; each test starts its caller with private folders. One
# at a time.
integration: guest
	$(CARGO) test $(CARGO_FLAGS) -p integration-tests -- --test-threads=1

# The conformance runner alone: kata-spec-checker inside containers under kata-runtime and, when
# installed, runc; prints the comparison table.
conformance: guest
	$(CARGO) test $(CARGO_FLAGS) -p e2e-tests --test conformance -- --test-threads=1 --nocapture

bench: guest
	python3 scripts/bench.py $(BIN_DIR)

install: build guest
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/kata-containers
	install -m 0755 $(BIN_DIR)/kata-runtime $(BIN_DIR)/kata-proxy $(BIN_DIR)/kata-shim $(BIN_DIR)/containerd-shim-kata-v2 $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(GUEST_DIR)/vmlinux $(GUEST_DIR)/initrd.img $(GUEST_DIR)/manifest.json $(DESTDIR)$(PREFIX)/share/kata-containers/
	install -d $(DESTDIR)$(PREFIX)/share/defaults/kata-containers
	install -m 0644 config/configuration.toml $(DESTDIR)$(PREFIX)/share/defaults/kata-containers/

# Regenerates pkg/protocols/src from the .proto files.
protocols:
	$(CARGO) run -p protocols-codegen

clean:
	$(CARGO) clean
	rm -rf build
