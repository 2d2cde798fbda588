# mk/seed.mk - the seed's claims as runnable examples (examples/seed/*.lua, docs/seed.md).
# Included by the Makefile.
#
#   make seed-figures                                run every script; SVGs in out/seed/
#   make seed-figures SEED_OUT=docs/figures/seed     regenerate the committed figures
#   make seed-figures SEED_ARGS=--quick              a fast smoke run (seconds)
#   make seed-variants                               one script (seed-<script name>)
#
# Every script prints its numbers; lr_wd_heatmap and one_cycle need Fashion-MNIST
# (make deps), run every setting with 3 seeds (--seeds N; printed as mean ± std) and take
# about 6 minutes together on one core. Their numbers depend on OpenBLAS's kernel:
# docs/seed.md's were measured with `OPENBLAS_CORETYPE=Haswell make seed-figures`.

SEED_OUT     ?= out/seed
SEED_ARGS    ?=
SEED_SCRIPTS := bias_correction first_steps sgd_l2_vs_wd adam_l2_vs_adamw variants \
                one_cycle lr_wd_heatmap
SEED_ENV      = LUA_PATH="lua/?.lua;lua/?/init.lua;examples/?.lua;;" LUA_CPATH="$(BUILD)/?.so;;"

.PHONY: seed-figures $(addprefix seed-,$(SEED_SCRIPTS))

seed-figures: all
	@set -e; for s in $(SEED_SCRIPTS); do \
	    echo "== examples/seed/$$s.lua"; \
	    $(SEED_ENV) $(LUA) examples/seed/$$s.lua --out "$(SEED_OUT)" $(SEED_ARGS); \
	done

$(addprefix seed-,$(SEED_SCRIPTS)): seed-%: all
	$(SEED_ENV) $(LUA) examples/seed/$*.lua --out "$(SEED_OUT)" $(SEED_ARGS)
