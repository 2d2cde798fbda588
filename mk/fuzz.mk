# mk/fuzz.mk - libFuzzer targets for the file readers (included by the Makefile).
#
#   make fuzz-smoke   every target for FUZZ_SMOKE_TIME seconds (default 5) from the seed
#                     corpus; `make check` runs it. Fails on any crash, sanitizer report,
#                     leak, timeout or broken property.
#   make fuzz         every target for FUZZ_TIME seconds (default 600), by hand; inputs that
#                     reach new code are kept in $(FUZZ_BUILD)/corpus/<target> (copy the
#                     interesting ones to tests/fuzz/corpus/<target> to keep them)
#   make fuzz-ckpt / fuzz-idx   one target, FUZZ_TIME seconds
#
# Targets (tests/fuzz/fuzz_<name>.c): ckpt (mo_ckpt_decode, the safetensors reader, with a
# write-and-read-back round trip of whatever it accepts) and idx (mo_idx_parse_header and
# mo_idx_decode, raw and gzip). The core is compiled into each target by clang with
# -fsanitize=fuzzer,address,undefined; libFuzzer comes with clang's compiler-rt (Debian:
# libclang-rt-14-dev, or libclang-rt-dev). A crash leaves its input in $(FUZZ_BUILD)/crash-*;
# replay it with `$(FUZZ_BUILD)/fuzz_ckpt $(FUZZ_BUILD)/crash-...`.
# The seed corpus is written by tests/fuzz/make_corpus.lua.

FUZZ_CC         ?= clang
FUZZ_BUILD      ?= build-fuzz
FUZZ_SMOKE_TIME ?= 5
FUZZ_TIME       ?= 600
FUZZ_TARGETS    := ckpt idx
FUZZ_SAN        := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS     := -std=c11 -g -O1 $(FUZZ_SAN) -D_POSIX_C_SOURCE=200809L -DMO_HAVE_ZLIB -Icore
# libFuzzer options: inputs up to 64 KB, 10 s per input at most, 2 GB of memory
FUZZ_RUN_OPTS   := -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

.PHONY: fuzz fuzz-smoke $(FUZZ_TARGETS:%=fuzz-%)

$(FUZZ_BUILD):
	mkdir -p $@

# The core's sources go straight into each target (the core is pure C: no BLAS needed,
# matmul falls back to its portable loop without MO_HAVE_CBLAS).
$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(CORE_SRC) $(CORE_HDR) | $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< $(CORE_SRC) -o $@ -lz -lm

# $(call fuzz_run,targets,seconds): run each target in turn; stop at the first failure.
define fuzz_run
	@for t in $(1); do \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$t || exit 1; \
	    echo "== fuzz $$t: $(2) s"; \
	    dict=; [ -f tests/fuzz/$$t.dict ] && dict="-dict=$(CURDIR)/tests/fuzz/$$t.dict"; \
	    ( cd $(FUZZ_BUILD) && ASAN_OPTIONS=$${ASAN_OPTIONS:-allocator_may_return_null=1} ./fuzz_$$t \
	        $(FUZZ_RUN_OPTS) -max_total_time=$(2) $$dict corpus/$$t $(CURDIR)/tests/fuzz/corpus/$$t \
	        >fuzz_$$t.log 2>&1 ) \
	    || { tail -n 60 $(FUZZ_BUILD)/fuzz_$$t.log; echo "fuzz $$t: FAILED (log: $(FUZZ_BUILD)/fuzz_$$t.log)"; exit 1; }; \
	    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' $(FUZZ_BUILD)/fuzz_$$t.log | tr -s ' \n' '  '; echo; \
	done
endef

fuzz-smoke: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
	$(call fuzz_run,$(FUZZ_TARGETS),$(FUZZ_SMOKE_TIME))

fuzz: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
	$(call fuzz_run,$(FUZZ_TARGETS),$(FUZZ_TIME))

$(FUZZ_TARGETS:%=fuzz-%): fuzz-%: $(FUZZ_BUILD)/fuzz_%
	$(call fuzz_run,$*,$(FUZZ_TIME))
