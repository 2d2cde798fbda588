# mk/seed.mk - the seed's claims as runnable examples (examples/seed/*.lua, docs/seed.md).
# Included by the Makefile.
#
#   make seed-figures                                run every script; SVGs in out/seed/
#   make seed-figures SEED_OUT=docs/figures/seed     regenerate the committed figures
#   make seed-figures SEED_ARGS=--quick              a fast smoke run (seconds)
#   make seed-variants                               one script (seed-<script name>)
#   make seed-cnn                                    claims 5 and 6 on the CNN (about an
#                                                    hour on two cores; docs/seed.md)
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

# The CNN runs (docs/seed.md "On the CNN"): the two scripts side by side, one core each (a
# pool of one thread each does more work per second than one job on two), logs in SEED_OUT.
SEED_CNN_HEATMAP := --model cnn --train 2500 --epochs 12 --test 5000 --threads 1
SEED_CNN_ONECYCLE := --threads 1

.PHONY: seed-figures seed-cnn $(addprefix seed-,$(SEED_SCRIPTS))

seed-cnn: all
	@mkdir -p "$(SEED_OUT)"
	@echo "== claims 5 and 6 on the CNN, side by side; logs: $(SEED_OUT)/seed_cnn_*.log"
	@set -e; \
	$(SEED_ENV) $(LUA) examples/seed/lr_wd_heatmap.lua --out "$(SEED_OUT)" $(SEED_CNN_HEATMAP) \
	    $(SEED_ARGS) > "$(SEED_OUT)/seed_cnn_heatmap.log" 2>&1 & heat=$$!; \
	$(SEED_ENV) $(LUA) examples/seed/one_cycle_cnn.lua --out "$(SEED_OUT)" $(SEED_CNN_ONECYCLE) \
	    $(SEED_ARGS) > "$(SEED_OUT)/seed_cnn_one_cycle.log" 2>&1 || { cat "$(SEED_OUT)/seed_cnn_one_cycle.log"; exit 1; }; \
	wait $$heat || { cat "$(SEED_OUT)/seed_cnn_heatmap.log"; exit 1; }; \
	cat "$(SEED_OUT)/seed_cnn_one_cycle.log" "$(SEED_OUT)/seed_cnn_heatmap.log"

seed-figures: all
	@set -e; for s in $(SEED_SCRIPTS); do \
	    echo "== examples/seed/$$s.lua"; \
	    $(SEED_ENV) $(LUA) examples/seed/$$s.lua --out "$(SEED_OUT)" $(SEED_ARGS); \
	done

$(addprefix seed-,$(SEED_SCRIPTS)): seed-%: all
	$(SEED_ENV) $(LUA) examples/seed/$*.lua --out "$(SEED_OUT)" $(SEED_ARGS)
