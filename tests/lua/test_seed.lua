-- tests/lua/test_seed.lua - smoke tests of the seed's claims (examples/seed/): each claim's
-- core computation at a tiny size gives the expected qualitative (and, where there is a closed
-- form, quantitative) result. The scripts themselves are run by `make seed-figures`.
local lu = require "luaunit"
local mo = require "moonopt"

local claims = dofile("examples/seed/claims.lua")
local common = dofile("examples/seed/common.lua")

local function max_of(list, k)
  local m = -math.huge
  for i = 1, k or #list do m = math.max(m, list[i]) end
  return m
end

local function mean_of(list, k)
  local s = 0
  for i = 1, k do s = s + list[i] end
  return s / k
end

-- ==========================================================================================
-- Claim 1

local TestSeedBiasCorrection = {}

function TestSeedBiasCorrection.test_factor_falls_then_rises_to_one()
  local ts, fs, tmin, fmin = claims.bias_factor_curve(10000, 0.9, 0.999)
  lu.assertEquals(#ts, 10000)
  lu.assertAlmostEquals(fs[1], math.sqrt(0.001) / 0.1, 1e-12)
  -- the minimum: d/dt of log f = 0 lies between 12 and 13 for (0.9, 0.999)
  lu.assertEquals(tmin, 12)
  lu.assertAlmostEquals(fmin, math.sqrt(1 - 0.999 ^ 12) / (1 - 0.9 ^ 12), 1e-15)
  lu.assertTrue(fmin < 0.16 and fmin > 0.15)
  for t = 2, tmin do lu.assertTrue(fs[t] < fs[t - 1], "falls until the minimum, t = " .. t) end
  for t = tmin + 1, 10000 do lu.assertTrue(fs[t] > fs[t - 1], "rises after it, t = " .. t) end
  lu.assertTrue(fs[10000] > 0.9999 and fs[10000] < 1)
end

function TestSeedBiasCorrection.test_moments_are_biased_by_one_minus_beta_power()
  local r = claims.moment_bias{n = 4000, steps = 40, b1 = 0.9, b2 = 0.999, mu = 0.5, sigma = 1,
                               seed = 3}
  for _, t in ipairs{1, 5, 20, 40} do
    -- relative error of a mean over 4000 draws: a few percent at most
    lu.assertAlmostEquals(r.m[t] / r.m_theory[t], 1, 0.08)
    lu.assertAlmostEquals(r.v[t] / r.v_theory[t], 1, 0.05)
  end
  -- the uncorrected v after 40 steps is still ~25x too small
  lu.assertTrue(r.v[40] < 0.05)
end

-- ==========================================================================================
-- Claim 2

local TestSeedFirstSteps = {}

local function run_first(b2, bc)
  return claims.first_steps{n = 400, steps = 20, density = 0.1, lr = 1e-3, b1 = 0.9, b2 = b2,
                            bias_correction = bc, seed = 5}
end

function TestSeedFirstSteps.test_uncorrected_steps_larger_only_for_b2_near_one()
  local ratio = {}
  for _, b2 in ipairs{0.9, 0.999} do
    local c = run_first(b2, true)
    local u = run_first(b2, false)
    ratio[b2] = mean_of(u, 10) / mean_of(c, 10)
  end
  lu.assertTrue(ratio[0.999] > 3, "b2 = 0.999: uncorrected steps several times larger")
  lu.assertTrue(ratio[0.9] < 1, "b2 = 0.9: uncorrected steps smaller")
end

function TestSeedFirstSteps.test_first_step_sizes_match_the_closed_form()
  -- at step 1 every coordinate with a gradient moves by lr (corrected) or
  -- lr (1 - b1) / sqrt(1 - b2) (uncorrected); the others do not move
  local _, max_c = run_first(0.999, true)
  local _, max_u = run_first(0.999, false)
  lu.assertAlmostEquals(max_c[1], 1, 1e-4)
  lu.assertAlmostEquals(max_u[1], claims.first_step_ratio(0.9, 0.999), 1e-3)
  lu.assertAlmostEquals(claims.first_step_ratio(0.9, 0.99), 1, 1e-12)
end

-- ==========================================================================================
-- Claim 3

local TestSeedSgd = {}

local function problem(extra)
  local p = {h = {0.05, 0.01}, c = {1, -1}, w0 = {1.5, 1.5}, lr = 0.05, steps = 60}
  for k, v in pairs(extra) do p[k] = v end
  return p
end

function TestSeedSgd.test_plain_sgd_l2_equals_decoupled_decay()
  local l2 = claims.sgd_run(problem{l2 = 0.01})
  local dec = claims.sgd_run(problem{decay = 0.05 * 0.01})
  lu.assertTrue(claims.max_traj_diff(l2, dec) < 1e-5)
  -- and the decay does something: without it the trajectory is elsewhere
  local none = claims.sgd_run(problem{})
  lu.assertTrue(claims.max_traj_diff(l2, none) > 1e-3)
  -- in doubles the two are the same to rounding
  local a, b = claims.sgd_sim(problem{l2 = 0.01}), claims.sgd_sim(problem{decay = 0.05 * 0.01})
  lu.assertTrue(claims.max_traj_diff(a, b) < 1e-13)
end

function TestSeedSgd.test_momentum_l2_differs_from_decoupled_decay()
  local l2 = claims.sgd_run(problem{l2 = 0.01, momentum = 0.9})
  local dec = claims.sgd_run(problem{decay = 0.05 * 0.01, momentum = 0.9})
  lu.assertTrue(claims.max_traj_diff(l2, dec) > 1e-2)
end

function TestSeedSgd.test_simulation_follows_mo_optim_sgd()
  for _, extra in ipairs{{l2 = 0.01, momentum = 0.9}, {decay = 0.002, momentum = 0.9}, {l2 = 0.01}} do
    local d = claims.max_traj_diff(claims.sgd_run(problem(extra)), claims.sgd_sim(problem(extra)))
    lu.assertTrue(d < 1e-5, "simulation vs mo.optim.SGD: " .. d)
  end
end

function TestSeedSgd.test_best_fit_constant_changes_with_the_horizon()
  local fit = claims.best_fit_decay(problem{l2 = 0.01, momentum = 0.9, steps = 1000},
                                    {1, 10, 1000}, 0.3, 60)
  lu.assertAlmostEquals(fit[1], 0.01, 1e-6)          -- one step: wd' = wd
  lu.assertTrue(fit[2] > 0.03 and fit[2] < 0.06)     -- in between
  lu.assertAlmostEquals(fit[3], 0.1, 1e-3)           -- the limit: wd / (1 - momentum)
end

-- ==========================================================================================
-- Claim 4

local TestSeedAdamDecay = {}

function TestSeedAdamDecay.test_l2_decays_large_gradient_weights_less()
  local o = {scales = {0.1, 10}, n = 40, steps = 200, lr = 1e-2, wd = 1e-2, seed = 2}
  o.mode = "l2"
  local l2 = claims.adam_decay(o)
  o.mode = "adamw"
  local w = claims.adam_decay(o)
  -- L2: rate ~ lr * wd / s; AdamW: lr * wd for both groups
  lu.assertAlmostEquals(l2.rate[1], 1e-3, 2e-4)
  lu.assertAlmostEquals(l2.rate[2], 1e-5, 5e-6)
  lu.assertTrue(l2.rate[1] > 30 * l2.rate[2])
  for k = 1, 2 do lu.assertAlmostEquals(w.rate[k], 1e-4, 1e-6) end
  lu.assertEquals(#w.mean[1], 201)
end

-- ==========================================================================================
-- Claims 5 and 6

local TestSeedTraining = {}

function TestSeedTraining.test_shear_moves_cells_to_weight_decay_columns()
  local rows, logs = claims.shear({{11, 12}, {21, 22}}, {-3, -2}, {-4, -3})
  lu.assertEquals(logs, {-2, -1, 0})
  lu.assertTrue(rows[1][1] ~= rows[1][1])
  lu.assertEquals(rows[1][2], 11)
  lu.assertEquals(rows[1][3], 12)
  lu.assertEquals(rows[2][1], 21)
  lu.assertEquals(rows[2][2], 22)
  lu.assertTrue(rows[2][3] ~= rows[2][3])
end

function TestSeedTraining.test_adamw_cell_uses_lambda_over_lr()
  local p = mo.zeros(2)
  local opt = claims.make_optimizer("adamw", {p}, 1e-3, 1e-4)
  lu.assertAlmostEquals(opt.param_groups[1].weight_decay, 0.1, 1e-12)
  opt = claims.make_optimizer("l2", {p}, 1e-3, 1e-4)
  lu.assertEquals(opt.param_groups[1].weight_decay, 1e-4)
  lu.assertEquals(opt.param_groups[1].weight_decay_mode, "l2")
  lu.assertErrorMsgContains("kind must be", claims.make_optimizer, "sgd", {p}, 1, 1)
end

function TestSeedTraining.test_tiny_runs_learn()
  mo.manual_seed(7)
  local data = mo.data.moons{n = 300, noise = 0.1}
  local err = claims.fit_once{train = data, test = data, sizes = {2, 32, 2}, kind = "adamw",
                              lr = 1e-2, wd = 1e-4, epochs = 20, batch = 32, seed = 1}
  lu.assertTrue(err < 0.2, "error " .. err .. " should beat chance (0.5) by far")
  local curve = claims.train_curve{train = data, test = data, sizes = {2, 32, 2}, lr = 1e-2,
                                   weight_decay = 1e-2, epochs = 10, batch = 30, seed = 1, every = 25,
                                   schedule = function(opt, total)
                                     return mo.sched.OneCycle(opt, {max_lr = 2e-2, total_steps = total})
                                   end}
  -- evaluations at step 0, 25, 50, 75, 100 (the last step)
  lu.assertEquals(curve.step, {0, 25, 50, 75, 100})
  lu.assertTrue(curve.acc[5] > curve.acc[1])
  lu.assertEquals(claims.steps_to_target(curve, 0), 0)
  lu.assertNil(claims.steps_to_target(curve, 1.01))
end

-- claims.cnn is the CNN main job's network, and the runs take it through `net`
function TestSeedTraining.test_cnn_runs_take_the_main_jobs_network()
  local m = claims.cnn()
  lu.assertEquals(m:num_parameters(), 421642) -- 320 + 18496 + 401536 + 1290
  lu.assertEquals(m:forward(mo.randn(2, 1, 28, 28)):shape(), {2, 10})
  local data = {x = mo.randn(40, 784), y = mo.randint(1, 10, {40})}
  lu.assertIs(claims.as_images(data), data)
  lu.assertEquals(data.x:shape(), {40, 1, 28, 28})
  local calls = 0
  local net = function() calls = calls + 1; return claims.cnn() end
  local err = claims.fit_once{train = data, test = data, net = net, kind = "l2", lr = 1e-3,
                              wd = 1e-4, epochs = 1, batch = 20, seed = 1}
  lu.assertTrue(err >= 0 and err <= 1)
  local curve = claims.train_curve{train = data, test = data, net = net, lr = 1e-3,
                                   weight_decay = 1e-2, epochs = 1, batch = 20, seed = 1, every = 1}
  lu.assertEquals(curve.step, {0, 1, 2})
  lu.assertEquals(calls, 2)
end

-- The training scripts end to end at --quick sizes (a second or two each; they read the
-- real Fashion-MNIST, which `make deps` installs), with two seeds: the mean ± std path.
local function run_script(name, extra)
  local exe, i = "lua5.4", -1
  while arg and arg[i] do exe, i = arg[i], i - 1 end
  local out = os.tmpname()
  os.remove(out)
  local cmd = ("LUA_PATH='lua/?.lua;lua/?/init.lua;examples/?.lua;;' %s examples/seed/%s.lua"
               .. " --quick --out %s %s 2>&1"):format(exe, name, out, extra)
  local p = assert(io.popen(cmd))
  local text = p:read("a")
  local ok = p:close()
  os.execute("rm -rf '" .. out .. "'")
  return ok == true, text
end

function TestSeedTraining.test_one_cycle_script_prints_mean_and_std()
  local ok, text = run_script("one_cycle", "--seeds 2")
  lu.assertTrue(ok, text)
  lu.assertStrContains(text, "seeds 42, 43")
  lu.assertStrContains(text, "mean ± std over 2 seed(s)")
  -- every accuracy cell of the budget table is "0.xxxx ± 0.xxxx", and seeds differ
  local cells, spread = 0, false
  for m, sd in text:gmatch("(0%.%d%d%d%d) ± (0%.%d%d%d%d)") do
    cells = cells + 1
    lu.assertTrue(tonumber(m) > 0.1 and tonumber(m) <= 1)
    if tonumber(sd) > 0 then spread = true end
  end
  lu.assertEquals(cells, 2 * 4 + 1) -- 2 budgets x 4 runs, and the best run's line
  lu.assertTrue(spread, "two seeds should not give identical accuracies")
end

function TestSeedTraining.test_lr_wd_heatmap_script_runs_one_seed_when_quick()
  local ok, text = run_script("lr_wd_heatmap", "")
  lu.assertTrue(ok, text)
  lu.assertStrContains(text, "seeds 42; BLAS " .. mo.blas_backend .. ", kernel " .. mo.blas_kernel)
  lu.assertStrContains(text, "best mean error")
  lu.assertStrContains(text, "mean std of a cell over 1 seeds: 0.0000")
end

-- claim 6 on the CNN at a toy size: the range test, the constant lrs, c*, the cosine and
-- OneCycle runs at the peaks, their table, and the figures
function TestSeedTraining.test_one_cycle_cnn_script_runs()
  local ok, text = run_script("one_cycle_cnn", "--train 128 --test 128 --lrs 1e-3,3e-3 --peaks 3"
                                                .. " --seeds 2 --finder_steps 5")
  lu.assertTrue(ok, text)
  lu.assertStrContains(text, "seeds 42, 43; BLAS ")
  lu.assertStrContains(text, "range test (5 steps from 1e-6 to 1)")
  local cstar = tonumber(text:match("best constant lr c%* = ([%d%.e%-]+)"))
  lu.assertTrue(cstar == 1e-3 or cstar == 3e-3, text)
  lu.assertStrContains(text, ("OneCycle peak %g (3 c*)"):format(3 * cstar))
  lu.assertStrContains(text, ("cosine from %g"):format(3 * cstar))
  lu.assertStrContains(text, "best OneCycle - best cosine, paired by seed:")
  lu.assertStrContains(text, "10 training runs") -- (2 constant + 2 cosine + 1 OneCycle) x 2 seeds
  lu.assertStrContains(text, "one_cycle_cnn.svg")
end

function TestSeedTraining.test_one_cycle_cnn_constants_only_stops_after_the_constants()
  local ok, text = run_script("one_cycle_cnn", "--train 128 --test 128 --lrs 1e-3 --seeds 1"
                                                .. " --finder_steps 2 --constants_only")
  lu.assertTrue(ok, text)
  lu.assertStrMatches(text, ".*constant 0%.001: final test accuracy 0%.%d%d%d%d ± 0%.0000\n.*")
  lu.assertStrContains(text, "best constant lr c* = 0.001")
  lu.assertNotStrContains(text, "OneCycle")
end

function TestSeedTraining.test_one_cycle_cnn_rejects_a_bad_list()
  local ok, text = run_script("one_cycle_cnn", "--lrs 1e-3,abc")
  lu.assertFalse(ok)
  lu.assertStrContains(text, "--lrs must be positive numbers separated by commas, got '1e-3,abc'")
end

-- ==========================================================================================
-- Claim 7

local TestSeedVariants = {}

function TestSeedVariants.test_pseudocode_matches_flavors_and_not_the_neighbours()
  local hp = {lr = 1e-2, b1 = 0.9, b2 = 0.99, eps = 1e-3, wd = 0.1, rescale_grad = 0.5,
              clip_gradient = 0.04, grad_scale = 0.03}
  for _, kind in ipairs(claims.VARIANTS) do
    local diff, other = claims.variant_compare(kind, hp, 8, 8)
    lu.assertTrue(max_of(diff) < 2e-6, kind .. " differs from its flavor by " .. max_of(diff))
    lu.assertTrue(other[8] > 1e-4, kind .. ": the one-switch neighbour should differ")
  end
end

function TestSeedVariants.test_variant_step_by_hand()
  -- one step of the BERT variant on one weight: m = 0.1 g, v = 0.01 g^2 (b2 = 0.99)
  local w, m, v = {1}, {0}, {0}
  claims.variant_step("bert_adamw", w, m, v, {2}, 1,
                      {lr = 0.1, b1 = 0.9, b2 = 0.99, eps = 0, wd = 0.5, rescale_grad = 1,
                       clip_gradient = false})
  lu.assertAlmostEquals(m[1], 0.2, 1e-15)
  lu.assertAlmostEquals(v[1], 0.04, 1e-15)
  -- w = 1 - 0.1 * (0.2 / 0.2 + 0.5 * 1) = 0.85
  lu.assertAlmostEquals(w[1], 0.85, 1e-15)
end

-- ==========================================================================================
-- The scripts' shared helper

local TestSeedCommon = {}

function TestSeedCommon.test_args()
  local o = common.args("x", {"--out", "d", "--quick", "--n", "5", "--lr", "1e-3"},
                        {n = {"int", 1}, lr = {"number", 0.1}})
  lu.assertEquals(o.out, "d")
  lu.assertTrue(o.quick)
  lu.assertEquals(o.n, 5)
  lu.assertTrue(math.type(o.n) == "integer")
  lu.assertEquals(o.lr, 1e-3)
  lu.assertEquals(o.seed, 42)
  o = common.args("x", {}, {})
  lu.assertEquals(o.out, "out/seed")
  lu.assertFalse(o.quick)
end

function TestSeedCommon.test_args_reports_what_was_given()
  local o, given = common.args("x", {"--seeds", "5", "--quick"}, {seeds = {"int", 3}})
  lu.assertEquals(o.seeds, 5)
  lu.assertEquals(given, {seeds = true, quick = true})
  o, given = common.args("x", {}, {seeds = {"int", 3}})
  lu.assertEquals(o.seeds, 3)
  lu.assertEquals(given, {})
end

function TestSeedCommon.test_seed_list()
  lu.assertEquals(common.seed_list{seed = 42, seeds = 3}, {42, 43, 44})
  lu.assertEquals(common.seed_list{seed = 7, seeds = 1}, {7})
end

function TestSeedCommon.test_mean_std()
  -- sample standard deviation (n - 1): {1, 2, 3, 4} has mean 2.5, variance 5/3
  local m, sd = common.mean_std{1, 2, 3, 4}
  lu.assertEquals(m, 2.5)
  lu.assertAlmostEquals(sd, math.sqrt(5 / 3), 1e-15)
  m, sd = common.mean_std{0.8}
  lu.assertEquals(m, 0.8)
  lu.assertEquals(sd, 0)
  lu.assertEquals(common.pm({0.84, 0.86}), "0.8500 ± 0.0141")
  lu.assertEquals(common.pm({1, 3}, "%.1f"), "2.0 ± 1.4")
end

function TestSeedCommon.test_print_table_aligns_characters_not_bytes()
  local lines = {}
  local real_print = print
  print = function(s) lines[#lines + 1] = s end -- luacheck: ignore 121
  local ok, err = pcall(common.print_table, {"a", "b"}, {{"0.1 ± 0.2", "x"}, {"1", "yy"}})
  print = real_print -- luacheck: ignore 121
  lu.assertTrue(ok, err)
  lu.assertEquals(lines[1], "        a   b")
  lu.assertEquals(lines[3], "0.1 ± 0.2   x")
  lu.assertEquals(lines[4], "        1  yy")
end

function TestSeedCommon.test_median()
  lu.assertEquals(common.median{3, 1, 2}, 2)
  lu.assertEquals(common.median{4, 1, 2, 3}, 2.5)
  local m = common.median{}
  lu.assertTrue(m ~= m)
end

return {
  TestSeedBiasCorrection = TestSeedBiasCorrection,
  TestSeedFirstSteps = TestSeedFirstSteps,
  TestSeedSgd = TestSeedSgd,
  TestSeedAdamDecay = TestSeedAdamDecay,
  TestSeedTraining = TestSeedTraining,
  TestSeedVariants = TestSeedVariants,
  TestSeedCommon = TestSeedCommon,
}
